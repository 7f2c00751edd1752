"""Tiles of one or more tile stores as a PyTorch dataset of reflectance tensors.

Only the small per-tile index (valid and cloud fractions) is read up front; pixels are read
one tile (one Zarr chunk) per item, through `cloudkit.io.store.StoreReader`. A process opens
a store's reader when it first reads one of its tiles and keeps at most :data:`OPEN_READERS`
open (the least recently used is closed), so a dataset over thousands of stores costs each
DataLoader worker only the stores it reads.
Readers are never shared across a fork, so the dataset works inside workers (fork or spawn).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cloudkit.data.reflectance import ValueScale, store_reflectance
from cloudkit.errors import BandMismatchError, StoreError, TileShapeError
from cloudkit.io.datasets import stored_scene_level
from cloudkit.io.level import L2A
from cloudkit.io.store import StoreReader
from cloudkit.models.band_slots import SLOTS

#: cloudiness bins of Gbodjo et al. (2026): int(percent cloud) // 10, ten bins
NUM_CLOUD_BINS = 10
# cloud_fraction is float32: 0.7 reads back as 69.99999 %; a tolerance far below one pixel
# of any tile (1e-4 % of 384 x 384 pixels is 0.15 pixel) keeps such values in their own bin
_PERCENT_TOLERANCE = 1e-4
#: readers a process keeps open; more stores are reopened when read again (opening one
#: checks its metadata: about 10 ms; an open reader holds about 12 kB and no file handle)
OPEN_READERS = 1024


@dataclass(frozen=True)
class _StoreInfo:
    """What the dataset needs to know of one store before reading pixels."""

    path: Path
    bands: tuple[str, ...]
    tile_size: int
    resolution: float
    values: ValueScale
    scale: torch.Tensor  # (C, 1, 1) float32
    offset: torch.Tensor  # (C, 1, 1) float32
    rows: np.ndarray  # (n,) int64, the kept rows of the store
    cloud_fraction: np.ndarray  # (n,) float32 of the kept rows
    top_of_atmosphere: np.ndarray  # (n,) bool: the tile's scene is L1C (not L2A)
    sun: np.ndarray  # (n, 2) float32 sun azimuth and zenith (degrees) of its scene; NaN unknown


class TileDataset(Dataset):
    """Tiles with ``valid_fraction >= min_valid`` from every store, indices concatenated in
    store order. Items are dicts:

    ``image``      float32 (C, T, T) reflectance, no-data pixels 0.0
    ``valid``      bool (1, T, T)
    ``index``      the dataset index
    ``cloud_bin``  ``int(percent cloud) // 10`` in 0..9, -1 when the tile has no labels
    ``resolution`` the store's pixel size in metres
    ``toa``        the tile's scene is top-of-atmosphere (L1C), not surface (L2A) reflectance
    ``sun``        (azimuth, zenith) in degrees of the tile's scene as the store recorded them,
                   NaN where it did not
    ``labels``     uint8 (1, T, T), only with ``with_labels=True``

    With ``any_bands=True`` stores may hold different bands: ``image`` is (13, T, T) in the
    band slots of an any-band model (`models/band_slots.py`), NaN for the bands a store lacks.
    """

    def __init__(
        self,
        stores: Sequence[Path],
        *,
        min_valid: float = 0.5,
        with_labels: bool = False,
        any_bands: bool = False,
    ) -> None:
        if isinstance(stores, (str, Path)):
            stores = [stores]
        if not stores:
            raise StoreError("no tile store given; pass at least one path made by `cloudkit tile`")
        if not 0.0 <= min_valid <= 1.0:
            raise ValueError(f"min_valid must be a fraction in [0, 1], got {min_valid}")
        self.with_labels = with_labels
        self.any_bands = any_bands
        self._stores = [_read_store_info(Path(p), min_valid, with_labels) for p in stores]
        first = self._stores[0]
        for info in self._stores[1:]:
            _check_same_layout(first, info, same_bands=not any_bands)
        self.bands: tuple[str, ...] = SLOTS if any_bands else first.bands
        self.tile_size: int = first.tile_size
        self._store_of = np.concatenate(
            [np.full(len(s.rows), k, dtype=np.int64) for k, s in enumerate(self._stores)]
        )
        self._row_of = np.concatenate([s.rows for s in self._stores])
        self._cloud_bins = cloud_bins_of(np.concatenate([s.cloud_fraction for s in self._stores]))
        self._readers: OrderedDict[int, StoreReader] = OrderedDict()
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self._row_of)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"tile index {i} out of range for {len(self)} tiles")
        i = int(i) % len(self)
        k, row = int(self._store_of[i]), int(self._row_of[i])
        info, reader = self._stores[k], self._reader(k)
        kept = np.searchsorted(info.rows, row)  # the row's place among the store's kept rows
        dn = reader.tile("images", row)  # (C, T, T) uint16
        valid = reader.tile("valid", row) != 0  # (1, T, T)
        valid_t = torch.from_numpy(valid)
        # DN 0 is no data per band; valid says every band has data, both mean "no value"
        reflectance = store_reflectance(torch.from_numpy(dn), valid_t, info.scale, info.offset)
        item = {
            "image": self._in_slots(reflectance, info) if self.any_bands else reflectance,
            "valid": valid_t,
            "index": i,
            "cloud_bin": int(self._cloud_bins[i]),
            "resolution": info.resolution,
            "toa": bool(info.top_of_atmosphere[kept]),
            "sun": (float(info.sun[kept, 0]), float(info.sun[kept, 1])),
        }
        if self.with_labels:
            item["labels"] = torch.from_numpy(reader.tile("labels", row))
        return item

    def tile_of(self, i: int) -> tuple[int, int]:
        """(store, tile row in that store) of item ``i``."""
        return int(self._store_of[i]), int(self._row_of[i])

    @property
    def coarsest_resolution(self) -> float:
        """The largest pixel size (m) of the stores."""
        return max(info.resolution for info in self._stores)

    @property
    def value_scale(self) -> ValueScale:
        """How store values become the reflectance of :attr:`bands`, for a checkpoint to record
        (every store holds the same convention; the first store's, spread over the slots for
        an any-band dataset)."""
        values = self._stores[0].values
        if not self.any_bands:
            return values
        return ValueScale((values.scale[0],) * len(SLOTS), (values.offset[0],) * len(SLOTS))

    @staticmethod
    def _in_slots(reflectance: torch.Tensor, info: _StoreInfo) -> torch.Tensor:
        slots = torch.full((len(SLOTS), *reflectance.shape[1:]), float("nan"))
        slots[[SLOTS.index(b) for b in info.bands]] = reflectance
        return slots

    def cloud_bins(self) -> np.ndarray:
        """(len,) int64 cloudiness bin of every tile, -1 where the tile has no labels."""
        return self._cloud_bins.copy()

    def _reader(self, k: int) -> StoreReader:
        """Store ``k``'s reader in this process, opened on first use."""
        if self._pid != os.getpid():  # a forked DataLoader worker opens its own
            self._readers, self._pid = OrderedDict(), os.getpid()
        reader = self._readers.get(k)
        if reader is None:
            reader = self._readers[k] = StoreReader.open(self._stores[k].path)
            if len(self._readers) > OPEN_READERS:
                self._readers.popitem(last=False)
        else:
            self._readers.move_to_end(k)
        return reader

    def open_readers(self) -> int:
        """How many store readers this process holds (for tests and benches)."""
        return len(self._readers) if self._pid == os.getpid() else 0

    def __getstate__(self) -> dict:
        # spawn-started workers get the dataset pickled; they open their own handles
        return {**self.__dict__, "_readers": OrderedDict(), "_pid": None}


def cloud_bins_of(cloud_fraction: np.ndarray) -> np.ndarray:
    """Cloudiness bins (0..9, int64) of cloud fractions in [0, 1]; NaN -> -1."""
    fraction = np.asarray(cloud_fraction, dtype=np.float64)
    known = ~np.isnan(fraction)
    percent = np.where(known, fraction, 0.0) * 100.0 + _PERCENT_TOLERANCE
    bins = np.clip(np.floor(percent) // 10, 0, NUM_CLOUD_BINS - 1).astype(np.int64)
    return np.where(known, bins, -1)


def _read_store_info(path: Path, min_valid: float, with_labels: bool) -> _StoreInfo:
    reader = StoreReader.open(path)
    valid_fraction = reader.index("valid_fraction")
    rows = np.flatnonzero(valid_fraction >= min_valid).astype(np.int64)
    if len(rows) == 0:
        raise StoreError(
            f"{path}: no tile with valid fraction >= {min_valid:g} (the store has "
            f"{reader.num_tiles} tiles); lower min_valid or tile more scenes"
        )
    if with_labels:
        reader.require_labels()
    values = ValueScale(tuple(reader.scale), tuple(reader.offset))
    scale, offset = values.tensors()
    toa = _top_of_atmosphere(reader)
    scene_of = reader.index("tile_scene")[rows]
    sun = np.full((len(rows), 2), np.nan, np.float32)
    if reader.num_scenes:
        angles = np.stack([reader.scenes("sun_azimuth"), reader.scenes("sun_zenith")], axis=1)
        sun = angles.astype(np.float32)[scene_of]
    return _StoreInfo(
        path=path,
        bands=reader.bands,
        tile_size=reader.tile_size,
        resolution=reader.resolution,
        values=values,
        scale=scale,
        offset=offset,
        rows=rows,
        cloud_fraction=reader.index("cloud_fraction")[rows],
        top_of_atmosphere=toa[scene_of] if len(toa) else np.ones(len(rows), bool),
        sun=sun,
    )


def _top_of_atmosphere(reader: StoreReader) -> np.ndarray:
    """(scenes,) bool: the stored scene is L1C. A scene nothing tells the level of counts as
    top-of-atmosphere (synthetic shadows then keep the path reflectance: the cautious side)."""
    if reader.num_scenes == 0:
        return np.zeros(0, dtype=bool)
    rows = zip(reader.scenes("layout"), reader.scenes("id"), reader.scenes("path"), strict=True)
    return np.array(
        [stored_scene_level(str(lay), str(i), str(p), reader.bands) != L2A for lay, i, p in rows],
        dtype=bool,
    )


def _check_same_layout(first: _StoreInfo, other: _StoreInfo, *, same_bands: bool) -> None:
    if same_bands and other.bands != first.bands:
        raise BandMismatchError(
            f"{other.path}: bands {','.join(other.bands)} differ from {','.join(first.bands)} "
            f"of {first.path}; stores read together must hold the same bands"
        )
    if other.tile_size != first.tile_size:
        raise TileShapeError(
            f"{other.path}: tile size {other.tile_size} differs from {first.tile_size} of "
            f"{first.path}; stores read together must share one tile size"
        )
