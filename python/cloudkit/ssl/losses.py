"""SSL losses as pure functions of tensors (no state, no modules)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo's InfoNCE: each query must pick its own key among the key and the queued negatives.

    ``q`` (N, D) queries, ``k`` (N, D) their positive keys, ``queue`` (Q, D) negatives, all
    L2-normalised by the caller. Logits are ``[q.k, q.queue^T] / temperature`` (N, 1 + Q) and the
    loss is their cross-entropy with target 0, averaged over the batch. Keys and queue are
    constants (stop-gradient): only ``q`` receives gradients. Autograd keeps ``queue`` for the
    backward pass, so do not modify it in place before ``backward`` (pass a copy).
    """
    if q.ndim != 2 or q.shape != k.shape or queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(
            f"expected q and k of shape (N, D) and queue (Q, D), got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, queue {tuple(queue.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    k = k.detach()
    positive = (q * k).sum(dim=1, keepdim=True)
    negatives = q @ queue.detach().T
    logits = torch.cat([positive, negatives], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


def swapped_cluster_loss(
    scores: list[Tensor], assignments: list[Tensor], temperature: float
) -> Tensor:
    """DeepCluster v2 loss: cross-entropy between prototype scores and cluster assignments.

    ``scores[h]`` (N, k_h) are embedding-prototype similarities of head ``h``, ``assignments[h]``
    (N,) the k-means cluster of each sample, ``-1`` for samples without one (ignored). Per head
    the loss is the mean cross-entropy of ``scores / temperature`` over assigned samples (0 when
    there is none); the result is the mean over heads. With no assignment at all (first epoch)
    it is a zero tensor that still backpropagates (zero gradients).
    """
    if not scores or len(scores) != len(assignments):
        raise ValueError(
            f"need one assignment vector per head, got {len(scores)} score tensors and "
            f"{len(assignments)} assignment vectors"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    per_head = []
    for s, a in zip(scores, assignments, strict=True):
        if s.ndim != 2 or a.shape != (s.shape[0],):
            raise ValueError(
                f"expected scores (N, k) and assignments (N,), got {tuple(s.shape)} "
                f"and {tuple(a.shape)}"
            )
        a = a.to(device=s.device, dtype=torch.long)
        valid = int((a >= 0).sum())
        if valid == 0:
            per_head.append(s.sum() * 0.0)
            continue
        total = F.cross_entropy(s / temperature, a, ignore_index=-1, reduction="sum")
        per_head.append(total / valid)
    return torch.stack(per_head).mean()
