"""Fine-tuning a segmentation model on labelled tile stores (SEED.md, "Fine-tuning").

The protocol of the paper: a share (``--fraction``) of the labelled tiles is drawn stratified on
the cloudiness bins and split into train and val the same way (data/sampling.py); the encoder
starts from a pretraining checkpoint (or random weights); Adam; the backbone is frozen for the
first ``--freeze-epochs`` epochs (its BatchNorm statistics still adapt) and then trained with
``lr * backbone_lr_scale``; cosine schedule per step; random crops with flips; soft Dice + BCE
(binary tasks) or multi-class Dice + CE; early stopping on the val loss; the best checkpoint by
val IoU of the positive class (binary) or mean IoU (multi-class).

Pixels whose label is no-data or whose ``valid`` flag is off count in no loss and no metric.

Every epoch writes ``DIR/last.pt`` (atomically, everything needed to resume exactly),
``DIR/best.pt`` when the val IoU improved (the model and what evaluation needs, no optimiser),
and a line of ``DIR/metrics.jsonl``. Crops and flips of a sample depend only on
``(seed, epoch, index)`` and the shuffle only on ``(seed, epoch)`` (the pretraining loop's
:class:`~cloudkit.train.pretrain.SeededViews`), so a run resumed after a kill ends with the
same weights as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cloudkit import __version__
from cloudkit.config import RANDOM_INIT, FinetuneConfig
from cloudkit.data.augment import random_crop
from cloudkit.data.sampling import stratified_fraction, stratified_split
from cloudkit.data.tasks import IGNORE, Task, get_task, task_targets
from cloudkit.data.tiles import TileDataset
from cloudkit.errors import CheckpointError, CloudkitError
from cloudkit.eval.metrics import ConfusionAccumulator, class_metrics
from cloudkit.models.encoder import Encoder, check_bands, load_encoder
from cloudkit.models.losses import dice_bce_loss, dice_ce_loss, predict_classes
from cloudkit.models.segmentation import (
    Segmenter,
    backbone_parameters,
    build_segmenter,
    freeze_backbone,
    head_parameters,
    segmenter_state,
)
from cloudkit.train.checkpoint import (
    FORMAT as PRETRAIN_FORMAT,
)
from cloudkit.train.checkpoint import (
    LAST,
    load_checkpoint,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cloudkit.train.metrics import MetricsWriter
from cloudkit.train.pretrain import (
    EpochSampler,
    Report,
    SeededViews,
    default_workers,
    lr_factor,
    pick_device,
    seeded_loader,
)

FORMAT = "cloudkit-finetune"
FORMAT_VERSION = 1
BEST = "best.pt"
FLIP_PROBABILITY = 0.5
#: options that must equal the checkpoint's on --resume (anything else changes the run)
_RESUME_FIXED = (
    "stores",
    "init",
    "fraction",
    "task",
    "head",
    "batch_size",
    "crop",
    "lr",
    "backbone_lr_scale",
    "freeze_epochs",
    "val_fraction",
    "min_valid",
    "seed",
)

EpochCallback = Callable[[int, dict[str, Any]], None]


# ---------------------------------------------------------------------------------------------
# data


class CropFlip(Dataset):
    """Training items: a random ``crop`` window of a tile with random h/v flips (p 0.5 each),
    applied alike to image, valid flag and labels. Randomness from torch's global generator
    (seeded per item by :class:`SeededViews`)."""

    def __init__(self, tiles: TileDataset, indices: np.ndarray, crop: int) -> None:
        self.tiles = tiles
        self.indices = np.asarray(indices, dtype=np.int64)
        self.crop = crop

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = self.tiles[int(self.indices[i])]
        channels = item["image"].shape[0]
        stack = torch.cat([item["image"], item["valid"].float(), item["labels"].float()])
        stack = random_crop(stack, self.crop)
        if float(torch.rand(())) < FLIP_PROBABILITY:
            stack = stack.flip(-1)
        if float(torch.rand(())) < FLIP_PROBABILITY:
            stack = stack.flip(-2)
        return {
            "image": stack[:channels].contiguous(),
            "valid": stack[channels : channels + 1] > 0.5,
            "labels": stack[channels + 1 :].round().to(torch.uint8),
        }


class WholeTiles(Dataset):
    """Validation items: whole tiles of ``indices``, unchanged."""

    def __init__(self, tiles: TileDataset, indices: np.ndarray) -> None:
        self.tiles = tiles
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = self.tiles[int(self.indices[i])]
        return {"image": item["image"], "valid": item["valid"], "labels": item["labels"]}


def targets_of(batch: dict[str, Tensor], task: Task, device: torch.device) -> Tensor:
    """(N, H, W) int64 class targets; IGNORE where the label is no-data or the pixel invalid."""
    targets = task_targets(batch["labels"].to(device), task)
    return targets.masked_fill(~batch["valid"].to(device)[:, 0], IGNORE)


# ---------------------------------------------------------------------------------------------
# initial weights


def load_init(init: str) -> Encoder:
    """The encoder of a pretraining checkpoint (``last.pt`` of `cloudkit pretrain`, or a run
    folder holding one), or of a file holding just ``encoder_state(...)``."""
    path = Path(init)
    if not path.exists():
        raise CheckpointError(
            f"--init {init}: no such file; pass 'random' or a pretraining checkpoint "
            "(last.pt of `cloudkit pretrain`)"
        )
    try:
        payload = load_checkpoint(path, option="--init")
    except CheckpointError as err:
        # a bare encoder state (torch.save(encoder_state(encoder), path)) is welcome too
        payload = _bare_encoder_state(path)
        if payload is None:
            raise CheckpointError(
                f"--init {init}: {str(err).removeprefix(f'{path}: ')}; pass 'random' or the "
                "last.pt of `cloudkit pretrain`"
            ) from None
    state = payload.get("encoder")
    if not isinstance(state, dict):
        raise CheckpointError(f"--init {init}: the checkpoint holds no 'encoder'")
    try:
        return load_encoder(state)
    except CloudkitError as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"--init {init}: {err}") from None


def _bare_encoder_state(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if isinstance(payload, dict) and {"bands", "arch", "state_dict"} <= payload.keys():
        return {"format": PRETRAIN_FORMAT, "encoder": payload}
    return None


def init_name(init: str) -> str:
    """A short name of an init: ``random``, the file stem, or the run folder of a last.pt."""
    if init == RANDOM_INIT:
        return RANDOM_INIT
    path = Path(init)
    if path.is_dir():
        return path.name
    if path.stem == Path(LAST).stem and path.parent.name:
        return path.parent.name
    return path.stem


# ---------------------------------------------------------------------------------------------
# the trainer


class FinetuneReport(Report):
    """The pretraining progress display, with fine-tuning's epoch line."""

    def epoch_done(self, record: dict[str, Any], epochs: int) -> None:  # type: ignore[override]
        if not self.enabled:
            return
        parts = [
            f"epoch {record['epoch']}/{epochs}",
            f"train loss {record['train_loss']:.4f}",
            f"val loss {record['val_loss']:.4f}",
            f"val IoU {record['val_iou']:.4f}",
            f"val F1 {record['val_f1']:.4f}",
            f"lr {record['lr']:.3g}",
            f"{record['images_per_s']:.0f} img/s",
        ]
        if record["frozen"]:
            parts.append("backbone frozen")
        if record["best"]:
            parts.append("best")
        self.console.print("  ".join(parts))


class FineTuner:
    """Data, model, optimiser, schedule and early-stopping state of one fine-tuning run."""

    def __init__(self, cfg: FinetuneConfig, *, device: torch.device) -> None:
        self.device = device
        self.on_gpu = device.type == "cuda"
        tiles = TileDataset(cfg.stores, min_valid=cfg.min_valid, with_labels=True)
        self.stores = ", ".join(str(s) for s in cfg.stores)
        cfg = cfg.resolved(tile_size=tiles.tile_size, device_type=device.type)
        if cfg.workers is None:
            cfg = replace(cfg, workers=default_workers())
        self.cfg = cfg
        self.tiles = tiles
        self.task = get_task(cfg.task.value)
        if cfg.crop > tiles.tile_size:
            raise CloudkitError(
                f"--crop {cfg.crop} but the tiles of {self.stores} are {tiles.tile_size} px; "
                "lower --crop or tile with a larger --tile-size"
            )
        bins = tiles.cloud_bins()
        if not (bins >= 0).any():
            raise CloudkitError(
                f"{self.stores} has no labelled tile (no cloud fractions); tile labelled scenes "
                "(e.g. --scl-labels) to fine-tune"
            )
        subset = stratified_fraction(bins, cfg.fraction, seed=cfg.seed)
        self.train_idx, self.val_idx = stratified_split(
            subset, bins, cfg.val_fraction, seed=cfg.seed
        )
        if len(self.val_idx) == 0 or len(self.train_idx) == 0:
            raise CloudkitError(
                f"--fraction {cfg.fraction:g} of {self.stores} leaves {len(subset)} tile(s); "
                "train and val need one each: raise --fraction or add tiles"
            )
        if cfg.batch_size > len(self.train_idx):
            raise CloudkitError(
                f"--batch-size {cfg.batch_size} but --fraction {cfg.fraction:g} of "
                f"{self.stores} gives {len(self.train_idx)} training tiles ({len(self.val_idx)} "
                f"more for val); lower --batch-size or raise --fraction"
            )

        self.train_set = SeededViews(CropFlip(tiles, self.train_idx, cfg.crop), cfg.seed)
        self.sampler = EpochSampler(
            DistributedSampler(self.train_set, num_replicas=1, rank=0, shuffle=True, seed=cfg.seed)
        )
        self.loader, self.generator = seeded_loader(
            self.train_set,
            self.sampler,
            cfg.batch_size,
            workers=cfg.workers,
            seed=cfg.seed,
            pin_memory=self.on_gpu,
        )
        self.val_loader = DataLoader(
            WholeTiles(tiles, self.val_idx),
            batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=cfg.workers,
            pin_memory=self.on_gpu,
            persistent_workers=cfg.workers > 0,
        )
        self.steps_per_epoch = len(self.loader)

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        if cfg.init == RANDOM_INIT:
            encoder = Encoder(tiles.bands)
        else:
            encoder = load_init(cfg.init)
            check_bands(encoder.bands, tiles.bands, what=f"store {self.stores}")
        self.model: Segmenter = build_segmenter(
            encoder,
            head=cfg.head.value,
            num_classes=self.task.num_classes,
            binary=self.task.binary,
        ).to(device)
        self.optimizer = torch.optim.Adam(
            [
                {"params": head_parameters(self.model), "lr": cfg.lr},
                {"params": backbone_parameters(self.model), "lr": cfg.lr * cfg.backbone_lr_scale},
            ]
        )
        total = cfg.epochs * self.steps_per_epoch

        def factor(step: int) -> float:
            return lr_factor(step, total=total, warmup=0, final_ratio=0.0)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.autocast = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16)
            if cfg.amp
            else contextlib.nullcontext()
        )
        self.loss_fn = dice_bce_loss if self.task.binary else dice_ce_loss
        # early stopping and best-checkpoint state
        self.best_val_loss = math.inf
        self.epochs_without_improvement = 0
        self.best_iou = -math.inf
        self.best_epoch = 0
        self.stopped = False

    # -- state ---------------------------------------------------------------------------------

    def _common(self, epoch: int, record: dict[str, Any] | None) -> dict[str, Any]:
        cfg = self.cfg
        extra = {
            "normalisation": self.tiles.value_scale.record(),
            "crop": cfg.crop,
            "init": cfg.init,
            "fraction": cfg.fraction,
            "classes": list(self.task.classes),
        }
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": segmenter_state(self.model, task=self.task.name, extra=extra),
            "task": self.task.name,
            "bands": list(self.tiles.bands),
            "classes": list(self.task.classes),
            "head": cfg.head.value,
            "normalisation": self.tiles.value_scale.record(),
            "crop": cfg.crop,
            "tile_size": self.tiles.tile_size,
            "init": cfg.init,
            "fraction": cfg.fraction,
            "config": cfg.to_dict(),
            "epoch": epoch,
            "metrics": record,
            "splits": {"train": self.train_idx.tolist(), "val": self.val_idx.tolist()},
            "versions": {"cloudkit": __version__, "torch": str(torch.__version__)},
        }

    def best_state(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        return self._common(epoch, record)

    def last_state(self, epoch: int, record: dict[str, Any]) -> dict[str, Any]:
        state = self._common(epoch, record)
        state.update(
            {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": rng_state(),
                "loader": {"generator": self.generator.get_state(), "sampler_epoch": epoch},
                "early_stopping": {
                    "best_val_loss": self.best_val_loss,
                    "epochs_without_improvement": self.epochs_without_improvement,
                    "best_iou": self.best_iou,
                    "best_epoch": self.best_epoch,
                    "stopped": self.stopped,
                },
            }
        )
        return state

    def load_state(self, checkpoint: dict[str, Any], path: Path) -> int:
        """Restore everything from a ``last.pt``; returns the epochs already done."""
        saved = checkpoint.get("config", {})
        now = self.cfg.to_dict()
        differ = [k for k in _RESUME_FIXED if saved.get(k) != now.get(k)]
        if differ:
            shown = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r}" for k in differ)
            raise CloudkitError(
                f"--resume: {path} was written with other options ({shown}); resume with the "
                "options of the run that wrote it, or choose another --out"
            )
        try:
            self.model.load_state_dict(checkpoint["model"]["state_dict"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise CloudkitError(
                f"--resume: {path} does not fit this run ({first}); resume with the options of "
                "the run that wrote it"
            ) from None
        set_rng_state(checkpoint["rng"])
        self.generator.set_state(checkpoint["loader"]["generator"])
        stop = checkpoint["early_stopping"]
        self.best_val_loss = float(stop["best_val_loss"])
        self.epochs_without_improvement = int(stop["epochs_without_improvement"])
        self.best_iou = float(stop["best_iou"])
        self.best_epoch = int(stop["best_epoch"])
        self.stopped = bool(stop["stopped"])
        return int(checkpoint["epoch"])

    # -- training ------------------------------------------------------------------------------

    def _images(self, batch: dict[str, Tensor]) -> Tensor:
        fmt = torch.channels_last if self.on_gpu else torch.contiguous_format
        return batch["image"].to(self.device, non_blocking=True, memory_format=fmt)

    def run_epoch(self, epoch: int, report: Report) -> dict[str, Any]:
        cfg = self.cfg
        frozen = epoch <= cfg.freeze_epochs
        freeze_backbone(self.model, frozen)
        self.sampler.set_epoch(epoch)
        self.model.train()  # BN of a frozen backbone still adapts its statistics
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        lr = self.optimizer.param_groups[0]["lr"]
        backbone_lr = self.optimizer.param_groups[1]["lr"]
        report.epoch_started(epoch, cfg.epochs, self.steps_per_epoch)
        start = time.perf_counter()
        for step, batch in enumerate(self.loader, start=1):
            lr = self.optimizer.param_groups[0]["lr"]
            backbone_lr = self.optimizer.param_groups[1]["lr"]
            images = self._images(batch)
            targets = targets_of(batch, self.task, self.device)
            with self.autocast:
                logits = self.model(images)
            loss = self.loss_fn(logits.float(), targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += loss.detach().double()
            if report.wants_update(step):
                seconds = time.perf_counter() - start
                rate = step * cfg.batch_size / max(seconds, 1e-9)
                report.step_done(step, float(loss), rate)
        if self.on_gpu:
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        train_loss = float(loss_sum) / self.steps_per_epoch
        if not math.isfinite(train_loss):
            raise CloudkitError(
                f"the loss became {train_loss} in epoch {epoch}; lower --lr (now {cfg.lr:g}) or "
                f"turn off --amp; {LAST} still holds epoch {epoch - 1}"
            )
        val = self.validate()
        record: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": train_loss,
            **val,
            "lr": lr,
            "backbone_lr": 0.0 if frozen else backbone_lr,
            "frozen": frozen,
            "images_per_s": self.steps_per_epoch * cfg.batch_size / max(seconds, 1e-9),
            "seconds": seconds,
        }
        record["best"] = record["val_iou"] > self.best_iou
        if record["best"]:
            self.best_iou = record["val_iou"]
            self.best_epoch = epoch
        if record["val_loss"] < self.best_val_loss:
            self.best_val_loss = record["val_loss"]
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        self.stopped = 0 < cfg.patience <= self.epochs_without_improvement
        record["early_stop"] = self.stopped
        return record

    @torch.inference_mode()
    def validate(self) -> dict[str, Any]:
        """Val loss (mean over pixels' batches), IoU and F1 of the positive class (binary) or
        their means over the classes (multi-class), on whole val tiles."""
        self.model.eval()
        confusion = ConfusionAccumulator(self.task.num_classes, ignore=IGNORE)
        loss_sum, count = 0.0, 0
        for batch in self.val_loader:
            images = self._images(batch)
            targets = targets_of(batch, self.task, self.device)
            with self.autocast:
                logits = self.model(images)
            logits = logits.float()
            if (targets != IGNORE).any():
                loss_sum += float(self.loss_fn(logits, targets)) * images.shape[0]
                count += images.shape[0]
            pred = predict_classes(logits, self.task.binary)
            confusion.update(pred.masked_fill(targets == IGNORE, 0), targets)
        self.model.train()
        metrics = class_metrics(confusion.matrix, self.task.classes)
        per_class = metrics["per_class"]
        if self.task.binary:
            positive = per_class[self.task.classes[1]]
            iou, f1 = positive["iou"], positive["f1"]
        else:
            iou = metrics["mean_iou"]
            f1 = float(np.mean([per_class[c]["f1"] for c in self.task.classes]))
        return {
            "val_loss": loss_sum / count if count else math.nan,
            "val_iou": iou,
            "val_f1": f1,
            "val_overall_accuracy": metrics["overall_accuracy"],
        }


# ---------------------------------------------------------------------------------------------
# entry point


def finetune(cfg: FinetuneConfig, *, on_epoch_end: EpochCallback | None = None) -> Path:
    """Fine-tune a segmenter; returns the best checkpoint (``cfg.out / "best.pt"``).

    ``on_epoch_end(epoch, metrics)`` is called after the epoch's checkpoints are written (tests
    use it to stop a run as if it was killed).
    """
    cfg.validate()
    last = cfg.out / LAST
    best = cfg.out / BEST
    checkpoint = None
    if cfg.resume:
        if not last.is_file():
            raise CloudkitError(
                f"--resume but {cfg.out} holds no {LAST}; drop --resume to start a new run"
            )
        checkpoint = load_checkpoint(
            last, expected_format=FORMAT, max_version=FORMAT_VERSION, option="--resume"
        )
    elif last.exists():
        raise CloudkitError(
            f"{cfg.out} already holds a checkpoint ({LAST}); pass --resume to continue that "
            "run, or choose another --out"
        )
    device = pick_device(cfg.device)
    tuner = FineTuner(cfg, device=device)
    cfg = tuner.cfg
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    done = 0
    if checkpoint is not None:
        done = tuner.load_state(checkpoint, last)
    report = FinetuneReport(enabled=True)
    if done >= cfg.epochs or tuner.stopped:
        report.note(f"{last}: {done} epochs done (of {cfg.epochs}); nothing to do")
        return best
    remove_stale_temporaries(last)
    remove_stale_temporaries(best)
    metrics = MetricsWriter(cfg.out, enabled=True, keep_epochs=done if checkpoint else None)
    report.note(
        f"fine-tune {tuner.task.name} ({cfg.head.value} head, init {init_name(cfg.init)}): "
        f"{len(tuner.train_idx)} train + {len(tuner.val_idx)} val tiles "
        f"(fraction {cfg.fraction:g} of {len(tuner.tiles)}), crops {cfg.crop} px, batch "
        f"{cfg.batch_size}, {tuner.steps_per_epoch} steps/epoch on {device}"
        f"{', from epoch ' + str(done + 1) if done else ''}"
    )
    with report:
        for epoch in range(done + 1, cfg.epochs + 1):
            record = tuner.run_epoch(epoch, report)
            # metrics, then best, then last: a run killed in between redoes the epoch on resume
            metrics.write(record)
            if record["best"]:
                save_checkpoint(tuner.best_state(epoch, record), best)
            save_checkpoint(tuner.last_state(epoch, record), last)
            report.epoch_done(record, cfg.epochs)
            if on_epoch_end is not None:
                on_epoch_end(epoch, record)
            if tuner.stopped:
                report.note(
                    f"early stop after epoch {epoch}: no lower val loss for {cfg.patience} "
                    f"epochs; best val IoU {tuner.best_iou:.4f} in epoch {tuner.best_epoch}"
                )
                break
    return best


def load_finetuned(path: Path) -> dict[str, Any]:
    """Load a fine-tuning checkpoint (best.pt or last.pt); CheckpointError if it is not one."""
    return load_checkpoint(
        path, expected_format=FORMAT, max_version=FORMAT_VERSION, option="checkpoint"
    )


__all__ = ["BEST", "FORMAT", "FineTuner", "finetune", "init_name", "load_finetuned", "load_init"]
