"""Small real tile stores for the pretraining tests, built once per test session.

The T29UNU L2A sample (real pixels, Sen2Cor SCL labels) is tiled once at 60 m into 32 px tiles
(about 2000 tiles, a few seconds); tests then take small subsets of it, spread over the
cloudiness bins, written as stores of their own (``subset_store``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from tests.helpers.shared_data import L2A_T29UNU, T29UNU_60M_BANDS, require

BANDS = T29UNU_60M_BANDS
TILE = 32
STORE_ARRAYS = (
    "images",
    "valid",
    "labels",
    "tile_scene",
    "tile_row",
    "tile_col",
    "valid_fraction",
    "cloud_fraction",
)


def real_store(tmp_path_factory, tile_size: int = TILE) -> Path:
    """T29UNU tiled at 60 m in ``tile_size`` px tiles, with labels; tiled once per session and
    shared by every test module that asks for that tile size."""
    from cloudkit.config import TileOptions
    from cloudkit.tiler.writer import tile_paths

    require()
    path = tmp_path_factory.getbasetemp() / f"t29unu-60m-{tile_size}px.zarr"
    done = path.with_suffix(".done")
    if not done.exists():
        options = TileOptions(resolution=60, bands=BANDS, tile_size=tile_size, scl_labels=True)
        tile_paths([L2A_T29UNU], path, options)
        done.touch()
    return path


def subset_store(src: Path, dst: Path, n: int, *, seed: int = 0, labels: bool = True) -> Path:
    """A store of ``n`` fully valid tiles of ``src``, drawn round-robin over the cloudiness
    bins (so every bin that exists is represented); ``labels=False`` drops the labels."""
    group = zarr.open_group(str(src), mode="r")
    count = int(group.attrs["num_tiles"])
    valid = group["valid_fraction"][:count]
    cloud = group["cloud_fraction"][:count]
    bins = np.clip(np.floor(np.nan_to_num(cloud) * 100) // 10, 0, 9).astype(int)
    rng = np.random.default_rng(seed)
    pools = [rng.permutation(np.flatnonzero((valid >= 1.0) & (bins == b))) for b in range(10)]
    rows: list[int] = []
    depth = 0
    while len(rows) < n:
        for pool in pools:
            if depth < len(pool) and len(rows) < n:
                rows.append(int(pool[depth]))
        depth += 1
    rows_arr = np.sort(np.asarray(rows))
    out = zarr.open_group(str(dst), mode="w")
    # written here with zarr's defaults (no checksums, fill-value chunks left out): a store of
    # the kind written before checksums, so it must not claim them
    attrs = {k: v for k, v in group.attrs.items() if k != "integrity"}
    if not labels:  # a store never labelled: cloudkit sets label_codes with the labels array
        attrs.pop("label_codes", None)
    attrs["num_tiles"] = n
    for name in STORE_ARRAYS:
        if name not in group or (name == "labels" and not labels):
            continue
        source = group[name]
        data = source.get_orthogonal_selection((rows_arr,) + (slice(None),) * (source.ndim - 1))
        if name == "cloud_fraction" and not labels:
            data = np.full_like(data, np.nan)
        chunks = (1, *source.shape[1:]) if source.ndim > 1 else (n,)
        out.create_array(name, data=data, chunks=chunks)
    out.attrs.update(attrs)
    return dst
