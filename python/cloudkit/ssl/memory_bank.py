"""Buffer-backed memories: MoCo's queue of negative keys and DeepCluster's embedding bank.

Both are ``nn.Module`` buffers, so they move with ``.to(device)`` and are saved in
``state_dict`` (a resumed run continues with the same negatives and embeddings).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NegativeQueue(nn.Module):
    """First-in first-out queue of ``size`` L2-normalised keys of dimension ``dim``.

    Starts as random unit vectors. ``enqueue`` overwrites the oldest ``batch`` rows; the
    batch must divide ``size`` so that the write pointer wraps exactly at the end.
    """

    queue: Tensor
    ptr: Tensor

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        if dim < 1 or size < 1:
            raise ValueError(f"queue dim and size must be positive, got dim={dim} size={size}")
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.queue.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Replace the oldest rows by ``keys`` (B, dim) and advance the pointer by B."""
        if keys.ndim != 2 or keys.shape[1] != self.queue.shape[1]:
            raise ValueError(
                f"keys must have shape (batch, {self.queue.shape[1]}), got {tuple(keys.shape)}"
            )
        batch, size = keys.shape[0], self.size
        if batch > size:
            raise ValueError(
                f"queue of {size} keys cannot take a batch of {batch}: "
                "make the queue size a multiple of the batch (times the number of processes)"
            )
        if size % batch != 0:
            raise ValueError(
                f"batch of {batch} keys does not divide the queue size {size}, so the queue "
                "pointer would not wrap at the end: choose a queue size that is a multiple of "
                "the batch size (times the number of processes), or drop the last partial batch"
            )
        start = int(self.ptr)
        self.queue[start : start + batch] = keys.detach().to(self.queue.dtype)
        self.ptr.fill_((start + batch) % size)


class EmbeddingBank(nn.Module):
    """Last epoch's embeddings (``num_samples``, ``dim``), one row per dataset index.

    ``filled`` marks the rows written since the last ``reset``. Unwritten rows are zero:
    under DDP each rank writes only the indices it saw, so summing the banks of all ranks
    (``all_reduce``) assembles the full bank; see ``DeepClusterV2.cluster``.
    """

    embeddings: Tensor
    filled: Tensor

    def __init__(self, num_samples: int, dim: int) -> None:
        super().__init__()
        if num_samples < 1 or dim < 1:
            raise ValueError(
                f"bank num_samples and dim must be positive, got {num_samples} and {dim}"
            )
        self.register_buffer("embeddings", torch.zeros(num_samples, dim))
        self.register_buffer("filled", torch.zeros(num_samples, dtype=torch.bool))

    @property
    def num_samples(self) -> int:
        return self.embeddings.shape[0]

    @torch.no_grad()
    def update(self, indices: Tensor, embeddings: Tensor) -> None:
        """Write ``embeddings`` (B, dim) at rows ``indices`` (B,) (dataset indices)."""
        indices = torch.as_tensor(indices, device=self.embeddings.device).long().reshape(-1)
        if embeddings.shape != (indices.numel(), self.embeddings.shape[1]):
            raise ValueError(
                f"expected embeddings of shape ({indices.numel()}, {self.embeddings.shape[1]}) "
                f"for {indices.numel()} indices, got {tuple(embeddings.shape)}"
            )
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_samples):
            raise ValueError(
                f"bank indices must lie in [0, {self.num_samples}), got "
                f"[{int(indices.min())}, {int(indices.max())}]: is num_samples the dataset length?"
            )
        self.embeddings[indices] = embeddings.detach().to(self.embeddings)
        self.filled[indices] = True

    @torch.no_grad()
    def reset(self) -> None:
        """Forget every row (zeros, not filled)."""
        self.embeddings.zero_()
        self.filled.zero_()
