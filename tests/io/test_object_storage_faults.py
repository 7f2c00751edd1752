"""Object storage gone wrong: a bucket that does not exist, no credentials, a lock object
that cloudkit did not write, and `check` of an ``s3://`` store. Each ends in one line that
says what is wrong, never obstore's retry trace, and nothing committed is lost. Against
moto's S3 server on the loopback address (tests.helpers.servers)."""

from __future__ import annotations

import json
import time

import pytest
import zarr

from cloudkit.sample.synthetic import write_l1c_safe
from tests.helpers.cli import fails_with_one_line, run
from tests.helpers.servers import s3_server

pytest.importorskip("obstore", reason="the cloud extra (obstore) is not installed")
pytest.importorskip("moto.server", reason="moto[server] is not installed")

BUCKET = "cloudkit-faults"
TILE = ("--tile-size", "32", "--resolution", "20")


@pytest.fixture(scope="module")
def s3():
    """A boto3 client of an S3 server with one bucket; AWS settings point at it."""
    import boto3

    with s3_server() as endpoint, pytest.MonkeyPatch.context() as patch:
        settings = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
        for key, value in settings.items():
            patch.setenv(key, value)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    folder = tmp_path_factory.mktemp("products")
    return [
        write_l1c_safe(folder, size_10m=192, seed=seed, sensing=f"202306{10 + seed}T104031").path
        for seed in (1, 2)
    ]


def _num_tiles(url: str) -> int:
    from cloudkit.io.location import location_of

    group = zarr.open_group(location_of(url).zarr_store(read_only=True), mode="r")
    return int(group.attrs["num_tiles"])


def test_check_reads_an_s3_store_tile_wrote(s3, products, capsys):
    url = f"s3://{BUCKET}/checked.zarr"
    assert run(capsys, "tile", products[0], url, *TILE)[0] == 0
    code, out, err = run(capsys, "check", url)
    assert code == 0, err
    assert out.startswith(f"{url}: ") and "every chunk reads" in out
    s3.delete_object(Bucket=BUCKET, Key="checked.zarr/images/c/1/0/0/0")
    s3.delete_object(Bucket=BUCKET, Key="checked.zarr/tile_row/c/0")
    code, out, err = run(capsys, "check", url)
    assert code == 1
    assert f"{url}: tile 1 has lost its images chunk (images/c/1/0/0/0)" in err
    assert f"{url}: its tile_row column has lost a chunk (tile_row/c/0" in err
    assert err.splitlines()[-1].startswith("cloudkit: error: 1 of 1 store(s) damaged")
    # and no writer appends to it
    line = fails_with_one_line(capsys, "tile", products[1], url, *TILE)
    assert "tile_row column has lost a chunk" in line and "the store is damaged" in line


def _scenes_looked_for(monkeypatch) -> list:
    """The paths a predict run looks for scenes in, from now on."""
    from cloudkit.pipeline import run as pipeline_run

    discover = pipeline_run.discover_scenes
    looked: list = []

    def recording(paths, **options):
        looked.extend(paths)
        return discover(paths, **options)

    monkeypatch.setattr(pipeline_run, "discover_scenes", recording)
    return looked


def test_a_bucket_that_does_not_exist_is_named(s3, products, monkeypatch, capsys):
    url = "s3://no-such-bucket/t.zarr"
    for keep_going in ((), ("--keep-going",)):  # once up front, not once a scene
        line = fails_with_one_line(capsys, "tile", *products, url, *TILE, *keep_going)
        assert f"{url}: bucket no-such-bucket does not exist at " in line
        assert "(NoSuchBucket); create it or fix the URL" in line
    # predict says so once, before it reads any scene
    looked = _scenes_looked_for(monkeypatch)
    line = fails_with_one_line(capsys, "predict", *products, "-o", "s3://no-such-bucket/masks")
    assert line.startswith(
        "cloudkit: error: s3://no-such-bucket/masks: bucket no-such-bucket does not exist at "
    )
    assert "(NoSuchBucket)" in line and looked == []


def test_without_credentials_the_settings_are_named(s3, products, monkeypatch, capsys):
    # AWS_ENDPOINT_URL stays the test server's: no request could leave this machine
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    # where obstore asks for credentials then: a port nobody listens on, so it fails at once
    monkeypatch.setenv("AWS_METADATA_ENDPOINT", "http://127.0.0.1:9")
    line = fails_with_one_line(capsys, "tile", products[0], f"s3://{BUCKET}/nocreds.zarr", *TILE)
    assert "no S3 credentials are configured (AWS_ACCESS_KEY_ID is not set; " in line
    assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and AWS_ENDPOINT_URL" in line
    # predict says so once, before it reads any scene
    looked = _scenes_looked_for(monkeypatch)
    line = fails_with_one_line(capsys, "predict", *products, "-o", f"s3://{BUCKET}/nocreds")
    assert line.startswith(f"cloudkit: error: s3://{BUCKET}/nocreds: no S3 credentials are ")
    assert looked == []


def test_a_lock_cloudkit_did_not_write_is_reported_at_once(s3, products, capsys):
    url = f"s3://{BUCKET}/locked.zarr"
    assert run(capsys, "tile", products[0], url, *TILE)[0] == 0
    before = _num_tiles(url)
    s3.put_object(Bucket=BUCKET, Key="locked.zarr/.cloudkit.lock", Body=b"garbage")
    started = time.monotonic()
    line = fails_with_one_line(capsys, "tile", products[1], url, *TILE)
    assert time.monotonic() - started < 60  # not the 10-minute wait for a live writer
    assert f"{url}/.cloudkit.lock: the store's lock holds b'garbage'" in line
    assert f"aws s3 rm {url}/.cloudkit.lock" in line
    assert _num_tiles(url) == before  # nothing committed lost
    s3.delete_object(Bucket=BUCKET, Key="locked.zarr/.cloudkit.lock")  # what the line says
    assert run(capsys, "tile", products[1], url, *TILE)[0] == 0
    assert _num_tiles(url) > before


def test_a_stale_lock_of_a_dead_writer_is_taken_over(s3, products, capsys):
    from cloudkit.io.location import STALE_LOCK_SECONDS

    url = f"s3://{BUCKET}/stale.zarr"
    assert run(capsys, "tile", products[0], url, *TILE)[0] == 0
    before = _num_tiles(url)
    dead = {"host": "gone", "pid": 1, "token": "0", "time": time.time() - STALE_LOCK_SECONDS - 5}
    s3.put_object(Bucket=BUCKET, Key="stale.zarr/.cloudkit.lock", Body=json.dumps(dead).encode())
    code, _, err = run(capsys, "tile", products[1], url, *TILE)
    assert code == 0, err
    assert _num_tiles(url) > before
