"""Heads on top of the 512-d encoder features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """DeepCluster v2 projector: Linear(512, 2048), BatchNorm, ReLU, Linear(2048, 128)."""

    def __init__(self, in_dim: int = 512, hidden_dim: int = 2048, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PrototypeHeads(nn.Module):
    """One bias-free ``Linear(dim, k)`` per head whose rows are prototypes (k-means centroids).

    The weights are set by ``set_prototypes`` and never trained by gradient
    (``requires_grad`` is False); gradients still flow through them to the embeddings.
    """

    def __init__(self, dim: int, n_prototypes: Sequence[int]) -> None:
        super().__init__()
        n_prototypes = tuple(int(k) for k in n_prototypes)
        if not n_prototypes or min(n_prototypes) < 1:
            raise ValueError(f"need at least one head of at least 1 prototype, got {n_prototypes}")
        self.n_prototypes = n_prototypes
        heads = [nn.Linear(dim, k, bias=False) for k in n_prototypes]
        self.heads = nn.ModuleList(heads)
        for head in heads:
            with torch.no_grad():
                head.weight.copy_(F.normalize(head.weight, dim=1))
            head.weight.requires_grad_(False)

    def __len__(self) -> int:
        return len(self.heads)

    @torch.no_grad()
    def set_prototypes(self, head: int, centroids: Tensor) -> None:
        """Replace the prototypes of ``head`` by ``centroids`` (k, dim)."""
        weight = cast(nn.Linear, self.heads[head]).weight
        if centroids.shape != weight.shape:
            raise ValueError(
                f"head {head} holds {tuple(weight.shape)} prototypes, got centroids "
                f"of shape {tuple(centroids.shape)}"
            )
        weight.copy_(centroids.to(weight))

    def forward(self, z: Tensor) -> list[Tensor]:
        """Scores (N, k_h) of embeddings ``z`` (N, dim) against each head's prototypes."""
        return [head(z) for head in self.heads]
