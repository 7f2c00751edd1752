"""Pretraining throughput: train-step images/s of MoCo and DeepCluster, and DataLoader images/s.

Does loading keep the model fed? The loader is timed alone (reading tiles from the Zarr store,
two random views each, collation, with the same workers as training), the train step alone on
a batch already in memory (forward, backward, optimiser step; DeepCluster with real k-means
targets), both through the same code `cloudkit pretrain` runs (cloudkit.train.pretrain).
A loader/step ratio >= 1 means the GPU (or CPU) never waits for data. Beside each rate: the
peak RSS (host memory) of that method's trainer, built and timed, and of the loader run: the
largest of this process (its VmHWM reset before each: peak_memory.py) and its DataLoader
workers; under ``torchrun``, rank 0's.

The store is built once in a temporary folder from the real T29UNU L2A sample (11 bands at
60 m), tiles of the view size overlapping by --overlap (default half a tile). Tiles of 256 px
overlapping by half are only 109 with data, fewer than a batch of 128: the GPU run overlaps
them by 224 px (1,551 tiles, enough for a batch of 128 on each of up to 12 GPUs).

Under ``torchrun`` (DistributedDataParallel, one process per GPU) the train step is timed on
every rank at once and reported for the whole group (--batch-size is per process); the loader
is then not timed. ``--json PATH`` writes the figures for benches/gpu_suite.py.

    python benches/bench_pretrain.py                               # CPU: views 128 px, batch 16
    python benches/bench_pretrain.py --device cuda --crop 256 --overlap 224 --batch-size 128 --amp
    python benches/bench_pretrain.py --store tiles.zarr            # an existing store
    torchrun --standalone --nproc-per-node 2 benches/bench_pretrain.py --device cuda ...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: tests.helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tests.helpers.shared_data import L2A_T29UNU as T29UNU  # noqa: E402
from tests.helpers.shared_data import T29UNU_60M_BANDS as BANDS  # noqa: E402

from peak_memory import measure_here  # noqa: E402


def build_store(folder: Path, tile: int, overlap: int | None = None) -> Path:
    from cloudkit.config import TileOptions
    from cloudkit.tiler.writer import tile_paths

    if not T29UNU.is_dir():
        sys.exit(f"the real sample {T29UNU} is missing; pass --store")
    overlap = tile // 2 if overlap is None else overlap
    out = folder / f"t29unu-{tile}-overlap{overlap}.zarr"
    options = TileOptions(
        resolution=60, bands=BANDS, tile_size=tile, overlap=overlap, scl_labels=True
    )
    t0 = time.perf_counter()
    tile_paths([T29UNU], out, options)
    print(f"built {out.name} in {time.perf_counter() - t0:.1f} s")
    return out


def trainer_for(args, method: str, store: Path, dist, device):
    import torch

    from cloudkit.config import PretrainConfig
    from cloudkit.data import TileDataset
    from cloudkit.train.pretrain import Pretraining

    n = len(TileDataset([store], min_valid=args.min_valid))
    extra = {}
    if method == "moco":
        extra["queue_size"] = max(args.batch_size, 65536 // args.batch_size * args.batch_size)
    else:
        extra["prototypes"] = (min(3000, n // 2),) * 3
    cfg = PretrainConfig(
        stores=(store,),
        out=Path("unused"),
        method=method,
        epochs=1,
        batch_size=args.batch_size,
        crop=args.crop,
        min_valid=args.min_valid,
        workers=args.workers,
        device=args.device,
        amp=args.amp,
        compile=args.compile,
        **extra,
    )
    trainer = Pretraining.create(cfg, device=device, dist=dist)
    trainer.prepare()
    if method == "deepcluster":
        # real targets: a bank of random unit embeddings (the same on every rank), clustered once
        bank = trainer.model.bank
        z = torch.randn(n, 128, generator=torch.Generator().manual_seed(0))
        bank.update(torch.arange(n), torch.nn.functional.normalize(z, dim=1))
        trainer.model.cluster(seed=0)
    return trainer


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(trainer, steps: int, warmup: int) -> float:
    """images/s of the train step on one batch kept on the device (of all ranks under DDP)."""
    from cloudkit.train import distributed

    trainer.sampler.set_epoch(1)
    batch = next(iter(trainer.loader))
    batch = {k: v.to(trainer.device) for k, v in batch.items()}
    trainer.model.train()
    for _ in range(warmup):
        trainer.train_step(batch)
    _sync(trainer.device)
    distributed.barrier()  # every rank starts the clock together
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(batch)
    _sync(trainer.device)
    distributed.barrier()
    images = steps * trainer.cfg.batch_size * trainer.dist.world_size
    return images / (time.perf_counter() - t0)


def time_loader(trainer, batches: int, warmup: int) -> float:
    """images/s of the DataLoader alone (workers started, first batches excluded)."""
    done, seen, t0, epoch = 0, 0, None, 0
    while done < warmup + batches:
        epoch += 1
        trainer.sampler.set_epoch(epoch)
        for batch in trainer.loader:
            if trainer.device.type == "cuda":  # what training does: pinned copy to the GPU
                batch["view1"].to(trainer.device, non_blocking=True)
                batch["view2"].to(trainer.device, non_blocking=True)
            done += 1
            if done == warmup:
                t0 = time.perf_counter()
            elif done > warmup:
                seen += batch["view1"].shape[0]
            if done >= warmup + batches:
                break
    return seen / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--crop", type=int, default=128, help="view size in px (default 128)")
    parser.add_argument("--overlap", type=int, default=None, help="of the tiles built (px)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="timed train steps per method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps / batches first")
    parser.add_argument("--batches", type=int, default=None, help="timed loader batches")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--methods", default="moco,deepcluster")
    parser.add_argument("--store", type=Path, default=None, help="an existing tile store")
    parser.add_argument("--min-valid", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    import torch

    from cloudkit.models.checkpoint import resolve_device
    from cloudkit.train import distributed

    if args.threads:
        torch.set_num_threads(args.threads)
    # under torchrun: one process per GPU, joined in a process group; else a world of one
    device = resolve_device(args.device, distributed.from_env().local_rank)
    dist = distributed.setup(device.type)
    try:
        with tempfile.TemporaryDirectory(prefix="cloudkit-bench-") as tmp:
            store = args.store or build_store(Path(tmp), args.crop, args.overlap)
            figures = run(args, store, dist, device)
    finally:
        distributed.teardown()
    if args.json and dist.is_main:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


def run(args, store: Path, dist, device) -> dict:
    """Time each method's train step, then (in a single process) the loader; print, return."""
    import torch

    say = print if dist.is_main else (lambda *_: None)
    rates, peaks = {}, {}
    for method in args.methods.split(","):
        trainer = None  # the last method's trainer is not this one's memory
        with measure_here(children=True) as run:
            trainer = trainer_for(args, method, store, dist, device)
            rates[method] = time_steps(trainer, args.steps, args.warmup)
        peaks[method] = run.peak_mb
        cfg = trainer.cfg
        group = f", {dist.world_size} processes (DDP)" if dist.enabled else ""
        say(
            f"train step {method:<12} {rates[method]:8.1f} img/s   "
            f"(batch {cfg.batch_size}{' per process' if group else ''}, views {cfg.crop} px, "
            f"{trainer.device}{group}, amp {'on' if cfg.amp else 'off'}, "
            f"compile {'on' if cfg.compile else 'off'})  peak RSS {run.peak_mb:.0f} MB"
        )
    cfg, tiles = trainer.cfg, trainer.tiles
    on_gpu = trainer.device.type == "cuda"
    figures = {
        "device": str(trainer.device),
        "gpu": torch.cuda.get_device_name(trainer.device) if on_gpu else None,
        "world_size": dist.world_size,
        "batch_size": cfg.batch_size,
        "crop": cfg.crop,
        "amp": bool(cfg.amp),
        "compile": bool(cfg.compile),
        "channels_last": on_gpu,  # what Pretraining does on GPUs (model and batches)
        "workers": cfg.workers,
        "tiles": len(tiles),
        "steps": args.steps,
        "train_step_images_per_s": rates,
        "train_step_peak_rss_mb": peaks,
        "loader_images_per_s": None,
        "loader_over_step": None,
        "loader_peak_rss_mb": None,
    }
    if dist.enabled:
        say("loader: not timed under torchrun (time it in one process)")
        return figures
    batches = args.batches or max(args.steps, 2 * len(trainer.loader))
    with measure_here(children=True) as run:
        loader = time_loader(trainer, batches, args.warmup)
    print(
        f"loader                  {loader:8.1f} img/s   ({cfg.workers} workers, "
        f"{len(tiles)} tiles of {tiles.tile_size} px, {len(tiles.bands)} bands, "
        f"{batches} batches)  peak RSS {run.peak_mb:.0f} MB"
    )
    ratios = {m: loader / r for m, r in rates.items()}
    text = ", ".join(f"{m} {ratio:.2f}x" for m, ratio in ratios.items())
    print(f"loader / step: {text}  (>= 1: loading keeps the model fed)")
    if on_gpu:
        print(f"device: {figures['gpu']}")
    figures.update(
        loader_images_per_s=loader, loader_over_step=ratios, loader_peak_rss_mb=run.peak_mb
    )
    return figures


if __name__ == "__main__":
    main()
