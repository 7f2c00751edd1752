"""Any subset of the 13 Sentinel-2 bands in one model: fixed input slots, missing bands NaN.

An any-band model reads the 13 bands in ESA order. A band the product lacks, or one that
training leaves out on purpose, arrives as a channel of NaN. The stem turns those into zeros
and tells the network which bands are present through a learned bias per band on its first
feature maps: a constant input plane convolved is a constant, so this is what a presence
flag per band as an extra input channel would add, without the border effects or the cost
of 13 more input channels on the most expensive convolution of a scene.

Training draws band subsets that people actually have (:func:`drop_bands`): true colour
only, true colour and near infrared, the six bands of most cloud maskers, a whole L1C or
L2A product, or a random mix. Every subset holds B02, B03 and B04, which is the least an
any-band model asks of a product (:data:`REQUIRED_BANDS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cloudkit.bands import L1C_BANDS
from cloudkit.errors import BandMismatchError

#: The slots of an any-band model, in ESA order.
SLOTS: tuple[str, ...] = L1C_BANDS
#: The least an any-band model needs: true colour.
REQUIRED_BANDS: tuple[str, ...] = ("B02", "B03", "B04")
_SUBSETS = (
    # (probability, bands kept besides the required ones; None = every band the crop has)
    (0.35, ()),
    (0.15, ("B08", "B8A")),
    (0.10, ("B08", "B8A", "B11", "B12")),
    (0.25, None),
)


class PresenceStem(nn.Module):
    """The first convolution of an any-band encoder: NaN channels become zeros plus a
    learned bias per present band."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self.presence = nn.Linear(conv.in_channels, conv.out_channels)
        # starts as a plain convolution: presence only matters once training says so
        nn.init.zeros_(self.presence.weight)
        nn.init.zeros_(self.presence.bias)

    def forward(self, x: Tensor) -> Tensor:
        missing = torch.isnan(x).flatten(2).all(dim=-1)
        present = (~missing).to(self.presence.weight.dtype)
        features = self.conv(torch.nan_to_num(x, nan=0.0))
        return features + self.presence(present)[:, :, None, None].to(features.dtype)

    def fold(self, bn: nn.BatchNorm2d) -> PresenceStem:
        """This stem with an eval-mode BatchNorm that follows it folded in (inference only)."""
        # an eval-mode BatchNorm's running statistics (fuse_conv_bn_eval needs them too)
        running_var = cast(Tensor, bn.running_var)
        scale = (bn.weight / torch.sqrt(running_var + bn.eps)).detach()
        folded = PresenceStem(fuse_conv_bn_eval(self.conv, bn))
        with torch.no_grad():
            folded.presence.weight.copy_(self.presence.weight * scale[:, None])
            folded.presence.bias.copy_(self.presence.bias * scale)
        return folded.train(False)


def to_slots(image: np.ndarray, bands: Sequence[str]) -> np.ndarray:
    """(C, H, W) in ``bands`` order -> (13, H, W) float32 in :data:`SLOTS`, NaN where absent."""
    index = {band: i for i, band in enumerate(bands)}
    unknown = [b for b in bands if b not in SLOTS]
    if unknown:
        raise BandMismatchError(f"unknown Sentinel-2 bands {','.join(unknown)}")
    out = np.full((len(SLOTS), *image.shape[1:]), np.nan, dtype=np.float32)
    for slot, band in enumerate(SLOTS):
        if band in index:
            out[slot] = image[index[band]]
    return out


def check_any_band_input(bands: Sequence[str], *, what: str) -> None:
    """Raise :class:`BandMismatchError` unless ``bands`` hold :data:`REQUIRED_BANDS`."""
    lacking = [b for b in REQUIRED_BANDS if b not in set(bands)]
    if lacking:
        raise BandMismatchError(
            f"{what} has bands {','.join(bands) or '(none)'} but the model needs at least "
            f"{','.join(REQUIRED_BANDS)} (lacking {','.join(lacking)})"
        )


def drop_bands(slots: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random realistic band subset of a (13, H, W) slot image: the others become NaN."""
    present = ~np.isnan(slots).all(axis=(1, 2))
    draw = rng.random()
    required = set(REQUIRED_BANDS)
    keep: set[str] | None
    for probability, extra in _SUBSETS:
        if draw < probability:
            keep = None if extra is None else required | set(extra)
            break
        draw -= probability
    else:
        keep = required | {b for b in SLOTS if rng.random() < 0.6}
    out = slots.copy()
    if keep is not None:
        for slot, band in enumerate(SLOTS):
            if band not in keep and present[slot]:
                out[slot] = np.nan
    return out
