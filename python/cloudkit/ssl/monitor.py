"""Cheap health signals for SSL runs: representation collapse, cluster balance, kNN accuracy."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# (query rows per block) x (all rows) similarity blocks in knn_accuracy stay near 32 MiB
_BLOCK_ELEMENTS = 1 << 23


def embedding_std(z: Tensor) -> float:
    """Mean over dimensions of the standard deviation over samples of L2-normalised ``z``.

    0 when every embedding is the same (collapse); about ``1 / sqrt(D)`` for embeddings
    spread uniformly on the sphere.
    """
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(
            f"embedding_std needs at least 2 embeddings of shape (N, D), got {tuple(z.shape)}"
        )
    z = F.normalize(z.detach().float(), dim=1)
    return float(z.std(dim=0).mean())


def collapse_threshold(dim: int) -> float:
    """Below this ``embedding_std`` (a fifth of the healthy ``1 / sqrt(dim)``) warn of collapse."""
    if dim < 1:
        raise ValueError(f"embedding dimension must be positive, got {dim}")
    return 0.2 / math.sqrt(dim)


def cluster_stats(assignments: Tensor, k: int) -> dict:
    """Balance of a clustering: ``empty_clusters``, ``size_min``, ``size_max`` and ``size_cv``
    (standard deviation / mean of the k cluster sizes). Assignments of -1 are ignored."""
    if k < 1:
        raise ValueError(f"need k >= 1 clusters, got {k}")
    a = assignments.detach().reshape(-1).long()
    a = a[a >= 0]
    if a.numel() and int(a.max()) >= k:
        raise ValueError(f"assignment {int(a.max())} out of range for k={k} clusters")
    sizes = torch.bincount(a.cpu(), minlength=k).double()
    mean = sizes.mean()
    cv = float(sizes.std(unbiased=False) / mean) if mean > 0 else 0.0
    return {
        "empty_clusters": int((sizes == 0).sum()),
        "size_min": int(sizes.min()),
        "size_max": int(sizes.max()),
        "size_cv": cv,
    }


@torch.no_grad()
def knn_accuracy(embeddings: Tensor, targets: Tensor, k: int = 20) -> float:
    """Leave-one-out k-nearest-neighbour accuracy under cosine similarity.

    Each labelled sample is classified by a majority vote of its ``k`` most similar other
    labelled samples (ties: the smallest label). Samples with target -1 take no part.
    """
    if embeddings.ndim != 2 or targets.shape != (embeddings.shape[0],):
        raise ValueError(
            f"expected embeddings (N, D) and targets (N,), got {tuple(embeddings.shape)} "
            f"and {tuple(targets.shape)}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    targets = targets.to(embeddings.device).long()
    keep = targets >= 0
    z = F.normalize(embeddings[keep].float(), dim=1)
    y = targets[keep]
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"kNN accuracy needs at least 2 labelled samples, got {n}")
    k = min(k, n - 1)
    classes = int(y.max()) + 1
    chunk = max(1, _BLOCK_ELEMENTS // n)
    correct = 0
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sims = z[start:stop] @ z.T
        rows = torch.arange(stop - start, device=z.device)
        sims[rows, rows + start] = -math.inf  # leave the sample itself out
        neighbours = y[sims.topk(k, dim=1).indices]
        votes = torch.zeros(stop - start, classes, device=z.device)
        votes.scatter_add_(1, neighbours, torch.ones_like(neighbours, dtype=votes.dtype))
        correct += int((votes.argmax(dim=1) == y[start:stop]).sum())
    return correct / n
