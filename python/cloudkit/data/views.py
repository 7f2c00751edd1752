"""Pairs of views for the two pretraining methods.

MoCo v2 contrasts two augmentations of one tile (:class:`TwoViews`); DeepCluster v2 as Gbodjo
et al. (2026) train it pairs a tile with another tile of the same cloudiness bin
(:class:`CloudinessPairs`).
Items: ``{"view1", "view2", "index", "cloud_bin"}``; ``index`` is the dataset index of view1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from cloudkit.data.tiles import TileDataset
from cloudkit.errors import StoreError

Transform = Callable[[Tensor], Tensor]


class TwoViews(Dataset):
    """Two independent random views of the same tile."""

    def __init__(self, tiles: TileDataset, transform: Transform) -> None:
        self.tiles = tiles
        self.transform = transform

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, i: int) -> dict:
        item = self.tiles[i]
        image = item["image"]
        return {
            "view1": self.transform(image),
            "view2": self.transform(image),
            "index": item["index"],
            "cloud_bin": item["cloud_bin"],
        }


class CloudinessPairs(Dataset):
    """View 1 of tile ``i``, view 2 of another tile of the same cloudiness bin.

    The partner of every tile is drawn once per epoch from ``(seed, epoch)``: call
    :meth:`set_epoch` before each epoch in the process that reads items. DataLoader workers
    hold their own copy, so persistent workers need the epoch passed to them.
    A tile alone in its bin, or without labels (bin -1), is paired with itself.
    """

    def __init__(self, tiles: TileDataset, transform: Transform, *, seed: int) -> None:
        self.tiles = tiles
        self.transform = transform
        self.seed = seed
        self._bins = tiles.cloud_bins()
        if not (self._bins >= 0).any():
            raise StoreError(
                "cloudiness pairs need labelled tiles but no tile of the stores has a cloud "
                "fraction; tile labelled scenes (e.g. --scl-labels) or use TwoViews"
            )
        self.epoch = 0
        self._partners = _draw_partners(self._bins, seed, 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._partners = _draw_partners(self._bins, self.seed, epoch)

    def partner_of(self, i: int) -> int:
        """Dataset index of the tile whose view is ``view2`` of item ``i`` this epoch."""
        return int(self._partners[i])

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, i: int) -> dict:
        item = self.tiles[i]
        j = self.partner_of(item["index"])
        other = item if j == item["index"] else self.tiles[j]
        return {
            "view1": self.transform(item["image"]),
            "view2": self.transform(other["image"]),
            "index": item["index"],
            "cloud_bin": item["cloud_bin"],
        }


def _draw_partners(bins: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """For every tile, a different tile of the same bin chosen uniformly (itself if alone)."""
    rng = np.random.default_rng([seed, epoch])
    partners = np.arange(len(bins), dtype=np.int64)
    for b in np.unique(bins[bins >= 0]):
        members = np.flatnonzero(bins == b)
        m = len(members)
        if m < 2:
            continue
        # draw among the m - 1 others: offsets 0..m-2, skipping the tile's own position
        draw = rng.integers(0, m - 1, size=m)
        positions = np.arange(m)
        partners[members] = members[draw + (draw >= positions)]
    return partners
