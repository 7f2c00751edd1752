"""Hard negatives on purpose: training tiles rich in clear ground that looks like cloud or
cloud shadow are seen more often.

A cloud model's systematic mistakes are on ground that is dark or bright without any cloud:
dark forest and vegetation, water, terrain shade and burn scars taken for cloud shadow;
bright soil, desert, snow and ice taken for cloud. A tile's hard share is the part of its
labelled pixels that is labelled clear and is either

- dark: red reflectance (B04) below 0.06, where green vegetation, water, shade and burnt
  ground all lie (a top-of-atmosphere red adds only some 0.025 of path reflectance), or
- bright: the mean of blue, green and red (B02 B03 B04) above 0.2, where bright soil,
  desert, snow and ice lie and clear vegetation never does.

With weight ``w`` a tile is seen ``1 + round(w * share)`` times per epoch: each time as
another random crop (the crops are drawn per item), at another resolution when the crops are
(`training_crops.py`). The rule reads only the tile's own reflectance and labels, so it needs
no extra data and no teacher; a store without B02 B03 B04 has no hard share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloudkit.data.tiles import TileDataset
from cloudkit.io.scene import LABEL_CLEAR, LABEL_NODATA

DARK_RED = 0.06
BRIGHT_VISIBLE = 0.2
VISIBLE = ("B02", "B03", "B04")


def hard_share(image: np.ndarray, labels: np.ndarray, bands: Sequence[str]) -> float:
    """Share of the labelled pixels of a tile that are clear and dark or bright. ``image``:
    (C, T, T) reflectance in ``bands`` order (NaN or 0 where no data); ``labels``: (T, T)
    store codes."""
    if not set(VISIBLE) <= set(bands):
        return 0.0
    blue, green, red = (image[bands.index(b)] for b in VISIBLE)
    labelled = labels != LABEL_NODATA
    n = int(labelled.sum())
    if n == 0:
        return 0.0
    with np.errstate(invalid="ignore"):  # NaN where the band has no data: neither
        dark = red < DARK_RED
        bright = (blue + green + red) / 3.0 > BRIGHT_VISIBLE
        seen = (red > 0) & np.isfinite(red)
    return float(((labels == LABEL_CLEAR) & seen & (dark | bright)).sum()) / n


@dataclass(frozen=True)
class Oversampled:
    """The training indices with hard tiles repeated, and what that did."""

    indices: np.ndarray
    tiles: int  # distinct training tiles
    hard_tiles: int  # tiles seen more than once
    mean_share: float  # mean hard share over the training tiles


def oversample(tiles: TileDataset, indices: np.ndarray, weight: float) -> Oversampled:
    """``indices`` (of labelled tiles of ``tiles``) with each repeated ``1 + round(weight *
    hard share)`` times, in their order; unchanged for weight 0."""
    indices = np.asarray(indices, dtype=np.int64)
    if weight <= 0 or len(indices) == 0:
        return Oversampled(indices, len(indices), 0, 0.0)
    shares = np.array(
        [
            hard_share(item["image"].numpy(), item["labels"][0].numpy(), tiles.bands)
            for item in (tiles[int(i)] for i in indices)
        ]
    )
    copies = 1 + np.floor(weight * shares + 0.5).astype(np.int64)
    return Oversampled(
        np.repeat(indices, copies), len(indices), int((copies > 1).sum()), float(shares.mean())
    )
