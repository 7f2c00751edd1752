"""The pretraining loop: MoCo v2 or DeepCluster v2 on tile stores, in plain PyTorch.

One process per device; under ``torchrun`` the model is wrapped in DistributedDataParallel and
every rank reads its own share of the tiles (DistributedSampler). Rank 0 alone writes the
checkpoint (``DIR/last.pt``, atomically, every epoch), the metrics (``DIR/metrics.jsonl``) and
the progress display.

Reproducibility: the random views of a sample depend only on ``(seed, epoch, index)`` (each
item is drawn under its own seed, see :class:`SeededViews`), the shuffling only on
``(seed, epoch)`` (DistributedSampler), and the model's own randomness on the global torch
generator, which the checkpoint saves. So on CPU a fixed ``--seed`` gives a bit-identical run,
whatever ``--workers``, and a resumed run continues exactly where the killed one stopped.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from cloudkit import __version__
from cloudkit.config import Device, Method, PretrainConfig, Views
from cloudkit.data import CloudinessPairs, TileDataset, TwoViews, ssl_view_transform
from cloudkit.errors import BandMismatchError, CloudkitError
from cloudkit.models.encoder import Encoder, encoder_state
from cloudkit.ssl.monitor import cluster_stats, collapse_threshold, embedding_std, knn_accuracy
from cloudkit.train import distributed
from cloudkit.train.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    LAST,
    load_checkpoint,
    remove_stale_temporaries,
    resolve_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cloudkit.train.metrics import MetricsWriter

#: embeddings kept per epoch for the collapse and kNN monitors (the first batches, which the
#: shuffle makes a random sample); kNN is O(n^2)
MONITOR_SAMPLES = 4096
KNN_NEIGHBOURS = 20
#: most DataLoader workers picked by default, per process
MAX_DEFAULT_WORKERS = 8

EpochCallback = Callable[[int, dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------
# data


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample of one epoch (splitmix64 of the three numbers)."""
    x = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF


class SeededViews(Dataset):
    """Wraps a views dataset (TwoViews / CloudinessPairs); items are keyed ``(epoch, index)``.

    Each item is made under torch's global generator seeded from ``(seed, epoch, index)`` and
    restored afterwards, so its views do not depend on which process or worker draws it, nor
    on what was drawn before. The epoch travels with the key, so CloudinessPairs gets its
    ``set_epoch`` inside persistent DataLoader workers too.
    """

    def __init__(self, views: Dataset, seed: int) -> None:
        self.views = views
        self.seed = seed
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.views)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        if epoch != self._epoch and hasattr(self.views, "set_epoch"):
            self.views.set_epoch(epoch)
        self._epoch = epoch
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
            return self.views[index]


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys for :class:`SeededViews` from a DistributedSampler."""

    def __init__(self, base: DistributedSampler) -> None:
        self.base = base
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker's torch generator from the loader's generator; do the same for
    # python and numpy so any library randomness inside a worker is reproducible too
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def seeded_loader(
    dataset: Dataset,
    sampler: Sampler,
    batch_size: int,
    *,
    workers: int,
    seed: int,
    pin_memory: bool,
) -> tuple[DataLoader, torch.Generator]:
    """A DataLoader whose shuffling and workers are seeded; its generator goes in checkpoints."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker,
        generator=generator,
    )
    return loader, generator


def default_workers(local_processes: int = 1) -> int:
    """DataLoader workers per process: the cores left after the training processes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = (cores or 1) // max(1, local_processes)
    return max(0, min(MAX_DEFAULT_WORKERS, per_process - 1))


def _store_names(cfg: PretrainConfig) -> str:
    return ", ".join(str(s) for s in cfg.stores)


# ---------------------------------------------------------------------------------------------
# model, optimiser, schedule


def build_model(cfg: PretrainConfig, bands: tuple[str, ...], num_samples: int) -> nn.Module:
    if cfg.method is Method.moco:
        from cloudkit.ssl.moco import MoCo

        return MoCo(
            bands,
            queue_size=cfg.queue_size,
            momentum=cfg.moco_momentum,
            temperature=cfg.temperature,
        )
    from cloudkit.ssl.deepcluster import DeepClusterV2

    return DeepClusterV2(
        bands, num_samples, n_prototypes=tuple(cfg.prototypes), temperature=cfg.temperature
    )


def build_optimizer(cfg: PretrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.method is Method.moco:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    from cloudkit.ssl.lars import LARS, param_groups

    return LARS(
        param_groups(model, cfg.weight_decay),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )


def lr_factor(step: int, *, total: int, warmup: int, final_ratio: float) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warm-up over
    ``warmup`` steps, then half a cosine from 1 down to ``final_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    cfg: PretrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    final_ratio = cfg.final_lr / cfg.lr

    def factor(step: int) -> float:
        return lr_factor(step, total=total, warmup=warmup, final_ratio=final_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------------------------------------
# the trainer


def pick_device(choice: Device, local_rank: int = 0) -> torch.device:
    if choice is Device.cuda and not torch.cuda.is_available():
        raise CloudkitError(
            "--device cuda but no CUDA device is usable here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
            "use --device cpu or auto"
        )
    if choice is Device.cpu or (choice is Device.auto and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


class Trainer:
    """Data, model, optimiser and schedule of one run, and one training step.

    ``cfg`` must be resolved against the data: build it with :meth:`create`.
    """

    def __init__(
        self,
        cfg: PretrainConfig,
        tiles: TileDataset,
        *,
        device: torch.device,
        dist: distributed.Dist,
    ) -> None:
        self.cfg = cfg
        self.tiles = tiles
        self.device = device
        self.dist = dist
        self.on_gpu = device.type == "cuda"
        transform = ssl_view_transform(cfg.crop)
        if cfg.views is Views.cloudiness_pair:
            views: Dataset = CloudinessPairs(tiles, transform, seed=cfg.seed)
        else:
            views = TwoViews(tiles, transform)
        self.views = SeededViews(views, cfg.seed)
        self.sampler = EpochSampler(
            DistributedSampler(
                self.views,
                num_replicas=dist.world_size,
                rank=dist.rank,
                shuffle=True,
                seed=cfg.seed,
                drop_last=False,
            )
        )
        self.loader, self.generator = seeded_loader(
            self.views,
            self.sampler,
            cfg.batch_size,
            workers=cfg.workers,
            seed=cfg.seed,
            pin_memory=self.on_gpu,
        )
        self.steps_per_epoch = len(self.loader)

        # the same seed on every rank: identical initial weights, as DDP expects
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        model = build_model(cfg, tiles.bands, len(tiles)).to(device)
        if self.on_gpu:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = build_optimizer(cfg, model)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.steps_per_epoch)
        self.autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if cfg.amp
            else contextlib.nullcontext()
        )
        self._compiled = False
        self.ddp: nn.Module | None = None

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        cfg: PretrainConfig,
        *,
        device: torch.device,
        dist: distributed.Dist | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> Trainer:
        """Open the stores, resolve the config against them (and the checkpoint) and check
        everything that depends on the data; raises CloudkitError with the option to change."""
        dist = dist or distributed.Dist()
        tiles = TileDataset(cfg.stores, min_valid=cfg.min_valid)
        if checkpoint is not None:
            cfg = _inherit(cfg, checkpoint)
        cfg = cfg.resolved(tile_size=tiles.tile_size, device_type=device.type)
        if cfg.workers is None:
            cfg = replace(cfg, workers=default_workers(dist.local_world_size))
        _check_against_data(cfg, tiles, dist)
        if checkpoint is not None:
            _check_against_checkpoint(cfg, tiles, checkpoint)
        return cls(cfg, tiles, device=device, dist=dist)

    def prepare(self) -> None:
        """Compile (``--compile``) and wrap in DDP (under torchrun); after any state loading."""
        if self.cfg.compile and not self._compiled:
            for module in self.model.modules():
                if isinstance(module, Encoder):
                    module.compile()
            self._compiled = True
        if self.dist.enabled and self.ddp is None:
            from torch.nn.parallel import DistributedDataParallel

            # the queue and the bank are kept equal on every rank by the models themselves;
            # broadcasting buffers from rank 0 before every forward would only cost bandwidth
            # (newer torch renames the option; the sync at construction is harmless here)
            accepted = inspect.signature(DistributedDataParallel.__init__).parameters
            no_buffer_sync = (
                {"forward_sync_buffers": False}
                if "forward_sync_buffers" in accepted
                else {"broadcast_buffers": False}
            )
            self.ddp = DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.on_gpu else None,
                **no_buffer_sync,
            )

    # -- state ---------------------------------------------------------------------------------

    def state(self, epoch: int, metrics: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "method": self.cfg.method.value,
            "config": self.cfg.to_dict(),
            "bands": list(self.tiles.bands),
            "tile_size": self.tiles.tile_size,
            "num_samples": len(self.tiles),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "encoder": encoder_state(self.model.encoder()),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "loader": {"generator": self.generator.get_state(), "sampler_epoch": epoch},
            "metrics": metrics,
            "versions": {"cloudkit": __version__, "torch": str(torch.__version__)},
        }

    def load_state(self, checkpoint: dict[str, Any], path: Path) -> int:
        """Restore model, optimiser, schedule and RNGs; returns the epochs already done."""
        try:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise CloudkitError(
                f"--resume {path}: the checkpoint does not fit this run ({first}); resume "
                "with the options of the run that wrote it"
            ) from None
        set_rng_state(checkpoint["rng"])
        self.generator.set_state(checkpoint["loader"]["generator"])
        return int(checkpoint["epoch"])

    # -- training ------------------------------------------------------------------------------

    @property
    def module(self) -> nn.Module:
        """What forward goes through: the DDP wrapper under torchrun, else the model."""
        return self.ddp if self.ddp is not None else self.model

    def _to_device(self, images: Tensor) -> Tensor:
        fmt = torch.channels_last if self.on_gpu else torch.contiguous_format
        return images.to(self.device, non_blocking=True, memory_format=fmt)

    def step(self, batch: dict[str, Tensor], *, sync: bool = True) -> tuple[Tensor, Tensor]:
        """One optimisation step; returns the (detached) loss and the batch's embeddings."""
        view1 = self._to_device(batch["view1"])
        view2 = self._to_device(batch["view2"])
        # DeepCluster before its first clustering has no targets: its loss has no gradient,
        # so DDP must not wait for gradients that never come
        no_sync = self.ddp is not None and not sync
        ctx = self.ddp.no_sync() if no_sync else contextlib.nullcontext()  # type: ignore[union-attr]
        with ctx:
            with self.autocast:
                if self.cfg.method is Method.moco:
                    loss, z = self.module(view1, view2)
                else:
                    indices = batch["index"].to(self.device, non_blocking=True)
                    loss, z = self.module(view1, view2, indices)
            self.optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach(), z.detach()

    def has_targets(self) -> bool:
        """False for DeepCluster before its first clustering (the loss is then 0)."""
        if self.cfg.method is not Method.deepcluster:
            return True
        return bool((self.model.assignments >= 0).any())

    def cluster(self, epoch: int) -> list[dict[str, Any]]:
        """DeepCluster's k-means on last epoch's embeddings; cluster stats per head."""
        result = self.model.cluster(seed=self.cfg.seed + epoch)
        return _head_stats(result, self.model, self.cfg.prototypes)

    def run_epoch(self, epoch: int, report: Report) -> dict[str, Any]:
        """Train one epoch (1-based); returns its metrics (equal on every rank)."""
        cfg = self.cfg
        clusters = None
        if cfg.method is Method.deepcluster and epoch > 1:
            clusters = self.cluster(epoch)
        self.sampler.set_epoch(epoch)
        self.model.train()
        sync = self.has_targets()
        per_rank = math.ceil(MONITOR_SAMPLES / self.dist.world_size)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        kept_z: list[Tensor] = []
        kept_bins: list[Tensor] = []
        kept = 0
        lr = self.optimizer.param_groups[0]["lr"]
        images_per_step = cfg.batch_size * self.dist.world_size
        report.epoch_started(epoch, cfg.epochs, self.steps_per_epoch)
        start = time.perf_counter()
        for step, batch in enumerate(self.loader, start=1):
            lr = self.optimizer.param_groups[0]["lr"]
            loss, z = self.step(batch, sync=sync)
            loss_sum += loss.double()
            if kept < per_rank:
                take = min(per_rank - kept, z.shape[0])
                kept_z.append(z[:take].float())
                kept_bins.append(batch["cloud_bin"][:take].to(self.device))
                kept += take
            if report.wants_update(step):
                seconds = time.perf_counter() - start
                report.step_done(step, float(loss), step * images_per_step / max(seconds, 1e-9))
        if self.on_gpu:
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        steps = self.steps_per_epoch
        total_loss = float(distributed.all_reduce_sum(loss_sum))
        mean_loss = total_loss / (steps * self.dist.world_size)
        if not math.isfinite(mean_loss):
            raise CloudkitError(
                f"the loss became {mean_loss} in epoch {epoch}; lower --lr (now {cfg.lr:g}) or "
                f"turn off --amp; {LAST} still holds epoch {epoch - 1}"
            )
        z_all = distributed.all_gather_cat(torch.cat(kept_z))
        bins_all = distributed.all_gather_cat(torch.cat(kept_bins))
        record: dict[str, Any] = {
            "epoch": epoch,
            "loss": mean_loss,
            "lr": lr,
            "images_per_s": steps * images_per_step / max(seconds, 1e-9),
            "seconds": seconds,
        }
        record.update(_monitor(z_all, bins_all))
        if cfg.method is Method.deepcluster:
            record["clusters"] = clusters
        return record


def _head_stats(result: Any, model: nn.Module, prototypes: tuple[int, ...]) -> list[dict]:
    """Cluster stats per head from what ``cluster()`` returned (or from its assignments)."""
    if isinstance(result, dict) and result:
        values = list(result.values())
        if all(isinstance(v, dict) for v in values):
            return [dict(v) for v in values]
    if isinstance(result, list | tuple) and all(isinstance(v, dict) for v in result):
        return [dict(v) for v in result]
    return [cluster_stats(model.assignments[h], k) for h, k in enumerate(prototypes)]


def _monitor(z: Tensor, bins: Tensor) -> dict[str, Any]:
    """Collapse and kNN-probe figures of one epoch's embeddings."""
    threshold = collapse_threshold(z.shape[1])
    std = embedding_std(z) if z.shape[0] >= 2 else float("nan")
    out: dict[str, Any] = {
        "embedding_std": std,
        "collapse_threshold": threshold,
        "collapse_warning": bool(std < threshold),
        "knn_accuracy": None,
    }
    labelled = int((bins >= 0).sum())
    if labelled >= 2:
        out["knn_accuracy"] = knn_accuracy(z, bins, k=KNN_NEIGHBOURS)
        out["knn_samples"] = labelled
    return out


def _inherit(cfg: PretrainConfig, checkpoint: dict[str, Any]) -> PretrainConfig:
    """Options left unset on a resumed run take the values of the run that is resumed."""
    saved = checkpoint.get("config", {})
    if saved.get("method") != cfg.method.value:
        return cfg  # reported by _check_against_checkpoint with a clear message
    inherited = (
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "momentum",
        "queue_size",
        "moco_momentum",
        "temperature",
        "prototypes",
        "warmup_epochs",
        "final_lr",
        "crop",
    )
    changes = {}
    for name in inherited:
        if getattr(cfg, name) is None and saved.get(name) is not None:
            value = saved[name]
            changes[name] = tuple(value) if isinstance(value, list) else value
    return replace(cfg, **changes)


def _check_against_data(cfg: PretrainConfig, tiles: TileDataset, dist: distributed.Dist) -> None:
    n = len(tiles)
    stores = _store_names(cfg)
    if cfg.crop > tiles.tile_size:
        raise CloudkitError(
            f"--crop {cfg.crop} but the tiles of {stores} are {tiles.tile_size} px; lower "
            "--crop or tile with a larger --tile-size"
        )
    per_step = cfg.batch_size * dist.world_size
    procs = f" x {dist.world_size} processes" if dist.enabled else ""
    if per_step > n:
        raise CloudkitError(
            f"--batch-size {cfg.batch_size}{procs} but {stores} has {n} usable tiles "
            f"(valid fraction >= {cfg.min_valid:g}); lower --batch-size"
        )
    if cfg.method is Method.moco and (cfg.queue_size < per_step or cfg.queue_size % per_step):
        multiple = max(per_step, cfg.queue_size // per_step * per_step)
        raise CloudkitError(
            f"--queue-size {cfg.queue_size} is not a multiple of the keys per step "
            f"(--batch-size {cfg.batch_size}{procs} = {per_step}); use e.g. --queue-size {multiple}"
        )
    if cfg.method is Method.deepcluster:
        k = max(cfg.prototypes)
        flag = f"--prototypes {','.join(map(str, cfg.prototypes))}"
        # whole batches only: the tail of the shuffled tiles sits out each epoch
        seen = min(n, math.ceil(n / dist.world_size) // cfg.batch_size * per_step)
        if k > n:
            raise CloudkitError(
                f"{flag} but {stores} has {n} usable tiles; k-means needs at least one tile "
                "per prototype: lower --prototypes"
            )
        if k > seen:
            raise CloudkitError(
                f"{flag} but an epoch uses only {seen} of the {n} tiles of {stores} (whole "
                f"batches of {per_step}); k-means needs at least one tile per prototype: lower "
                "--prototypes or --batch-size"
            )
    if cfg.views is Views.cloudiness_pair and not (tiles.cloud_bins() >= 0).any():
        raise CloudkitError(
            f"--views cloudiness-pair needs labelled tiles (cloud fractions) but {stores} has "
            "none; tile labelled scenes (e.g. --scl-labels) or use --views two-augmentations"
        )


def _check_against_checkpoint(
    cfg: PretrainConfig, tiles: TileDataset, checkpoint: dict[str, Any]
) -> None:
    path = cfg.resume
    if checkpoint["method"] != cfg.method.value:
        raise CloudkitError(
            f"--resume {path}: the checkpoint is a {checkpoint['method']} run but --method is "
            f"{cfg.method.value}; pass --method {checkpoint['method']} or start a new run"
        )
    bands = tuple(checkpoint["bands"])
    if bands != tiles.bands:
        raise BandMismatchError(
            f"--resume {path}: the checkpoint was trained on bands {','.join(bands)} but "
            f"{_store_names(cfg)} holds bands {','.join(tiles.bands)}; resume on stores of the "
            "same bands"
        )
    if cfg.method is Method.deepcluster and checkpoint["num_samples"] != len(tiles):
        raise CloudkitError(
            f"--resume {path}: the checkpoint was trained on {checkpoint['num_samples']} tiles "
            f"but {_store_names(cfg)} now gives {len(tiles)}; DeepCluster keeps one embedding "
            "per tile, so resume with the same stores and --min-valid"
        )


# ---------------------------------------------------------------------------------------------
# reporting


class Report:
    """Progress bar (rich, on stderr, only on a terminal), per-epoch lines and warnings.

    Silent on ranks other than 0.
    """

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None
        self._task = None
        if not enabled:
            return
        from rich.console import Console

        # soft wrap: one line per epoch in logs, however narrow the terminal
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.live = sys.stderr.isatty()

    def __enter__(self) -> Report:
        if self.enabled and self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.0f} img/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        if self._bar is None:
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(f"epoch {epoch}/{epochs}", total=steps, loss=0.0, rate=0.0)

    def wants_update(self, step: int) -> bool:
        return self._bar is not None

    def step_done(self, step: int, loss: float, rate: float) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, loss=loss, rate=rate)

    def epoch_done(self, record: dict[str, Any], epochs: int) -> None:
        if not self.enabled:
            return
        parts = [
            f"epoch {record['epoch']}/{epochs}",
            f"loss {record['loss']:.4f}",
            f"lr {record['lr']:.3g}",
            f"{record['images_per_s']:.0f} img/s",
            f"embedding std {record['embedding_std']:.4f}",
        ]
        if record.get("knn_accuracy") is not None:
            parts.append(f"kNN cloudiness {record['knn_accuracy']:.3f}")
        for h, stats in enumerate(record.get("clusters") or []):
            parts.append(f"head {h}: {stats.get('empty_clusters', '?')} empty")
        self.console.print("  ".join(parts))
        if record["collapse_warning"]:
            self.console.print(
                f"[bold red]WARNING: representation collapse?[/] embedding std "
                f"{record['embedding_std']:.4g} is below {record['collapse_threshold']:.4g} in "
                f"epoch {record['epoch']}: the embeddings are nearly all alike. Check the "
                "learning rate, the batch size and the views.",
                style="red",
            )

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)


# ---------------------------------------------------------------------------------------------
# entry point


def pretrain(cfg: PretrainConfig, *, on_epoch_end: EpochCallback | None = None) -> Path:
    """Pretrain an encoder; returns the checkpoint (``cfg.out / "last.pt"``).

    ``on_epoch_end(epoch, metrics)`` is called on every rank after the epoch's checkpoint is
    written (tests use it to stop a run as if it was killed).
    """
    cfg.validate()
    out = cfg.out
    last = out / LAST
    checkpoint = None
    resume_path = None
    if cfg.resume is not None:
        resume_path = resolve_checkpoint(cfg.resume)
        checkpoint = load_checkpoint(resume_path)
        cfg = replace(cfg, resume=resume_path)
    elif last.exists():
        raise CloudkitError(
            f"{out} already holds a checkpoint ({LAST}); pass --resume {out} to continue that "
            "run, or choose another --out"
        )
    info = distributed.from_env()
    device = pick_device(cfg.device, info.local_rank)
    dist = distributed.setup(device.type)
    try:
        return _run(cfg, dist, device, checkpoint, on_epoch_end)
    finally:
        distributed.teardown()


def _run(
    cfg: PretrainConfig,
    dist: distributed.Dist,
    device: torch.device,
    checkpoint: dict[str, Any] | None,
    on_epoch_end: EpochCallback | None,
) -> Path:
    trainer = Trainer.create(cfg, device=device, dist=dist, checkpoint=checkpoint)
    cfg = trainer.cfg
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    done = 0
    if checkpoint is not None:
        done = trainer.load_state(checkpoint, cfg.resume)
    last = cfg.out / LAST
    report = Report(enabled=dist.is_main)
    if done >= cfg.epochs:
        report.note(f"{cfg.resume}: already {done} of {cfg.epochs} epochs; nothing to do")
        return cfg.resume
    trainer.prepare()
    if dist.is_main:
        remove_stale_temporaries(cfg.out / LAST)
    metrics = MetricsWriter(
        cfg.out, enabled=dist.is_main, keep_epochs=done if checkpoint is not None else None
    )
    report.note(
        f"{cfg.method.value}: {len(trainer.tiles)} tiles of {trainer.tiles.tile_size} px, "
        f"{len(trainer.tiles.bands)} bands, views {cfg.crop} px, batch {cfg.batch_size}"
        f"{f' x {dist.world_size} processes' if dist.enabled else ''}, "
        f"{trainer.steps_per_epoch} steps/epoch on {device}"
        f"{', from epoch ' + str(done + 1) if done else ''}"
    )
    with report:
        for epoch in range(done + 1, cfg.epochs + 1):
            record = trainer.run_epoch(epoch, report)
            if dist.is_main:
                # metrics first: a run killed in between redoes this epoch on resume and its
                # line is replaced (MetricsWriter keeps only epochs of the checkpoint)
                metrics.write(record)
                save_checkpoint(trainer.state(epoch, record), last)
            report.epoch_done(record, cfg.epochs)
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
    return last
