"""What a tile store holds: its format's constants, what it records of a scene and of a
tile, every array's dtype and fill value, and where a tile's chunk lies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from cloudkit.io.scene import LABEL_NODATA

if TYPE_CHECKING:
    from cloudkit.io.store.writer import _Members

#: a store's group, or a writer's view of it that looks each member up once (writer.py)
_StoreGroup: TypeAlias = "zarr.Group | _Members"

FORMAT = "cloudkit-tiles"


FORMAT_VERSION = 1


#: DN convention of every store: reflectance = (value + STORE_ADD_OFFSET) / quantification,
#: the convention of processing baseline 04.00. Older products are shifted by +1000 on write.
STORE_ADD_OFFSET = -1000


QUANTIFICATION = 10000.0


_INDEX_CHUNK = 16384


_SCENE_CHUNK = 1024


_COMPRESSOR = ZstdCodec(level=1)


#: the ``integrity`` attribute of stores whose every chunk carries a CRC-32C and whose every
#: array has all its chunks on disk up to its committed rows (even those of only the fill
#: value): a missing or altered chunk of any array is then known damage
INTEGRITY = "crc32c, every chunk written"


#: the ``integrity`` of stores written before index and scene columns wrote every chunk:
#: checksummed, every tile chunk on disk; a column's missing chunk may be only fill value
TILE_INTEGRITY = "crc32c, every tile chunk written"


#: stores older still have neither; they read as before
_CHECKSUMMED = (INTEGRITY, TILE_INTEGRITY)


#: how long a shared writer waits for the store's lock (a commit holds it for moments; a
#: direct writer, e.g. another program's `TileStore.open`, for its whole run)
LOCK_WAIT_SECONDS = 600.0


#: rows of fill-value chunks written at once (labels of scenes that had none)
_FILL_BLOCK = 512


@dataclass(frozen=True)
class StoreLayout:
    """What every scene in a store must share."""

    bands: tuple[str, ...]
    tile_size: int
    overlap: int
    resolution: float
    decode: str = "full"  # how JPEG 2000 bands finer than the grid were read (io/grid.py)


@dataclass(frozen=True)
class TileRecord:
    index: int
    row: int
    col: int
    valid_fraction: float
    cloud_fraction: float


@dataclass(frozen=True)
class SceneRecord:
    """What the store remembers of a scene (one row of ``scenes/``)."""

    scene_id: str
    path: str
    layout: str
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    height: int
    width: int
    add_offset: tuple[int, ...]  # the product's own offsets, per band
    dn_shift: tuple[int, ...]  # what was added to non-zero DN to reach the store's convention
    processing_baseline: str
    label_kind: str
    # the scene's mean sun angles (degrees) and where they came from; NaN, "": not known
    sun_azimuth: float = math.nan
    sun_zenith: float = math.nan
    sun_source: str = ""


def dn_shift_for(add_offset: Sequence[int]) -> tuple[int, ...]:
    """Shift that brings a product's DN to the store convention (0 for baseline >= 04.00)."""
    return tuple(int(a) - STORE_ADD_OFFSET for a in add_offset)


#: pixels, written by the Rust writer one chunk per tile: dtype, fill value, name of axis 1
_TILE_ARRAYS: dict[str, tuple[type, int, str]] = {
    "images": (np.uint16, 0, "band"),
    "valid": (np.uint8, 0, "layer"),
    "labels": (np.uint8, LABEL_NODATA, "layer"),  # created with the first labelled scene
}


#: per-tile index columns (N,): dtype, fill value
_INDEX_ARRAYS: dict[str, tuple[type, float]] = {
    "tile_scene": (np.int32, -1),
    "tile_row": (np.int32, 0),
    "tile_col": (np.int32, 0),
    "valid_fraction": (np.float32, 0.0),
    "cloud_fraction": (np.float32, math.nan),
}


_BANDS = -1  # a scenes/ column with one value per band


#: scenes/ columns (S, *row): dtype, row shape, fill value (None: zarr's default)
_SCENE_ARRAYS: dict[str, tuple[type, tuple[int, ...], float | None]] = {
    "id": (str, (), None),
    "path": (str, (), None),
    "layout": (str, (), None),
    "crs": (str, (), None),
    "transform": (np.float64, (6,), None),
    "shape": (np.int32, (2,), None),
    "tile_start": (np.int64, (), None),
    "tile_count": (np.int32, (), None),
    "add_offset": (np.int32, (_BANDS,), None),
    "dn_shift": (np.int32, (_BANDS,), None),
    "processing_baseline": (str, (), None),
    "label_kind": (str, (), None),
    "valid_fraction": (np.float32, (), None),
    "cloud_fraction": (np.float32, (), math.nan),
    "tiled_at": (str, (), None),
}


#: scenes/ columns of the sun (S,): dtype, fill value; stores made before them lack them,
#: and readers take a missing one as "not known"
_SUN_ARRAYS: dict[str, tuple[type, float | str]] = {
    "sun_azimuth": (np.float32, math.nan),
    "sun_zenith": (np.float32, math.nan),
    "sun_source": (str, ""),
}


def _every_chunk(array):
    """``array`` writing even chunks of only the fill value: in a store of
    :data:`INTEGRITY` a missing chunk is damage, never a default."""
    return array.with_config({"write_empty_chunks": True})


def _chunk_key(name: str, row: int) -> str:
    """The key of tile ``row``'s chunk of the tile array ``name`` (one tile per chunk)."""
    return f"{name}/c/{row}/0/0/0"


def _tile_folder(name: str, row: int) -> str:
    """The folder that holds tile ``row``'s chunk of ``name``, and nothing else."""
    return f"{name}/c/{row}"


def _compressors(group: _StoreGroup) -> tuple:
    """The bytes codecs of a store's new arrays: zstd, then a CRC-32C where the store
    checksums its chunks."""
    checked = group.attrs.get("integrity") in _CHECKSUMMED
    return (_COMPRESSOR, Crc32cCodec()) if checked else (_COMPRESSOR,)


def layout_of(attrs) -> StoreLayout:
    """The layout a store's attributes record."""
    return StoreLayout(
        tuple(attrs["bands"]),
        int(attrs["tile_size"]),
        int(attrs["overlap"]),
        float(attrs["resolution"]),
        str(attrs.get("decode", "full")),  # stores made before --decode decoded in full
    )
