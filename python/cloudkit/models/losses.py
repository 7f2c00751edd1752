"""Segmentation losses: soft Dice plus (binary) cross-entropy, ignoring no-data pixels.

Targets are ``(N, H, W)`` int64 class indices with :data:`~cloudkit.data.tasks.IGNORE` (255)
where a pixel counts for nothing. Both losses are means over the non-ignored pixels of the
whole batch; the Dice term is one soft Dice over the batch (per class, then averaged, for the
multi-class loss), smoothed by :data:`SMOOTH` so that a batch without any counted pixel gives
a loss of exactly zero (with zero, finite gradients) rather than NaN.

Losses are computed in float32 whatever the logits' dtype (mixed precision). ``class_weights``
(one per class, binary: negative then positive) scale each pixel's cross-entropy by its
target's weight, still divided by the count of pixels: a rare class weighted 3 counts as if
it were three times as common. The Dice term needs none: it already averages over classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cloudkit.data.tasks import IGNORE, multi_classes

#: Added to the Dice numerator and denominator.
SMOOTH = 1.0


def _check(logits: Tensor, targets: Tensor, channels: int | None) -> None:
    if logits.ndim != 4 or targets.ndim != 3:
        raise ValueError(
            f"expected logits (N, K, H, W) and targets (N, H, W), got {tuple(logits.shape)} "
            f"and {tuple(targets.shape)}"
        )
    if logits.shape[0] != targets.shape[0] or logits.shape[2:] != targets.shape[1:]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in N, H or W"
        )
    if channels is not None and logits.shape[1] != channels:
        raise ValueError(f"binary logits must have 1 channel, got {logits.shape[1]}")


def dice_bce_loss(logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
    """Soft Dice + BCE for one-channel logits ``(N, 1, H, W)`` and targets in {0, 1, IGNORE}."""
    _check(logits, targets, 1)
    logits = logits[:, 0].float()
    valid = (targets != IGNORE).float()
    positive = (targets == 1).float()
    count = valid.sum()
    bce = F.binary_cross_entropy_with_logits(logits, positive, reduction="none")
    if class_weights is not None:
        w = class_weights.to(logits.device, torch.float32)
        bce = bce * torch.where(positive > 0, w[1], w[0])
    bce = (bce * valid).sum() / count.clamp(min=1.0)
    prob = torch.sigmoid(logits) * valid
    inter = (prob * positive).sum()
    dice = 1.0 - (2.0 * inter + SMOOTH) / (prob.sum() + (positive * valid).sum() + SMOOTH)
    return bce + dice


def dice_ce_loss(logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
    """Multi-class soft Dice (mean over classes) + cross-entropy for ``(N, K, H, W)`` logits."""
    _check(logits, targets, None)
    logits = logits.float()
    k = logits.shape[1]
    valid = targets != IGNORE
    count = valid.sum().clamp(min=1).float()
    ce_weight = None if class_weights is None else class_weights.to(logits.device, torch.float32)
    ce = F.cross_entropy(logits, targets, ce_weight, ignore_index=IGNORE, reduction="sum") / count
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    weight = valid.unsqueeze(1).float()
    onehot = F.one_hot(safe, k).permute(0, 3, 1, 2).float() * weight
    prob = torch.softmax(logits, dim=1) * weight
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    dice = 1.0 - (2.0 * inter + SMOOTH) / (prob.sum(dims) + onehot.sum(dims) + SMOOTH)
    return ce + dice.mean()


def predict_classes(logits: Tensor, binary: bool) -> Tensor:
    """(N, K, H, W) logits -> (N, H, W) int64 classes: sigmoid > 0.5 (logit > 0) when
    ``binary``, else the ``multi`` task's rule (:func:`cloudkit.data.tasks.multi_classes`)."""
    if binary:
        return (logits[:, 0] > 0).long()
    return multi_classes(torch.softmax(logits.float(), dim=1)).long()
