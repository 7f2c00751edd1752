"""A committed scene's row of the ``scenes/`` table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import cast

import numpy as np
import zarr

from cloudkit.io.store.layout import (
    _SCENE_CHUNK,
    _SUN_ARRAYS,
    SceneRecord,
    TileRecord,
    _every_chunk,
    _StoreGroup,
)


def append_scene_row(
    group: _StoreGroup, row: int, record: SceneRecord, tiles: Sequence[TileRecord], start: int
) -> None:
    """Write row ``row`` of the ``scenes/`` table: the scene ``record`` whose ``tiles`` were
    committed from tile ``start`` on (every chunk written, as every column's)."""
    valid = float(np.mean([t.valid_fraction for t in tiles])) if tiles else 0.0
    clouds = [t.cloud_fraction for t in tiles if not math.isnan(t.cloud_fraction)]
    values = {
        "id": record.scene_id,
        "path": record.path,
        "layout": record.layout,
        "crs": record.crs_wkt,
        "transform": np.asarray(record.transform, dtype=np.float64),
        "shape": np.asarray((record.height, record.width), dtype=np.int32),
        "tile_start": start,
        "tile_count": len(tiles),
        "add_offset": np.asarray(record.add_offset, dtype=np.int32),
        "dn_shift": np.asarray(record.dn_shift, dtype=np.int32),
        "processing_baseline": record.processing_baseline,
        "label_kind": record.label_kind,
        "valid_fraction": valid,
        "cloud_fraction": float(np.mean(clouds)) if clouds else math.nan,
        "tiled_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sun_azimuth": record.sun_azimuth,
        "sun_zenith": record.sun_zenith,
        "sun_source": record.sun_source,
    }
    for name, value in values.items():
        column = _scene_column(group, name, row)
        column.resize((row + 1, *column.shape[1:]))
        _every_chunk(column)[row] = value


def _scene_column(group: _StoreGroup, name: str, rows: int) -> zarr.Array:
    """The ``scenes/`` column ``name``; a sun column absent from a store made before
    cloudkit recorded the sun is made now, its ``rows`` earlier scenes not known."""
    try:
        return cast(zarr.Array, group[f"scenes/{name}"])
    except KeyError:
        if name not in _SUN_ARRAYS:
            raise
    dtype, fill = _SUN_ARRAYS[name]
    column = cast(zarr.Group, group["scenes"]).create_array(
        name,
        shape=(rows,),
        chunks=(_SCENE_CHUNK,),
        dtype=dtype,
        compressors=cast(zarr.Array, group["scenes/id"]).compressors,
        fill_value=fill,
    )
    if rows:
        _every_chunk(column)[:] = np.full(rows, fill, dtype=object if dtype is str else dtype)
    return column
