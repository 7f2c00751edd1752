"""Pretraining input pipeline throughput: DataLoader(TwoViews(TileDataset(store), views)).

The store is tiled from the real L2A product T29UNU (../shared/data, 60 m, 11 bands, SCL
labels) into a temporary folder. Each tile read yields two augmented views (crop, flips,
rot90, blur); "images/s" counts tiles read per second, i.e. view pairs delivered.
Tiles are drawn at random with replacement; timing starts after the first batch, so worker
start-up is left out and the figure is the steady rate. Workers run one torch thread each
(DataLoader's default); ``--threads`` sets the main process's own. Beside each rate: that
run's own peak RSS, the largest of the main process (its VmHWM reset before the run) and its
workers (peak_memory.py).

    python benches/bench_loader.py                       # tile 256, views 224, batch 32
    python benches/bench_loader.py --tile-size 64 --size 48 --images 64  # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: tests.helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.helpers.shared_data import L2A_T29UNU as PRODUCT  # noqa: E402
from tests.helpers.shared_data import T29UNU_60M_BANDS as BANDS  # noqa: E402

from peak_memory import measure_here  # noqa: E402


def build_store(product: Path, out: Path, tile_size: int) -> Path:
    from cloudkit.config import TileOptions
    from cloudkit.tiler.writer import tile_paths

    options = TileOptions(resolution=60, bands=BANDS, tile_size=tile_size, scl_labels=True)
    tile_paths([product], out, options)
    return out


def images_per_second(
    store: Path | list[Path], *, size: int, batch_size: int, workers: int, images: int
):
    from torch.utils.data import DataLoader, RandomSampler

    from cloudkit.data import TileDataset, TwoViews, ssl_view_transform

    stores = store if isinstance(store, list) else [store]
    views = TwoViews(TileDataset(stores), ssl_view_transform(size))
    # tiles drawn with replacement: the run is as long as asked whatever the store's size
    sampler = RandomSampler(views, replacement=True, num_samples=images + batch_size)
    loader = DataLoader(views, batch_size=batch_size, sampler=sampler, num_workers=workers)
    batches = iter(loader)
    next(batches)  # the clock starts once workers are up and the first batch is out
    count = 0
    start = time.perf_counter()
    for batch in batches:
        count += batch["view1"].shape[0]
    return count / (time.perf_counter() - start), len(views)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--product", type=Path, default=PRODUCT)
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=224, help="view size in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=640, help="tiles to time")
    parser.add_argument(
        "--threads", type=int, help="torch threads of the main process (default: torch's)"
    )
    parser.add_argument("--workers", default="0,2", help="comma-separated num_workers values")
    args = parser.parse_args()

    import torch

    if args.threads:
        # on a loaded machine several intra-op threads in the main process can be far slower
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="cloudkit-bench-loader-") as tmp:
        start = time.perf_counter()
        store = build_store(args.product, Path(tmp) / "tiles.zarr", args.tile_size)
        print(
            f"store: {args.product.name} at 60 m, tile {args.tile_size}, built in "
            f"{time.perf_counter() - start:.1f} s"
        )
        print(
            f"views {args.size}x{args.size}, batch {args.batch_size}, "
            f"{args.images} tiles timed, torch threads {torch.get_num_threads()}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        for workers in (int(w) for w in args.workers.split(",")):
            with measure_here(children=True) as run:
                rate, n = images_per_second(
                    store,
                    size=args.size,
                    batch_size=args.batch_size,
                    workers=workers,
                    images=args.images,
                )
            print(
                f"num_workers={workers}: {rate:8.1f} images/s ({n} tiles in the store, 2 views each)"
                f"  peak RSS {run.peak_mb:.0f} MB"
            )


if __name__ == "__main__":
    main()
