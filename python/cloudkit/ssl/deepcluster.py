"""DeepCluster v2: embeddings trained to predict their k-means cluster of the previous epoch.

Composition only: ``Encoder`` (backbone) + ``ProjectionHead`` + ``PrototypeHeads`` (one per
clustering), ``EmbeddingBank`` of last epoch's embeddings, ``spherical_kmeans`` and
``swapped_cluster_loss``. The loop that calls ``cluster()`` at the start of every epoch after
the first lives in ``cloudkit.train``.

DDP invariant. Each rank writes into its bank only the rows of the dataset indices it saw;
every other row stays zero with ``filled`` False, and ``cluster()`` resets the bank once it has
consumed it. An index is seen by exactly one rank per epoch, except the few that
DistributedSampler repeats to even out the ranks, so summing the banks (``all_reduce``) and
dividing each row by the number of ranks that filled it (an ``all_reduce`` of the ``filled``
masks) rebuilds the full bank on every rank. Every rank then runs the same k-means with the
same seed, and rank 0's result is broadcast so prototypes and assignments are bit-identical.
Wrapping in DistributedDataParallel keeps the bank out of DDP's buffer broadcast (which would
overwrite each rank's rows with rank 0's) through ``_ddp_params_and_buffers_to_ignore``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cloudkit.models.encoder import ARCH, Encoder
from cloudkit.ssl import _dist
from cloudkit.ssl.heads import ProjectionHead, PrototypeHeads
from cloudkit.ssl.kmeans import spherical_kmeans
from cloudkit.ssl.losses import swapped_cluster_loss
from cloudkit.ssl.memory_bank import EmbeddingBank
from cloudkit.ssl.monitor import cluster_stats


class DeepClusterV2(nn.Module):
    """DeepCluster v2 on ``bands`` for a dataset of ``num_samples`` items.

    ``forward(view1, view2, indices)`` returns ``(loss, z1)``; in training mode it also stores
    ``z1`` in the bank at ``indices`` (dataset indices). ``cluster(seed=...)`` turns the bank
    into prototypes and per-sample assignments for the next epoch.
    """

    kmeans_iterations: int = 10
    assignments: Tensor

    def __init__(
        self,
        bands: Sequence[str],
        num_samples: int,
        *,
        any_bands: bool = False,
        arch: str = ARCH,
        n_prototypes: Sequence[int] = (3000, 3000, 3000),
        dim: int = 128,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        n_prototypes = tuple(int(k) for k in n_prototypes)
        if not n_prototypes:
            raise ValueError("DeepCluster needs at least one prototype head")
        if max(n_prototypes) > num_samples:
            raise ValueError(
                f"{max(n_prototypes)} prototypes but only {num_samples} samples: k-means cannot "
                f"make more clusters than points; lower --prototypes to at most {num_samples} "
                "(or pretrain on more tiles)"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature
        self.backbone = Encoder(bands, any_bands=any_bands, arch=arch)
        self.projector = ProjectionHead(self.backbone.out_dim, 2048, dim)
        self.prototypes = PrototypeHeads(dim, n_prototypes)
        self.bank = EmbeddingBank(num_samples, dim)
        self.register_buffer(
            "assignments", torch.full((len(n_prototypes), num_samples), -1, dtype=torch.long)
        )
        # rank-local by design (see the module docstring): never broadcast by DDP
        self._ddp_params_and_buffers_to_ignore = ["bank.embeddings", "bank.filled"]

    def encoder(self) -> Encoder:
        """The backbone: what fine-tuning loads."""
        return self.backbone

    def _embed(self, x: Tensor) -> Tensor:
        return F.normalize(self.projector(self.backbone(x)), dim=1)

    def forward(self, view1: Tensor, view2: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Cluster-prediction loss of both views of samples ``indices``; returns ``(loss, z1)``.

        The loss is a zero tensor (that still backpropagates) while no assignment exists
        (first epoch). ``z1`` are the normalised embeddings of ``view1``, detached.
        """
        n = view1.shape[0]
        if view1.shape == view2.shape:
            z = self._embed(torch.cat([view1, view2]))
        else:
            z = torch.cat([self._embed(view1), self._embed(view2)])
        z1 = z[:n].detach()
        indices = torch.as_tensor(indices, device=self.assignments.device).long().reshape(-1)
        if indices.numel() != n:
            raise ValueError(f"got {indices.numel()} indices for a batch of {n} samples")
        if self.training:
            self.bank.update(indices, z1)
        targets = [a[indices].repeat(2) for a in self.assignments]
        loss = swapped_cluster_loss(self.prototypes(z), targets, self.temperature)
        return loss, z1

    @torch.no_grad()
    def cluster(self, *, seed: int, backend: str = "auto") -> dict:
        """k-means (head ``h`` with seed ``seed + h``) on the bank's filled rows: sets each head's
        prototypes to the centroids and the assignments of those rows (others -1), then resets
        the bank. Returns ``{"head0": cluster_stats, ...}``."""
        embeddings, filled = self._gathered_bank()
        rows = torch.nonzero(filled).flatten()
        largest = max(self.prototypes.n_prototypes)
        if rows.numel() == 0:
            raise ValueError(
                "the embedding bank is empty: run forward passes in training mode over the "
                "data (one epoch) before cluster()"
            )
        if rows.numel() < largest:
            raise ValueError(
                f"{largest} prototypes but only {rows.numel()} embeddings in the bank: k-means "
                f"cannot make more clusters than points; lower --prototypes to at most "
                f"{rows.numel()}"
            )
        x = F.normalize(embeddings[rows], dim=1)
        stats = {}
        for h, k in enumerate(self.prototypes.n_prototypes):
            centroids, assigned = spherical_kmeans(
                x, k, iterations=self.kmeans_iterations, seed=seed + h, backend=backend
            )
            centroids = centroids.to(self.assignments.device)
            assigned = assigned.to(self.assignments.device)
            if _dist.is_distributed():
                dist.broadcast(centroids, src=0)
                dist.broadcast(assigned, src=0)
            self.prototypes.set_prototypes(h, centroids)
            self.assignments[h].fill_(-1)
            self.assignments[h][rows] = assigned
            stats[f"head{h}"] = cluster_stats(assigned, k)
        self.bank.reset()
        return stats

    def _gathered_bank(self) -> tuple[Tensor, Tensor]:
        """Bank rows of all ranks (averaged where several ranks filled a row), filled mask."""
        embeddings, filled = self.bank.embeddings, self.bank.filled
        if not _dist.is_distributed():
            return embeddings, filled
        embeddings = embeddings * filled.unsqueeze(1).to(embeddings.dtype)
        counts = filled.to(embeddings.dtype)
        dist.all_reduce(embeddings, op=dist.ReduceOp.SUM)
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
        embeddings = embeddings / counts.clamp(min=1).unsqueeze(1)
        return embeddings, counts > 0
