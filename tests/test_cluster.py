"""`cloudkit predict --cluster`: scenes spread over a local Dask cluster give the masks one
machine gives; a bad scene fails alone; a worker killed mid-scene costs a retry, not the scene.

The local clusters start worker processes (about 10 s each on 2 cores): the scenes are kept
small and few."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cloudkit.sample.synthetic import write_l1c_safe
from tests.helpers.cli import fails_with_one_line, run

pytest.importorskip("distributed", reason="the cluster extra is not installed")

TILES = ("T31TCJ", "T31TCK", "T31TCL")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("scenes")
    return [
        write_l1c_safe(folder, size_10m=384, seed=k, tile_id=tile).path
        for k, tile in enumerate(TILES)
    ]


def _masks(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for path in sorted(folder.glob("*_mask.tif")):
        with rasterio.open(path) as src:
            out[path.name] = src.read(1)
    return out


def test_a_local_cluster_predicts_what_one_machine_does_and_a_bad_scene_fails_alone(
    scenes, make_raster, tmp_path, capsys
):
    code, _, _ = run(capsys, "predict", *scenes, "-o", tmp_path / "one")
    assert code == 0
    # a GeoTIFF with only B02: the default model needs B02 B03 B04
    bad = make_raster(
        tmp_path / "S2A_MSIL1C_20230101T000000_crop.tif", count=1, size=64, descriptions=("B02",)
    )
    code, out, err = run(
        capsys, "predict", *scenes, bad, "-o", tmp_path / "cluster", "--cluster", "local:2"
    )
    assert code == 1
    assert "1 of 4 scene(s) failed" in err and "B03" in err
    assert "Traceback" not in err
    one, cluster = _masks(tmp_path / "one"), _masks(tmp_path / "cluster")
    assert sorted(cluster) == sorted(one) and len(one) == 3
    for name, mask in one.items():
        assert (cluster[name] == mask).mean() > 0.999, name
    # outputs complete: a second run skips every scene
    code, out, _ = run(
        capsys, "predict", *scenes, "-o", tmp_path / "cluster", "--cluster", "local:1"
    )
    assert code == 0 and out.count("exists, skipped") == 3


def _workers(pid: int) -> list:
    """The Dask worker processes under ``pid`` (started by multiprocessing's spawn; not its
    resource tracker)."""
    import psutil

    children = psutil.Process(pid).children(recursive=True)
    return [c for c in children if "spawn_main" in " ".join(c.cmdline())]


def _kill_the_worker_once(command: list[str], env: dict, ready) -> None:
    """Run ``command`` (a `--cluster local:1` run); kill -9 its worker as soon as ``ready()``
    says the scene is half written. The command must still succeed."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    killed = False
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            for worker in _workers(proc.pid):
                os.kill(worker.pid, signal.SIGKILL)
                killed = True
            break
        time.sleep(0.05)
    _, stderr = proc.communicate(timeout=300)
    assert killed, "the scene finished before a worker could be killed"
    return stderr


def test_a_worker_killed_mid_scene_is_replaced_and_the_scene_redone(tmp_path):
    """kill -9 the worker process while its scene's outputs are half written: Dask runs the
    task again, the output holds every mask once and complete."""
    scene = write_l1c_safe(tmp_path / "big", size_10m=1536, seed=7).path
    out = tmp_path / "masks"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cloudkit.cli", "predict", str(scene), "-o", str(out)]
    # the worker is writing the scene
    _kill_the_worker_once(
        [*command, "--cluster", "local:1"], env, lambda: list(out.glob(".*.partial"))
    )
    (mask,) = out.glob("*_mask.tif")
    assert not list(out.glob(".*.partial"))
    code = subprocess.run([*command[:-2], "-o", str(tmp_path / "plain")], env=env).returncode
    assert code == 0
    (plain,) = (tmp_path / "plain").glob("*_mask.tif")
    with rasterio.open(mask) as a, rasterio.open(plain) as b:
        assert (a.read(1) == b.read(1)).mean() > 0.999


def test_bad_cluster_address_is_one_line(scenes, capsys):
    err = fails_with_one_line(capsys, "predict", scenes[0], "--cluster", "local:zero")
    assert "expected local:N" in err


def test_without_distributed_the_extra_is_named(scenes, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    err = fails_with_one_line(capsys, "predict", scenes[0], "--cluster", "local:2")
    assert "cloudkit[cluster]" in err


# ------------------------------------------------------------------ tile --cluster


def _scene_tiles(store: Path) -> dict[str, np.ndarray]:
    """Each committed scene's tiles of ``images``, by scene id."""
    from cloudkit.io.store import StoreReader

    reader = StoreReader.open(store)
    starts, counts = reader.scenes("tile_start"), reader.scenes("tile_count")
    return {
        str(scene_id): reader.tiles("images", np.arange(start, start + count))
        for scene_id, start, count in zip(reader.scenes("id"), starts, counts, strict=True)
    }


def test_a_local_cluster_tiles_into_one_store_what_one_machine_does(
    scenes, make_raster, tmp_path, capsys
):
    from cloudkit.io.store import damaged_tiles

    options = ("--tile-size", "128", "--resolution", "20")
    code, _, _ = run(capsys, "tile", *scenes, tmp_path / "one.zarr", *options)
    assert code == 0
    # a GeoTIFF of B02 only, last in scene order: not the store's bands, which are those of
    # the first scene (as on one machine), whichever worker ends first
    bad = make_raster(
        tmp_path / "S2C_MSIL1C_20240101T000000_crop.tif", count=1, size=64, descriptions=("B02",)
    )
    store = tmp_path / "cluster.zarr"
    code, out, err = run(capsys, "tile", *scenes, bad, store, *options, "--cluster", "local:2")
    assert code == 1 and "1 of 4 scene(s) failed" in err and "Traceback" not in err
    assert "3 scene(s) tiled" in out
    one, cluster = _scene_tiles(tmp_path / "one.zarr"), _scene_tiles(store)
    assert sorted(cluster) == sorted(one) and len(one) == 3
    for scene_id, tiles in one.items():
        np.testing.assert_array_equal(cluster[scene_id], tiles)
    assert damaged_tiles(store)[1] == []
    code, out, _ = run(capsys, "tile", *scenes, store, *options, "--cluster", "local:1")
    assert code == 0 and "3 already in the store" in out


def test_a_tiling_worker_killed_mid_scene_leaves_every_tile_once(tmp_path):
    """kill -9 the worker while its scene is half written into its scratch store: Dask runs
    the task again, and the store holds the scene once, as one machine tiles it."""
    scene = write_l1c_safe(tmp_path / "big", size_10m=1536, seed=7).path
    store = tmp_path / "t.zarr"
    scratch = tmp_path / ".t.zarr.scratch"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cloudkit.cli", "tile", str(scene), str(store),
               "--tile-size", "128"]  # fmt: skip
    # the worker has written tiles into its scratch store
    _kill_the_worker_once(
        [*command, "--cluster", "local:1"], env, lambda: list(scratch.glob("*.zarr/images/c/1"))
    )
    plain = tmp_path / "plain.zarr"
    code = subprocess.run([*command[:-3], str(plain), "--tile-size", "128"], env=env).returncode
    assert code == 0
    (scene_id,) = _scene_tiles(plain)
    np.testing.assert_array_equal(_scene_tiles(store)[scene_id], _scene_tiles(plain)[scene_id])
    from cloudkit.io.store import StoreReader

    assert StoreReader.open(store).num_tiles == StoreReader.open(plain).num_tiles
    assert not any(scratch.iterdir())  # the dead worker's scratch went with the retry


@pytest.mark.parametrize("command", ["tile", "predict"])
def test_more_local_workers_than_the_cores_take_are_refused(command, scenes, tmp_path, capsys):
    """As a training run's --workers: at most 4 processes per core, refused in one line
    before any worker starts or any output is made."""
    import os

    cores = len(os.sched_getaffinity(0))
    out = tmp_path / ("t.zarr" if command == "tile" else "masks")
    args = [scenes[0], out] if command == "tile" else [scenes[0], "-o", out]
    err = fails_with_one_line(capsys, command, *args, "--cluster", "local:1000")
    assert err == (
        f"cloudkit: error: --cluster local:1000: more than 4 worker processes per core "
        f"({cores} cores here); give at most local:{4 * cores}"
    )
    assert not out.exists()


@pytest.mark.parametrize("command", ["tile", "predict"])
def test_more_decoding_lanes_than_the_cores_take_are_refused(command, scenes, tmp_path, capsys):
    """--workers of tile and predict (threads, not processes) is capped as --cluster is: an
    absurd count started thousands of threads before."""
    import os

    cores = len(os.sched_getaffinity(0))
    out = tmp_path / ("t.zarr" if command == "tile" else "masks")
    args = [scenes[0], out] if command == "tile" else [scenes[0], "-o", out]
    err = fails_with_one_line(capsys, command, *args, "--workers", "100000")
    assert err == (
        f"cloudkit: error: --workers 100000: more than 4 decoding lanes per core ({cores} "
        f"cores here); give at most {4 * cores}"
    )
    assert not out.exists()
