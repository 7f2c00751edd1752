"""Exponential moving average of a network's weights (the MoCo key encoder)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """Move ``target`` towards ``online``: ``t = m * t + (1 - m) * o`` for every parameter.

    Buffers (BatchNorm running statistics, counters) are copied from ``online`` as they are.
    Both modules must have the same architecture (parameters and buffers in the same order).
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    if len(t_params) != len(o_params):
        raise ValueError(
            f"target has {len(t_params)} parameters, online has {len(o_params)}: "
            "ema_update needs two copies of the same architecture"
        )
    for t, o in zip(t_params, o_params, strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)
    for buffer, source in zip(target.buffers(), online.buffers(), strict=True):
        buffer.copy_(source)


def freeze(module: nn.Module) -> None:
    """Stop gradients to every parameter of ``module`` (``requires_grad = False``)."""
    for p in module.parameters():
        p.requires_grad_(False)
