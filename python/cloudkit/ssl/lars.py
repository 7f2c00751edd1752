"""LARS (You et al., 2017): SGD with momentum whose step is scaled per parameter tensor.

For a parameter ``w`` with gradient ``g`` the update direction is ``d = g + wd * w``, scaled by
the trust ratio ``eta * ||w|| / (||g|| + wd * ||w||)`` (left at 1 when either norm is 0); then
``buf = momentum * buf + d`` and ``w -= lr * buf``. Groups marked ``lars_exclude`` (biases and
normalisation weights, see ``param_groups``) take plain SGD-momentum steps: no weight decay,
no trust ratio.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling; ``lr`` is the global rate (the schedule acts on it)."""

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.02,
    ) -> None:
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight decay must be >= 0, got {weight_decay}")
        if eta <= 0:
            raise ValueError(f"trust coefficient eta must be > 0, got {eta}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            excluded = group["lars_exclude"]
            wd, eta = group["weight_decay"], group["eta"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                direction = p.grad.detach().clone()
                if not excluded:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(direction)
                    if wd:
                        direction.add_(p, alpha=wd)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        eta * w_norm / (g_norm + wd * w_norm),
                        torch.ones_like(w_norm),
                    )
                    direction.mul_(trust)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = direction
                else:
                    buf.mul_(group["momentum"]).add_(direction)
                p.add_(buf, alpha=-group["lr"])
        return loss


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups for LARS: weights (decayed, adapted), and biases and normalisation parameters
    (every tensor of at most one dimension) with ``lars_exclude`` and no weight decay.

    Frozen parameters (``requires_grad`` False) are left out; empty groups are dropped.
    """
    regular: list[nn.Parameter] = []
    excluded: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (excluded if p.ndim <= 1 else regular).append(p)
    groups = [
        {"params": regular, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": excluded, "weight_decay": 0.0, "lars_exclude": True},
    ]
    return [g for g in groups if g["params"]]
