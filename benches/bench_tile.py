"""End to end `cloudkit tile` on a full-size L1C .SAFE vs the best plain decode of its 13 JP2s.

The product is synthetic but realistic (cloudkit.sample.synthetic: 10980 x 10980 at 10 m, lossless
JPEG 2000 tiled 1024, texture that compresses like real scenes), generated once and cached in
~/.cache/cloudkit/bench. Baselines, each in its own process, same files:

  decode-processes  every band decoded whole in a pool of one process per core, one GDAL
                    thread each, largest bands first (the floor for JPEG 2000 here)
  decode-threads    bands one after another, GDAL's own threads (GDAL_NUM_THREADS=ALL_CPUS)
  tile              `cloudkit tile PRODUCT OUT.zarr` (decode + Rust kernels + zstd + write)
  tile-20m-full     `cloudkit tile ... --resolution 20 --decode full` (--coarse 20)
  tile-20m-reduced  `cloudkit tile ... --resolution 20 --decode reduced`: the 10 m bands
                    decoded at their JPEG 2000 resolution level 1

  tile-stages       the same tile run in-process through cloudkit.api.tile, for its breakdown:
                    start-up (imports, planning), waiting for decoded rows, the Rust writer
                    (its kernels: resample, cut; then zstd + CRC-32C and the scratch store's
                    files), the locked commit, the scratch clean-up, and the peak memory
                    before and during the scene

Reported: wall time, each run's own peak RSS (its largest process: peak_memory.py), and
tile time / best decode time.

    python benches/bench_tile.py                 # full scene (first run generates it: minutes)
    python benches/bench_tile.py --size 1098     # a smaller scene, e.g. for a smoke run
    python benches/bench_tile.py --coarse 0      # without the 20 m runs
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from peak_memory import hwm_mb, measure  # bench_predict and bench_cluster take measure from here

CACHE = Path(os.environ.get("CLOUDKIT_BENCH_CACHE", Path.home() / ".cache" / "cloudkit" / "bench"))


def product_for(size: int) -> Path:
    from cloudkit.sample.synthetic import write_l1c_safe

    dest = CACHE / f"l1c-{size}"
    dest.mkdir(parents=True, exist_ok=True)
    return write_l1c_safe(dest, size_10m=size, seed=1).path


def band_files(product: Path) -> list[Path]:
    files = sorted(product.glob("GRANULE/*/IMG_DATA/*_B??.jp2")) + sorted(
        product.glob("GRANULE/*/IMG_DATA/*_B8A.jp2")
    )
    return sorted(files, key=lambda p: -p.stat().st_size)  # largest first


def _decode_one(path: str) -> int:
    import rasterio

    with rasterio.Env(GDAL_NUM_THREADS=1), rasterio.open(path) as ds:
        return int(ds.read(1).shape[0])


def decode_processes(product: Path, workers: int) -> None:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_decode_one, [str(p) for p in band_files(product)]))


def decode_threads(product: Path) -> None:
    import rasterio

    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        for path in band_files(product):
            with rasterio.open(path) as ds:
                ds.read(1)


def tile_stages(product: Path, workers: int) -> None:
    """`cloudkit tile` in this process, its stages timed (the tile writer's own tally)."""
    t0 = time.perf_counter()
    import cloudkit
    import cloudkit.tiler.writer  # noqa: F401 (what tile loads before its first scene)

    folder = Path(tempfile.mkdtemp(prefix="cloudkit-bench-stages-"))
    try:
        started = time.perf_counter() - t0
        start_peak = hwm_mb()
        result = cloudkit.tile(product, folder / "s.zarr", workers=workers)
        total = time.perf_counter() - t0
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    (scene,) = result.scenes
    timings = (scene.summary or {}).get("timings", {})
    streamed = timings.get("read_s", 0.0) + timings.get("write_s", 0.0)
    commit, cleanup = timings.get("commit_s", 0.0), timings.get("cleanup_s", 0.0)
    rest = total - started - streamed - commit - cleanup
    print(f"  breakdown of tile ({total:.1f} s in-process):")
    print(f"    start-up (imports)            {started:6.1f} s   peak {start_peak:6.0f} MB")
    print(f"    waiting for decoded rows      {timings.get('read_s', 0.0):6.1f} s")
    print(f"    Rust writer                   {timings.get('write_s', 0.0):6.1f} s")
    print(f"      of it resample + cut        {timings.get('cut_s', 0.0):6.1f} s")
    print(f"      of it zstd, CRC-32C, files  {timings.get('store_s', 0.0):6.1f} s")
    print(
        f"    decode + write, streamed      {streamed:6.1f} s   peak {hwm_mb():6.0f} MB (whole run)"
    )
    print(f"    commit (locked)               {commit:6.2f} s")
    print(f"    scratch clean-up              {cleanup:6.2f} s")
    print(f"    planning, store, rest         {rest:6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980, help="10 m grid size (multiple of 6)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--mode",
        choices=("decode-processes", "decode-threads", "tile-stages"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--coarse", type=int, default=20, help="also tile at this resolution")
    parser.add_argument("--product", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "decode-processes":
        decode_processes(args.product, args.workers)
        return
    if args.mode == "decode-threads":
        decode_threads(args.product)
        return
    if args.mode == "tile-stages":
        tile_stages(args.product, args.workers)
        return

    t0 = time.perf_counter()
    product = product_for(args.size)
    print(
        f"product {product.name} ({args.size} px at 10 m), ready in {time.perf_counter() - t0:.0f} s"
    )
    me = [sys.executable, __file__, "--product", str(product), "--workers", str(args.workers)]
    rows = {}
    rows["decode-processes"] = measure([*me, "--mode", "decode-processes"])
    rows["decode-threads"] = measure([*me, "--mode", "decode-threads"])
    folder = Path(tempfile.mkdtemp(prefix="cloudkit-bench-"))
    cloudkit = shutil.which("cloudkit") or "cloudkit"
    tile = [cloudkit, "tile", str(product)]
    runs = {"tile": []}
    if args.coarse:
        for decode in ("full", "reduced"):
            runs[f"tile-{args.coarse}m-{decode}"] = [
                "--resolution",
                str(args.coarse),
                "--decode",
                decode,
            ]
    try:
        for name, options in runs.items():
            out = folder / f"{name}.zarr"
            rows[name] = measure([*tile, str(out), "--workers", str(args.workers), *options])
            if name == "tile":
                store_mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
            shutil.rmtree(out)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    best = min(rows["decode-processes"][0], rows["decode-threads"][0])
    for name, (sec, rss) in rows.items():
        print(f"  {name:17s} {sec:7.1f} s   peak RSS {rss:7.0f} MB")
    print(f"  tile / best decode: {rows['tile'][0] / best:.2f}x   (store: {store_mb:.0f} MB)")
    for name in list(runs)[1:]:
        print(f"  {name} / best 10 m decode: {rows[name][0] / best:.2f}x")
    subprocess.run([*me, "--mode", "tile-stages"], check=True)


if __name__ == "__main__":
    main()
