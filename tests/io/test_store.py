"""The tile store's contract: layout, attributes, the commit point and repair after a crash.

Pixels here are written with zarr-python standing in for the Rust writer, so the protocol is
tested on its own; tests/test_tiling.py covers the real writer end to end.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import zarr

from cloudkit.errors import BandMismatchError, StoreError
from cloudkit.io.store import (
    STORE_ADD_OFFSET,
    SceneRecord,
    StoreLayout,
    StoreReader,
    TileRecord,
    TileStore,
    dn_shift_for,
    read_scene_table,
)

LAYOUT = StoreLayout(bands=("B02", "B03", "B04"), tile_size=8, overlap=0, resolution=10.0)


def _record(scene_id: str) -> SceneRecord:
    return SceneRecord(
        scene_id=scene_id,
        path=f"/data/{scene_id}.SAFE",
        layout="l1c-safe",
        crs_wkt="EPSG:32631",
        transform=(10.0, 0.0, 300000.0, 0.0, -10.0, 5000040.0),
        height=16,
        width=16,
        add_offset=(0, 0, 0),
        dn_shift=dn_shift_for((0, 0, 0)),
        processing_baseline="02.09",
        label_kind="",
    )


def _write_scene(
    store: TileStore, scene_id: str, n: int, value: int, *, commit: bool = True
) -> None:
    start = store.begin_scene(scene_id, n + 2, with_labels=False)
    group = zarr.open_group(str(store.path), mode="r+")
    for i in range(n + 2):  # two reserved rows more than used, as when empty tiles are skipped
        group["images"][start + i] = np.full((3, 8, 8), value, dtype=np.uint16)
        group["valid"][start + i] = np.ones((1, 8, 8), dtype=np.uint8)  # every chunk, as Rust
    if commit:
        tiles = [TileRecord(start + i, 0, 8 * i, 1.0, math.nan) for i in range(n)]
        store.commit_scene(_record(scene_id), tiles)


def test_new_store_has_the_documented_attributes(tmp_path):
    with TileStore.open(tmp_path / "t.zarr", LAYOUT):
        pass
    attrs = dict(zarr.open_group(str(tmp_path / "t.zarr"), mode="r").attrs)
    assert attrs["bands"] == ["B02", "B03", "B04"]
    assert attrs["tile_size"] == 8 and attrs["resolution"] == 10.0
    assert attrs["scale"] == [1e-4] * 3
    assert attrs["offset"] == [STORE_ADD_OFFSET / 10000] * 3
    assert attrs["num_tiles"] == 0 and attrs["in_progress"] is None


def test_dn_shift_maps_old_baselines_to_the_store_convention():
    # baseline 04.00 products carry -1000 (no shift); older ones are stored 1000 higher
    assert dn_shift_for((-1000, 0)) == (0, 1000)


def test_committed_scenes_are_read_back(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT) as store:
        _write_scene(store, "a", 2, 7)
        _write_scene(store, "b", 3, 9)
        assert store.scene_ids() == ["a", "b"]
    group = zarr.open_group(str(path), mode="r")
    assert group["images"].shape == (5, 3, 8, 8)
    assert group["images"][1].max() == 7 and group["images"][2].min() == 9
    assert group["tile_scene"][:].tolist() == [0, 0, 1, 1, 1]
    assert group["tile_col"][:].tolist() == [0, 8, 0, 8, 16]
    table = read_scene_table(path)
    assert [r["id"] for r in table] == ["a", "b"]
    assert table[1]["tile_start"] == 2 and table[1]["tile_count"] == 3
    assert table[0]["transform"][0] == 10.0


def test_interrupted_scene_is_dropped_and_stale_chunks_removed(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT) as store:
        _write_scene(store, "a", 2, 7)
        _write_scene(store, "b", 3, 9, commit=False)  # as if killed before the commit point
    raw = zarr.open_group(str(path), mode="r")
    assert raw.attrs["in_progress"] == "b"  # a plain reader can tell the store is unfinished
    assert raw.attrs["num_tiles"] == 2
    with TileStore.open(path, LAYOUT) as store:
        assert store.scene_ids() == ["a"]
        assert zarr.open_group(str(path))["images"].shape[0] == 2
        assert not (path / "images" / "c" / "3").exists()
        # growing again must not resurrect the dropped rows
        start = store.begin_scene("c", 4, with_labels=False)
        assert start == 2
        assert zarr.open_group(str(path))["images"][3].max() == 0


def test_layout_mismatch_is_refused(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT):
        pass
    with pytest.raises(BandMismatchError, match="--bands B02,B03,B04"):
        TileStore.open(path, StoreLayout(("B02",), 8, 0, 10.0))
    with pytest.raises(StoreError, match="--tile-size 8"):
        TileStore.open(path, StoreLayout(LAYOUT.bands, 16, 0, 10.0))


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT), pytest.raises(StoreError, match="another cloudkit run"):
        TileStore.open(path, LAYOUT)


def test_non_store_output_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(StoreError, match="not a Zarr store"):
        TileStore.open(tmp_path / "notes", LAYOUT)


def test_labels_array_appears_with_the_first_labelled_scene(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT) as store:
        _write_scene(store, "a", 2, 7)
        start = store.begin_scene("b", 1, with_labels=True)
        store.commit_scene(_record("b"), [TileRecord(start, 0, 0, 1.0, 0.5)])
    group = zarr.open_group(str(path), mode="r")
    # rows of the unlabelled scene read as no-data, never as clear
    assert group["labels"].shape == (3, 1, 8, 8)
    assert int(group["labels"][0].min()) == 255
    assert group.attrs["label_codes"]["1"] == "thick cloud"


def test_reader_shows_only_committed_rows(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT) as store:
        _write_scene(store, "a", 2, 7)
        _write_scene(store, "b", 3, 9, commit=False)  # rows reserved and written, not committed
        reader = StoreReader.open(path)
        assert (reader.num_tiles, reader.num_scenes) == (2, 1)
        assert reader.index("tile_col").tolist() == [0, 8]
        assert reader.scenes("id").tolist() == ["a"]
        assert reader.tile("images", 1).shape == (3, 8, 8) and reader.tile("images", 1).max() == 7
        assert reader.tiles("images", np.array([0, 1])).shape == (2, 3, 8, 8)
        with pytest.raises(IndexError):
            reader.tile("images", 2)  # written, but not committed
        with pytest.raises(IndexError):
            reader.tiles("valid", np.array([1, 2]))
    assert reader.bands == LAYOUT.bands and reader.tile_size == 8 and reader.resolution == 10.0
    assert reader.scale == [1e-4] * 3 and reader.offset == [-0.1] * 3
    with pytest.raises(KeyError, match="not an index column"):
        reader.index("images")
    with pytest.raises(KeyError, match="scenes/ table"):
        reader.scenes("tile_row")
    with pytest.raises(StoreError, match="has no labels"):
        reader.require_labels()


def test_reader_refuses_other_stores(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT):
        pass
    zarr.open_group(str(path), mode="r+").attrs["format_version"] = 99
    with pytest.raises(StoreError, match="format 99 is not 1; tile the scenes again"):
        StoreReader.open(path)
    bare = zarr.create_group(str(tmp_path / "bare.zarr"))
    bare.attrs.update({"format": "cloudkit-tiles", "format_version": 1, "num_tiles": 0})
    with pytest.raises(StoreError, match="attribute bands is None, not a list of band names"):
        StoreReader.open(tmp_path / "bare.zarr")
    subset = tmp_path / "subset.zarr"  # e.g. a subset copied without scenes/
    with TileStore.open(subset, LAYOUT):
        pass
    shutil.rmtree(subset / "scenes")
    reader = StoreReader.open(subset)
    assert reader.num_scenes == 0
    with pytest.raises(StoreError, match="no scenes/ table"):
        reader.scenes("id")


def test_a_store_another_run_created_meanwhile_is_opened_not_replaced(tmp_path):
    from cloudkit.io.store.create import _create

    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT) as first:  # the other run won the rename
        _write_scene(first, "a", 2, 7)
        group, created = _create(path, LAYOUT)
        assert not created and group.attrs["num_scenes"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.zarr"]  # our copy is gone


def test_abandoned_creations_of_killed_runs_are_removed(tmp_path):
    import os

    dead = tmp_path / ".t.zarr.creating-999999999-0000"  # no such process
    alive = tmp_path / f".t.zarr.creating-{os.getpid()}-0000"  # a run still creating it
    for folder in (dead, alive):
        folder.mkdir()
    TileStore.open(tmp_path / "t.zarr", LAYOUT).close()
    assert not dead.exists() and alive.exists()


def test_two_runs_creating_one_store_at_once(tmp_path):
    """Both start on a store that does not exist yet: both end with exit 0 (one tiled the
    scene, the other found it tiled or committed second and skipped it), never a
    traceback, and the store opens afterwards with the scene once."""
    import subprocess
    import sys

    from cloudkit.io.store import StoreReader
    from cloudkit.sample.synthetic import write_l1c_safe

    product = write_l1c_safe(tmp_path / "in", size_10m=192, seed=1).path
    store = tmp_path / "o.zarr"
    args = [sys.executable, "-m", "cloudkit.cli", "tile", str(product), str(store)]
    runs = [subprocess.Popen(args, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for run in runs:
        err = run.communicate(timeout=300)[1]
        assert run.returncode == 0, err
    reader = StoreReader.open(store)
    assert reader.num_scenes == 1
    assert reader.num_tiles == reader.scenes("tile_count")[0]


@pytest.mark.parametrize(
    "attribute, value, message",
    [
        ("tile_size", "abc", "attribute tile_size is 'abc', not a whole number >= 1"),
        ("scale", ["x"], "attribute scale is \\['x'\\], not one number per band"),
        ("num_tiles", -1, "attribute num_tiles is -1, not a whole number >= 0"),
        ("num_tiles", 10**9, "num_tiles 1000000000 is more than the .* rows of images"),
        ("num_tiles", 1, "num_tiles 1 is below the tiles its scenes committed"),
        ("resolution", "nan", "attribute resolution is 'nan', not a pixel size"),
    ],
)
def test_tampered_attributes_stop_readers_and_the_appender(tmp_path, attribute, value, message):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT) as store:
        _write_scene(store, "a", 2, 7)
    zarr.open_group(str(path), mode="r+").attrs[attribute] = value
    with pytest.raises(StoreError, match=message):
        StoreReader.open(path)
    with pytest.raises(StoreError, match=message):  # before anything is appended
        TileStore.open(path, LAYOUT)


def test_truncated_metadata_is_one_error(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT):
        pass
    meta = path / "zarr.json"
    meta.write_text(meta.read_text()[:40])
    with pytest.raises(StoreError, match="metadata cannot be read .* it is damaged"):
        StoreReader.open(path)
