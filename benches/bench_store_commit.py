"""The short locked step of many writers on one tile store: committing one scene's scratch
store (`TileStore.commit_from`) into a local store (chunk files renamed) and into an ``s3://``
store on moto's S3 server on the loopback address (chunk files uploaded, 32 at once).

While a writer commits it holds the store's lock, so the commit time bounds how many scenes
one store takes per hour whatever the number of writers: that figure is printed. The scene is
a full Sentinel-2 product's worth of tiles by default (29 x 29 tiles of 384 px at 10 m, 13
bands, smooth synthetic reflectance and sensor noise). The baseline is the local commit. In
object storage the chunks are uploaded before the lock is taken; under it they are only
copied inside the bucket, and the part under the lock is printed too. moto is a Python server
on this machine: real S3 answers each request slower (tens of ms) but takes many at once.
Each store's own peak RSS is printed too: this process's (its VmHWM reset before each store:
peak_memory.py), writing the scratch stores and committing them; moto's server is not counted.

    python benches/bench_store_commit.py              # 841 tiles
    python benches/bench_store_commit.py --tiles 64 --skip-s3
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from scipy.ndimage import zoom

from cloudkit.io.store import SceneRecord, StoreLayout, TileRecord, TileStore, dn_shift_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: tests.helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.helpers.servers import s3_server  # noqa: E402

from peak_memory import measure_here  # noqa: E402

TILE = 384
BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
         "B12")  # fmt: skip
LAYOUT = StoreLayout(BANDS, TILE, 0, 10.0)
DISTINCT = 16  # tiles of a scene encoded anew; the rest are copies of their chunks


def record(scene_id: str) -> SceneRecord:
    return SceneRecord(
        scene_id=scene_id, path=f"/bench/{scene_id}.SAFE", layout="l1c-safe",
        crs_wkt="EPSG:32631", transform=(10.0, 0.0, 300000.0, 0.0, -10.0, 5000040.0),
        height=10980, width=10980, add_offset=(0,) * len(BANDS),
        dn_shift=dn_shift_for((0,) * len(BANDS)), processing_baseline="04.00", label_kind="",
    )  # fmt: skip


def write_scratch(store: TileStore, scene_id: str, tiles: int) -> tuple[TileStore, list]:
    """A scratch store of ``tiles`` tiles, every chunk written, as the Rust writer leaves it:
    :data:`DISTINCT` tiles encoded by zarr, the others copies of their chunk files (a commit
    moves files whatever they hold; encoding each would take minutes a scene)."""
    scratch = store.scratch(with_labels=False)
    start = scratch.begin_scene(scene_id, tiles, with_labels=False)
    group = zarr.open_group(str(scratch.path), mode="r+")
    images = group["images"].with_config({"write_empty_chunks": True})
    valid = group["valid"].with_config({"write_empty_chunks": True})
    rng = np.random.default_rng(0)
    for i in range(min(tiles, DISTINCT)):
        field = zoom(rng.random((13, 12, 12)), (1, TILE / 12, TILE / 12), order=1)
        noise = rng.integers(0, 30, (13, TILE, TILE))  # sensor noise: what zstd cannot squeeze
        images[start + i] = (1000 + 2000 * field + noise).astype(np.uint16)
        valid[start + i] = 1
    for i in range(DISTINCT, tiles):
        for name in ("images", "valid"):
            copy = scratch.path / f"{name}/c/{start + i}/0/0/0"
            copy.parent.mkdir(parents=True)
            shutil.copyfile(scratch.path / f"{name}/c/{start + i % DISTINCT}/0/0/0", copy)
    return scratch, [TileRecord(start + i, 0, 0, 1.0, math.nan) for i in range(tiles)]


def commit_seconds(target: str | Path, tiles: int, scenes: int) -> tuple[float, float]:
    """Median seconds of committing a scene of ``tiles`` tiles, over ``scenes`` scenes: the
    whole commit, and the part of it under the store's lock."""
    times, locked = [], []
    held = TileStore._commit_staged

    def timed(self, *args):
        started = time.perf_counter()
        try:
            return held(self, *args)
        finally:
            locked.append(time.perf_counter() - started)

    TileStore._commit_staged = timed  # type: ignore[method-assign]
    try:
        with TileStore.open(target, LAYOUT, shared=True) as store:
            for k in range(scenes):
                scratch, records = write_scratch(store, f"scene{k}", tiles)
                started = time.perf_counter()
                assert store.commit_from(scratch, record(f"scene{k}"), records) is None
                times.append(time.perf_counter() - started)
                scratch.close()
                shutil.rmtree(scratch.path)
    finally:
        TileStore._commit_staged = held  # type: ignore[method-assign]
    return float(np.median(times)), float(np.median(locked))


@contextlib.contextmanager
def moto_s3():
    """moto's S3 server (the tests' own, in its own process), the AWS settings pointing at it,
    one bucket."""
    with s3_server() as endpoint:
        os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)  # fmt: skip
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
        yield "s3://bench/commit.zarr"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=841, help="tiles per scene")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--skip-s3", action="store_true")
    args = parser.parse_args()
    figures, peaks = {}, {}
    with tempfile.TemporaryDirectory(prefix="cloudkit-bench-commit-") as tmp:
        with measure_here() as run:
            figures["local store (rename)"] = commit_seconds(Path(tmp) / "c.zarr", args.tiles,
                                                             args.scenes)  # fmt: skip
        peaks["local store (rename)"] = run.peak_mb
    if not args.skip_s3:
        with moto_s3() as url, measure_here() as run:
            figures["s3:// on moto (upload)"] = commit_seconds(url, args.tiles, args.scenes)
        peaks["s3:// on moto (upload)"] = run.peak_mb
    base = figures["local store (rename)"][0]
    print(f"commit of a scene of {args.tiles} tiles of {TILE} px, 13 bands (median of "
          f"{args.scenes})")  # fmt: skip
    for name, (seconds, locked) in figures.items():
        print(f"  {name:24s} {seconds:7.2f} s  {seconds / base:6.1f}x local, of which "
              f"{locked:6.2f} s under the lock: at most {3600 / locked:6.0f} scenes/hour into "
              f"one store  peak RSS {peaks[name]:6.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
