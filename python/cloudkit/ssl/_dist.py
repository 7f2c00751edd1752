"""The few torch.distributed calls the SSL methods make (MoCo's shuffled BN, DeepCluster's bank).

Every helper is a no-op (or the identity) unless a process group with more than one rank is
initialised, so the methods run unchanged in a single process.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    """Number of ranks of the default process group, 1 when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_distributed() -> bool:
    """True when torch.distributed is initialised with more than one rank."""
    return world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


@torch.no_grad()
def all_gather_cat(x: Tensor) -> Tensor:
    """Concatenate (along dim 0, in rank order) the ``x`` of every rank; no gradient.

    Every rank must pass the same shape: a ValueError names the sizes otherwise (the usual
    cause is a last partial batch; use ``drop_last=True``).
    """
    if not is_distributed():
        return x
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.empty_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(
            f"batch sizes differ between ranks ({[int(s) for s in sizes]}): every rank must "
            "pass a batch of the same size (use drop_last=True in the data loader)"
        )
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)
