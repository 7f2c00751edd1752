"""MoCo v2: a query encoder trained by InfoNCE against keys from its own moving average.

Composition only: ``Encoder`` + linear embedding head (query), their EMA copies (key),
``NegativeQueue``, ``info_nce``. The training loop (optimiser, schedule) lives in
``cloudkit.train``.

Shuffled BN. BatchNorm statistics computed over the very batch a query comes from would let
the query find its key through them; MoCo breaks this by computing the keys' BN statistics on a
different grouping of the batch. Under DDP (initialised, world size > 1) the key batch is
gathered from all ranks, shuffled by a permutation drawn on rank 0 and broadcast, each rank
encodes its slice, then the keys are gathered again and unshuffled. In a single process the
key batch is shuffled and encoded in two halves. Each rank enqueues the keys of every rank,
so the queues stay identical across ranks.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cloudkit.models.encoder import ARCH, Encoder
from cloudkit.ssl import _dist
from cloudkit.ssl.losses import info_nce
from cloudkit.ssl.memory_bank import NegativeQueue
from cloudkit.ssl.momentum import ema_update, freeze


class MoCo(nn.Module):
    """MoCo v2 on ``bands``; ``forward(view1, view2)`` returns ``(loss, q)``.

    In training mode each forward first moves the key encoder towards the query encoder
    (``momentum``) and afterwards enqueues the new keys; in eval mode it only computes the loss.
    ``queue_size`` must be a multiple of the global batch (batch x world size).
    """

    def __init__(
        self,
        bands: Sequence[str],
        *,
        any_bands: bool = False,
        arch: str = ARCH,
        dim: int = 128,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.07,
    ) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.momentum = momentum
        self.temperature = temperature
        self.query = Encoder(bands, any_bands=any_bands, arch=arch)
        self.query_fc = nn.Linear(self.query.out_dim, dim)
        self.key = copy.deepcopy(self.query)
        self.key_fc = copy.deepcopy(self.query_fc)
        freeze(self.key)
        freeze(self.key_fc)
        self.queue = NegativeQueue(dim, queue_size)

    def encoder(self) -> Encoder:
        """The query encoder: what fine-tuning loads."""
        return self.query

    def forward(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        """InfoNCE of queries from ``view1`` against keys from ``view2``.

        Returns the loss and the queries (N, dim), L2-normalised and detached.
        """
        q = F.normalize(self.query_fc(self.query(view1)), dim=1)
        with torch.no_grad():
            if self.training:
                ema_update(self.key, self.query, self.momentum)
                ema_update(self.key_fc, self.query_fc, self.momentum)
            k = self._keys(view2)
        # a copy: enqueue below writes the buffer in place, autograd needs the old values
        loss = info_nce(q, k, self.queue.queue.clone(), self.temperature)
        if self.training:
            self.queue.enqueue(_dist.all_gather_cat(k))
        return loss, q.detach()

    def _encode_key(self, x: Tensor) -> Tensor:
        return F.normalize(self.key_fc(self.key(x)), dim=1)

    @torch.no_grad()
    def _keys(self, x: Tensor) -> Tensor:
        if _dist.is_distributed():
            return self._keys_ddp(x)
        n = x.shape[0]
        if n < 4:  # BatchNorm needs two samples per half
            return self._encode_key(x)
        perm = torch.randperm(n, device=x.device)
        half = n // 2
        shuffled = torch.cat([self._encode_key(x[perm[:half]]), self._encode_key(x[perm[half:]])])
        return shuffled[torch.argsort(perm)]

    def _keys_ddp(self, x: Tensor) -> Tensor:
        world, rank = _dist.world_size(), _dist.rank()
        x_all = _dist.all_gather_cat(x)
        perm = torch.randperm(x_all.shape[0], device=x.device)
        dist.broadcast(perm, src=0)
        mine = perm.view(world, -1)[rank]
        k_all = _dist.all_gather_cat(self._encode_key(x_all[mine]))
        # k_all[j] is the key of x_all[perm[j]]: put it back at position perm[j]
        unperm = torch.argsort(perm)
        return k_all[unperm.view(world, -1)[rank]]
