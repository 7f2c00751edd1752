"""Training input at scale: `TileDataset` over one store of 100,000+ tiles and over 1,000 stores.

Two datasets, built in a temporary folder (``--keep DIR`` keeps them for another run):

- **one huge store**: the full synthetic L1C (``bench_tile.py``'s cached 10980 px product)
  tiled at 10 m into 32 px tiles of B02 B03 B04 B08 (`cloudkit tile`), about 117,000 tiles;
- **many stores**: the L1C sample that ships with cloudkit tiled at 20 m into 64 px tiles
  (36 tiles), copied ``--stores`` times (1,000 by default).

For each: the time to make the dataset (reading every store's index), the first item's latency, the DataLoader's
images/s with pretraining's two augmented views (as ``bench_loader.py``), with 0 and 2
workers, and peak RSS: of making the dataset and reading its first item, of each loader run
(the largest of this process and its workers), and the largest of these. Each is its own:
this process's VmHWM is reset before each step (peak_memory.py), so the huge store's figures
do not carry over to the many stores'. Readers: a process opens a store when it first
reads from it and keeps at most ``OPEN_READERS`` (1,024) open.

    python benches/bench_loader_scale.py                     # both (several minutes)
    python benches/bench_loader_scale.py --stores 100 --skip-huge
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_loader import images_per_second  # noqa: E402
from bench_tile import product_for  # noqa: E402
from peak_memory import measure_here  # noqa: E402


def tile(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(["cloudkit", "tile", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def huge_store(folder: Path) -> Path:
    store = folder / "huge.zarr"
    if not store.exists():
        product = product_for(10980)
        seconds = tile([str(product), str(store), "--resolution", "10", "--tile-size", "32",
                        "--bands", "B02,B03,B04,B08"])  # fmt: skip
        print(f"tiled the full scene into 32 px tiles in {seconds:.0f} s")
    return store


def many_stores(folder: Path, count: int) -> list[Path]:
    one = folder / "one.zarr"
    if not one.exists():
        tile(["--sample", str(one), "--resolution", "20", "--tile-size", "64"])
    stores = []
    for k in range(count):
        copy = folder / "many" / f"s{k:05d}.zarr"
        if not copy.exists():
            shutil.copytree(one, copy)
        stores.append(copy)
    return stores


def measure(name: str, stores: list[Path], *, size: int, batch: int, images: int) -> None:
    from cloudkit.data import TileDataset

    with measure_here() as made:
        started = time.perf_counter()
        dataset = TileDataset(stores)
        print(f"{name}: dataset of {len(dataset)} tiles from {len(stores)} store(s) made in "
              f"{time.perf_counter() - started:.2f} s")  # fmt: skip
        started = time.perf_counter()
        dataset[len(dataset) // 2]
        print(f"{name}: first item {1000 * (time.perf_counter() - started):.1f} ms")
    print(f"{name}: peak RSS making the dataset and its first item {made.peak_mb:.0f} MB")
    del dataset  # the loaders make their own: this one's memory is not theirs
    peaks = [made.peak_mb]
    for workers in (0, 2):
        with measure_here(children=True) as run:
            rate, _ = images_per_second(
                stores, size=size, batch_size=batch, workers=workers, images=images
            )
        peaks.append(run.peak_mb)
        print(f"{name}: num_workers={workers}: {rate:8.1f} images/s (two {size} px views each)"
              f"  peak RSS {run.peak_mb:.0f} MB")  # fmt: skip
    print(f"{name}: peak RSS {max(peaks):.0f} MB (its own: the largest of the above)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=1000)
    parser.add_argument("--images", type=int, default=2048, help="tiles to time per run")
    parser.add_argument("--skip-huge", action="store_true")
    parser.add_argument("--keep", type=Path, default=None, help="make the stores here, keep them")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="cloudkit-bench-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if not args.skip_huge:
            store = huge_store(folder)
            measure("one huge store", [store], size=32, batch=256, images=args.images)
        stores = many_stores(folder, args.stores)
        measure(f"{args.stores} stores", stores, size=64, batch=64, images=args.images)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
