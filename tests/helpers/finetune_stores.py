"""Real labelled stores for the fine-tuning tests: T29UNU at 60 m in 64 px tiles, split in space.

The scene is tiled once per test session (a few seconds); ``spatial_split`` writes two stores
separated in space, so a model trained on one is tested on ground it has never seen: test =
the western strip (``tile_col < TEST_COLS``, 6 tile columns, about 40 % cloud), train = the
tiles east of a one-tile buffer column (``tile_col >= TRAIN_FROM``). The eastern strip
(``tile_col >= 1152``) would be a poor test set: it is about 90 % cloud, so predicting "cloud"
everywhere already scores F1 0.94 there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from tests.helpers.pretrain_stores import STORE_ARRAYS, real_store

TILE_64 = 64
TEST_COLS = 384
TRAIN_FROM = 448


def real_store_64(tmp_path_factory) -> Path:
    """T29UNU at 60 m in 64 px tiles, with labels (:func:`real_store`)."""
    return real_store(tmp_path_factory, TILE_64)


def rows_store(src: Path, dst: Path, rows: np.ndarray) -> Path:
    """A store holding the given rows of ``src`` (same attributes, same chunking)."""
    group = zarr.open_group(str(src), mode="r")
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    out = zarr.open_group(str(dst), mode="w")
    for name in STORE_ARRAYS:
        if name not in group:
            continue
        source = group[name]
        data = source.get_orthogonal_selection((rows,) + (slice(None),) * (source.ndim - 1))
        chunks = (1, *source.shape[1:]) if source.ndim > 1 else (len(rows),)
        out.create_array(name, data=data, chunks=chunks)
    # written here with zarr's defaults (no checksums, fill-value chunks left out): a store of
    # the kind written before checksums, so it must not claim them
    attrs = {k: v for k, v in group.attrs.items() if k != "integrity"}
    out.attrs.update({**attrs, "num_tiles": len(rows)})
    return dst


def spatial_split(src: Path, folder: Path) -> tuple[Path, Path]:
    """(train, test) stores: ``tile_col >= TRAIN_FROM`` and ``tile_col < TEST_COLS``."""
    group = zarr.open_group(str(src), mode="r")
    n = int(group.attrs["num_tiles"])
    col = group["tile_col"][:n]
    train, test = np.flatnonzero(col >= TRAIN_FROM), np.flatnonzero(col < TEST_COLS)
    return rows_store(src, folder / "train.zarr", train), rows_store(
        src, folder / "test.zarr", test
    )
