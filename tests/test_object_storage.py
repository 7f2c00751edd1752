"""Object storage: tile stores and masks written to ``s3://``, inputs read in place from
``s3://`` and ``https://``, against servers the tests start on the loopback address (moto's
standalone S3 server, Python's HTTP server). What lands there is read back with plain zarr and
rasterio, and must equal what the same commands write to a local disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from cloudkit.sample.synthetic import write_l1c_safe
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


PREDICT = ("--quicklook",)


@pytest.fixture(scope="module")
def predicted(s3, scenes) -> str:
    """The prefix in the bucket of one scene's mask, quicklook and summary."""
    from cloudkit.cli import main

    assert main(["predict", str(scenes[0]), "-o", f"s3://{BUCKET}/sealed", *PREDICT]) == 0
    return "sealed"


def _copy_prefix(client, prefix: str, to: str) -> None:
    for o in client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["Contents"]:
        key = o["Key"].removeprefix(f"{prefix}/")
        client.copy_object(Bucket=BUCKET, Key=f"{to}/{key}",
                           CopySource={"Bucket": BUCKET, "Key": o["Key"]})  # fmt: skip


def _output_keys(prefix: str, scene: Path) -> dict[str, str]:
    scene_id = scene.name.removesuffix(".SAFE")
    return {
        "mask": f"{prefix}/{scene_id}_mask.tif",
        "quicklook": f"{prefix}/{scene_id}_quicklook.png",
        "summary": f"{prefix}/{scene_id}.json",
    }


def _read_json(client, key: str) -> dict:
    return json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _edit_summary(client, keys: dict[str, str]) -> None:
    summary = _read_json(client, keys["summary"])
    summary["cloud_percent"] = 99.5  # a number that no longer matches the mask
    client.put_object(Bucket=BUCKET, Key=keys["summary"], Body=json.dumps(summary).encode())


FAULTS = {
    "mask deleted": lambda client, keys: client.delete_object(Bucket=BUCKET, Key=keys["mask"]),
    "quicklook overwritten": lambda client, keys: client.put_object(
        Bucket=BUCKET, Key=keys["quicklook"], Body=b"other bytes"
    ),
    "summary edited": _edit_summary,
}


def _damage_in(url: str, scene: Path) -> str | None:
    """What is wrong with the scene's outputs at ``url``, as a re-run checks them."""
    from cloudkit.io.location import location_of
    from cloudkit.predict.seal import object_damage

    location, name = location_of(url), f"{scene.name.removesuffix('.SAFE')}.json"
    return object_damage(location.read(name), name, location.head)


@pytest.mark.parametrize(
    "fault, says",
    [
        ("mask deleted", "_mask.tif is missing"),
        ("quicklook overwritten", "_quicklook.png is not the object uploaded with it"),
        ("summary edited", ".json does not match its checksum"),
    ],
)
def test_outputs_in_s3_damaged_after_the_run_are_predicted_again(
    s3, scenes, predicted, fault, says, capsys
):
    prefix = f"damaged-{fault.replace(' ', '-')}"
    _copy_prefix(s3, predicted, prefix)
    keys = _output_keys(prefix, scenes[0])
    FAULTS[fault](s3, keys)
    url = f"s3://{BUCKET}/{prefix}"
    code, out, err = run(capsys, "predict", scenes[0], "-o", url, *PREDICT)
    assert code == 0, err
    assert "exists, skipped" not in out
    assert "warning: its earlier outputs were damaged (" in err and says in err  # said
    assert _damage_in(url, scenes[0]) is None  # sealed again, each object as uploaded
    quicklook = s3.get_object(Bucket=BUCKET, Key=keys["quicklook"])["Body"].read()
    assert quicklook.startswith(b"\x89PNG")
    code, out, _ = run(capsys, "predict", scenes[0], "-o", url, *PREDICT)
    assert code == 0 and "exists, skipped" in out


def test_intact_outputs_in_s3_are_skipped_older_summaries_checked_as_they_allow(
    s3, scenes, predicted, capsys
):
    _copy_prefix(s3, predicted, "intact")
    url, keys = f"s3://{BUCKET}/intact", _output_keys("intact", scenes[0])
    code, out, err = run(capsys, "predict", scenes[0], "-o", url, *PREDICT)
    assert code == 0 and "exists, skipped" in out and "damaged" not in err
    # the summary records what each upload left, for a HEAD to compare with
    summary = _read_json(s3, keys["summary"])
    assert set(summary["objects"]) == {"mask", "quicklook"}
    for kind, recorded in summary["objects"].items():
        head = s3.head_object(Bucket=BUCKET, Key=keys[kind])
        assert recorded["size"] == head["ContentLength"]
        assert recorded["e_tag"].strip('"') == head["ETag"].strip('"')
    # a summary of an older cloudkit (no entity tags, no checksums): its outputs must be there
    older = {k: v for k, v in summary.items() if k not in ("objects", "sha256")}
    s3.put_object(Bucket=BUCKET, Key=keys["summary"], Body=json.dumps(older).encode())
    code, out, err = run(capsys, "predict", scenes[0], "-o", url, *PREDICT)
    assert code == 0 and "exists, skipped" in out and "damaged" not in err
    s3.delete_object(Bucket=BUCKET, Key=keys["quicklook"])
    code, out, err = run(capsys, "predict", scenes[0], "-o", url, *PREDICT)
    assert code == 0 and "exists, skipped" not in out
    assert "earlier outputs were damaged (" in err and "_quicklook.png is missing" in err
    assert _damage_in(url, scenes[0]) is None


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
