"""Many writers on one tile store: scenes written into scratch stores and committed under a
short lock, in any order, never twice, with nothing left by a writer killed on the way.

The protocol is tested here with zarr-python standing in for the Rust writer; the tests at
the end run real `cloudkit tile` processes at once on one store.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zarr

from cloudkit.io.store import StoreReader, TileRecord, TileStore, damaged_tiles
from tests.io.test_store import LAYOUT, _record


def _write_scratch(store: TileStore, scene_id: str, n: int, value: int, *, labels=False):
    """A scene of ``n`` tiles of ``value`` written into a scratch store of ``store``;
    (the scratch store, its tile records)."""
    scratch = store.scratch(with_labels=labels)
    start = scratch.begin_scene(scene_id, n, with_labels=labels)
    group = zarr.open_group(str(scratch.path), mode="r+")
    names = ("images", "valid", "labels")
    arrays = {n: group[n].with_config({"write_empty_chunks": True}) for n in names if n in group}
    for i in range(n):
        arrays["images"][start + i] = np.full((3, 8, 8), value, dtype=np.uint16)
        arrays["valid"][start + i] = 1
        if "labels" in arrays:
            arrays["labels"][start + i] = value % 4 if labels else 255
    tiles = [TileRecord(start + i, 0, 8 * i, 1.0, math.nan) for i in range(n)]
    return scratch, tiles


def _commit(store: TileStore, scene: tuple, scene_id: str) -> str | None:
    """Commit a scene from :func:`_write_scratch`, then remove its scratch store."""
    scratch, tiles = scene
    try:
        return store.commit_from(scratch, _record(scene_id), tiles)
    finally:
        scratch.close()
        shutil.rmtree(scratch.path)


def test_scenes_commit_in_any_order_after_the_last_committed_tile(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT, shared=True) as store:
        first = _write_scratch(store, "a", 2, 7)
        second = _write_scratch(store, "b", 3, 9)
        assert _commit(store, second, "b") is None  # b finished first
        assert _commit(store, first, "a") is None
    reader = StoreReader.open(path)
    assert reader.num_tiles == 5 and reader.num_scenes == 2
    assert reader.index("tile_scene").tolist() == [0, 0, 0, 1, 1]
    assert [int(reader.tile("images", r)[0, 0, 0]) for r in range(5)] == [9, 9, 9, 7, 7]
    assert reader.scenes("tile_start").tolist() == [0, 3]
    assert damaged_tiles(path)[1] == []


def test_a_scene_committed_by_another_writer_is_not_committed_again(tmp_path):
    path = tmp_path / "t.zarr"
    with (
        TileStore.open(path, LAYOUT, shared=True) as one,
        TileStore.open(path, LAYOUT, shared=True) as other,
    ):
        mine, theirs = _write_scratch(one, "a", 2, 7), _write_scratch(other, "a", 2, 8)
        assert _commit(other, theirs, "a") is None
        assert _commit(one, mine, "a") == "/data/a.SAFE"
    reader = StoreReader.open(path)
    assert reader.num_tiles == 2 and reader.num_scenes == 1
    assert int(reader.tile("images", 0).max()) == 8


def test_labels_of_scenes_committed_before_the_first_labelled_one_are_no_data(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT, shared=True) as store:
        plain = _write_scratch(store, "a", 2, 7)
        _commit(store, plain, "a")
        labelled = _write_scratch(store, "b", 1, 6, labels=True)
        _commit(store, labelled, "b")
        later = _write_scratch(store, "c", 1, 5)  # unlabelled: its scratch has no-data labels
        _commit(store, later, "c")
    reader, problems = damaged_tiles(path)
    assert problems == []  # every committed tile has every chunk, labels included
    labels = [int(reader.tile("labels", r).max()) for r in range(4)]
    assert labels == [255, 255, 2, 255]


def test_a_writer_killed_during_its_commit_leaves_rows_the_next_commit_drops(tmp_path):
    path = tmp_path / "t.zarr"
    with TileStore.open(path, LAYOUT, shared=True) as store:
        scene = _write_scratch(store, "a", 2, 7)
        _commit(store, scene, "a")
    script = textwrap.dedent(
        f"""
        import os
        from cloudkit.io import store as module
        from tests.io.test_shared_store import _write_scratch
        from tests.io.test_store import LAYOUT, _record

        def dies(self, record, tiles):  # chunks moved, commit point not yet advanced
            os._exit(9)

        module.TileStore._commit_scene = dies
        with module.TileStore.open({str(path)!r}, LAYOUT, shared=True) as store:
            print(os.getpid(), flush=True)
            scratch, tiles = _write_scratch(store, "b", 3, 9)
            store.commit_from(scratch, _record("b"), tiles)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    group = zarr.open_group(str(path), mode="r")
    assert group.attrs["num_tiles"] == 2 and group["images"].shape[0] == 5  # rows past it
    with TileStore.open(path, LAYOUT, shared=True) as store:
        scene = _write_scratch(store, "b", 1, 4)
        dead = proc.stdout.strip()
        assert not any((tmp_path / ".t.zarr.scratch").glob(f"*-{dead}-*"))  # removed
        _commit(store, scene, "b")
    reader = StoreReader.open(path)
    assert reader.num_tiles == 3 and reader.scenes("id").tolist() == ["a", "b"]
    assert int(reader.tile("images", 2).max()) == 4
    assert not (path / "images" / "c" / "3").exists()  # the dead commit's chunks are gone


def test_a_direct_writer_holds_off_shared_commits_until_it_closes(tmp_path, monkeypatch):
    from cloudkit.errors import StoreError
    from cloudkit.io.store import writer

    path = tmp_path / "t.zarr"
    monkeypatch.setattr(writer, "LOCK_WAIT_SECONDS", 0.2)
    with TileStore.open(path, LAYOUT, shared=True) as shared:
        scene = _write_scratch(shared, "a", 1, 7)
        scratch, tiles = scene
        with TileStore.open(path, LAYOUT), pytest.raises(StoreError, match="held the store's"):
            shared.commit_from(scratch, _record("a"), tiles)
        assert _commit(shared, scene, "a") is None


# ------------------------------------------------------------- real runs at once


def _tile_args(products, store):
    return [sys.executable, "-m", "cloudkit.cli", "tile", *map(str, products), str(store),
            "--tile-size", "64", "--resolution", "20", "--workers", "1"]  # fmt: skip


def test_runs_at_once_on_one_store_hold_every_tile_exactly_once(tmp_path):
    """Three `cloudkit tile` processes, each given every scene in its own order, on one
    store: each scene is committed once, its tiles the same as one run alone makes."""
    from cloudkit.sample.synthetic import write_l1c_safe

    products = [
        write_l1c_safe(tmp_path / "in", size_10m=192, seed=i, sensing=f"2023061{i}T104031").path
        for i in range(4)
    ]
    shared, alone = tmp_path / "shared.zarr", tmp_path / "alone.zarr"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    orders = [products, products[::-1], products[1:] + products[:1]]
    runs = [
        subprocess.Popen(_tile_args(order, shared), stderr=subprocess.PIPE, text=True, env=env)
        for order in orders
    ]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], errors
    subprocess.run(_tile_args(products, alone), check=True, capture_output=True, env=env)
    a, b = StoreReader.open(shared), StoreReader.open(alone)
    assert sorted(a.scenes("id").tolist()) == sorted(b.scenes("id").tolist())
    assert a.num_tiles == b.num_tiles
    for scene_id in b.scenes("id").tolist():
        rows = {}
        for reader in (a, b):
            (k,) = np.flatnonzero(reader.scenes("id") == scene_id)
            start, count = int(reader.scenes("tile_start")[k]), int(reader.scenes("tile_count")[k])
            rows[reader] = np.arange(start, start + count)
        np.testing.assert_array_equal(a.tiles("images", rows[a]), b.tiles("images", rows[b]))
        np.testing.assert_array_equal(a.index("tile_row")[rows[a]], b.index("tile_row")[rows[b]])
    assert damaged_tiles(shared)[1] == []
    assert not any((tmp_path / ".shared.zarr.scratch").iterdir())
