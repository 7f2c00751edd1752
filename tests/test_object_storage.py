"""Object storage: tile stores and masks written to ``s3://``, inputs read in place from
``s3://`` and ``https://``, against servers the tests start on the loopback address (moto's
standalone S3 server, Python's HTTP server). What lands there is read back with plain zarr and
rasterio, and must equal what the same commands write to a local disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from cloudkit.synthetic import write_l1c_safe
from tests.helpers import shared_data as samples
from tests.helpers.cli import fails_with_one_line, run
from tests.helpers.servers import s3_server, web_server

pytest.importorskip("obstore", reason="the cloud extra (obstore) is not installed")
pytest.importorskip("moto.server", reason="moto[server] is not installed")

BUCKET = "cloudkit-test"
TILE = ("--tile-size", "64", "--resolution", "20")


@pytest.fixture(scope="module")
def s3():
    """An S3 server on 127.0.0.1 with one bucket; the process's AWS settings point at it
    (child processes and Dask workers inherit them). Yields a boto3 client."""
    import boto3

    with s3_server() as endpoint:
        yield from _pointed_at(endpoint, boto3)


def _pointed_at(endpoint: str, boto3):
    settings = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in settings.items():
            patch.setenv(key, value)
        for key in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
            patch.setenv(key, "")  # recorded, so that what cloudkit derives is undone after
            patch.delenv(key)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("scenes")
    return [
        write_l1c_safe(folder, size_10m=192, seed=k, sensing=f"2023061{k}T104031").path
        for k in range(3)
    ]


def _s3_group(url: str) -> zarr.Group:
    """A store in the bucket opened by plain zarr (its obstore-backed store)."""
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    store = S3Store.from_url(url, client_options={"allow_http": True})
    return zarr.open_group(ObjectStore(store, read_only=True), mode="r")


def _tiles_by_scene(group: zarr.Group) -> dict[str, np.ndarray]:
    n = group.attrs["num_scenes"]
    ids, starts = group["scenes/id"][:n], group["scenes/tile_start"][:n]
    counts = group["scenes/tile_count"][:n]
    return {
        str(i): group["images"][int(s) : int(s) + int(c)]
        for i, s, c in zip(ids, starts, counts, strict=True)
    }


def _upload(client, folder: Path, prefix: str) -> None:
    for file in sorted(folder.rglob("*")):
        if file.is_file():
            client.upload_file(str(file), BUCKET, f"{prefix}/{file.relative_to(folder)}")


def test_tile_into_s3_on_a_local_cluster_gives_the_local_store(s3, scenes, tmp_path, capsys):
    url = f"s3://{BUCKET}/train.zarr"
    code, out, err = run(capsys, "tile", *scenes, url, *TILE, "--cluster", "local:2")
    assert code == 0, err
    assert "3 scene(s) tiled" in out
    code, _, err = run(capsys, "tile", *scenes, tmp_path / "local.zarr", *TILE)
    assert code == 0, err
    remote = _s3_group(url)
    local = zarr.open_group(str(tmp_path / "local.zarr"), mode="r")
    assert remote.attrs["num_tiles"] == local.attrs["num_tiles"] > 0
    assert remote.attrs["bands"] == local.attrs["bands"]
    a, b = _tiles_by_scene(remote), _tiles_by_scene(local)
    assert sorted(a) == sorted(b)
    for scene_id, tiles in b.items():
        np.testing.assert_array_equal(a[scene_id], tiles)
    # the scratch stores the workers wrote into locally are gone
    from cloudkit.io.location import location_of

    assert not any(location_of(url).scratch_folder("train.zarr").glob("*.zarr"))
    code, out, _ = run(capsys, "tile", *scenes, url, *TILE)  # appending: every scene held
    assert code == 0 and "3 already in the store" in out


def test_two_runs_at_once_into_one_s3_store_commit_each_scene_once(s3, scenes):
    url = f"s3://{BUCKET}/shared.zarr"
    args = [sys.executable, "-m", "cloudkit.cli", "tile", *map(str, scenes), url, *TILE]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = [subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    errors = [r.communicate(timeout=600)[1] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], errors
    group = _s3_group(url)
    tiles = _tiles_by_scene(group)
    assert len(tiles) == 3
    assert group.attrs["num_tiles"] == sum(len(t) for t in tiles.values())
    assert group["images"].shape[0] == group.attrs["num_tiles"]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="shared.zarr/.cloudkit.lock")
    assert listed["KeyCount"] == 0  # the lock was released


def test_chunks_staged_by_a_writer_that_died_are_removed_a_day_later(s3, scenes, monkeypatch):
    from cloudkit.io import location

    url = f"s3://{BUCKET}/staging.zarr"
    s3.put_object(Bucket=BUCKET, Key="staging.zarr/.staging/dead-1-00/0", Body=b"x")
    assert subprocess.run([sys.executable, "-m", "cloudkit.cli", "tile", str(scenes[0]), url,
                           *TILE]).returncode == 0  # fmt: skip
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="staging.zarr/.staging/")
    assert listed["KeyCount"] == 1  # a fresh upload may be a live writer's: kept
    monkeypatch.setattr(location, "ABANDONED_STAGING_SECONDS", -60.0)  # "a day" has passed
    store = location.location_of(url)
    store.stage([])
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="staging.zarr/.staging/")
    assert listed["KeyCount"] == 0


def test_predict_to_s3_on_a_local_cluster_writes_the_local_masks(s3, scenes, tmp_path, capsys):
    url = f"s3://{BUCKET}/masks"
    code, out, err = run(capsys, "predict", *scenes, "-o", url, "--cluster", "local:2")
    assert code == 0, err
    code, _, err = run(capsys, "predict", *scenes, "-o", tmp_path / "local")
    assert code == 0, err
    from cloudkit.io.location import configure_gdal

    configure_gdal()  # GDAL's names for the test server's endpoint
    for scene in scenes:
        name = f"{scene.name.removesuffix('.SAFE')}_mask.tif"
        with rasterio.open(f"/vsis3/{BUCKET}/masks/{name}") as remote:
            assert remote.crs is not None
            with rasterio.open(tmp_path / "local" / name) as local:
                assert remote.transform == local.transform
                np.testing.assert_array_equal(remote.read(1), local.read(1))
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="masks/")["Contents"]}
    assert len(keys) == 6 and not any(".partial" in k for k in keys)  # mask + summary each
    code, out, _ = run(capsys, "predict", *scenes, "-o", url)
    assert code == 0 and out.count("exists, skipped") == 3


@pytest.mark.shared_data
def test_a_band_folder_of_cogs_in_s3_is_tiled_in_place_as_on_disk(s3, tmp_path, capsys):
    """The real Sahara COGs and their STAC item, uploaded as on AWS's sentinel-cogs bucket."""
    folder = samples.COGS_L2A
    _upload(s3, folder, f"cogs/{folder.name}")
    options = ("--tile-size", "64", "--scl-labels")
    for source, store in (
        (f"s3://{BUCKET}/cogs", tmp_path / "remote.zarr"),  # a prefix of band folders
        (folder, tmp_path / "local.zarr"),
    ):
        code, _, err = run(capsys, "tile", source, store, *options)
        assert code == 0, err
    remote = zarr.open_group(str(tmp_path / "remote.zarr"), mode="r")
    local = zarr.open_group(str(tmp_path / "local.zarr"), mode="r")
    assert remote.attrs["num_tiles"] == local.attrs["num_tiles"] > 0
    for name in ("images", "labels"):
        np.testing.assert_array_equal(remote[name][:], local[name][:])
    # the radiometry came from the STAC item in the bucket, as from the one on disk
    assert remote["scenes/add_offset"][:].tolist() == local["scenes/add_offset"][:].tolist()


@pytest.fixture
def web_folder(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "www"
    folder.mkdir()
    with web_server(folder) as base:
        yield folder, base


@pytest.mark.shared_data
def test_a_geotiff_over_https_is_tiled_in_place_as_on_disk(web_folder, tmp_path, capsys):
    folder, base = web_folder
    shutil.copy(samples.STACK_13BAND, folder / samples.STACK_13BAND.name)
    url = f"{base}/{samples.STACK_13BAND.name}"
    for source, store in (
        (url, tmp_path / "web.zarr"),
        (samples.STACK_13BAND, tmp_path / "disk.zarr"),
    ):
        code, _, err = run(capsys, "tile", source, store, "--tile-size", "128")
        assert code == 0, err
    web = zarr.open_group(str(tmp_path / "web.zarr"), mode="r")
    disk = zarr.open_group(str(tmp_path / "disk.zarr"), mode="r")
    assert web.attrs["num_tiles"] == disk.attrs["num_tiles"] > 0
    np.testing.assert_array_equal(web["images"][:], disk["images"][:])


def test_what_cannot_be_read_in_place_says_so_in_one_line(s3, web_folder, capsys):
    _, base = web_folder
    err = fails_with_one_line(capsys, "tile", f"{base}/scenes/", "o.zarr")
    assert "only a single GeoTIFF or COG" in err
    err = fails_with_one_line(capsys, "tile", f"s3://{BUCKET}/nothing-here", "o.zarr")
    assert "no such prefix" in err
    err = fails_with_one_line(capsys, "tile", f"s3://{BUCKET}/x/S2A_MSIL1C_X.SAFE", "o.zarr")
    assert "not read in place" in err


def test_gdal_is_pointed_at_the_endpoint_the_aws_tools_use(monkeypatch):
    from cloudkit.io.location import configure_gdal

    for key in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.setenv(key, "")  # recorded, so that what cloudkit sets is undone after
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio.local:9000")
    configure_gdal()
    assert os.environ["AWS_S3_ENDPOINT"] == "minio.local:9000"
    assert os.environ["AWS_HTTPS"] == "NO" and os.environ["AWS_VIRTUAL_HOSTING"] == "FALSE"
    monkeypatch.setenv("AWS_S3_ENDPOINT", "gdal.own:1")  # GDAL's own setting is kept
    configure_gdal()
    assert os.environ["AWS_S3_ENDPOINT"] == "gdal.own:1"
