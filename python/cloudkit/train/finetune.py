"""Fine-tuning a segmentation model on labelled tile stores, as Gbodjo et al. (2026) do.

The protocol of the paper: a share (``--fraction``) of the labelled tiles is drawn stratified on
the cloudiness bins and split into train and val the same way (data/sampling.py); the encoder
starts from a pretraining checkpoint (or random weights); Adam; the backbone is frozen for the
first ``--freeze-epochs`` epochs (its BatchNorm statistics still adapt) and then trained with
``lr * backbone_lr_scale``; cosine schedule per step; random crops with flips; soft Dice + BCE
(binary tasks) or multi-class Dice + CE; early stopping on the val loss; the best checkpoint by
val IoU of the positive class (binary) or mean IoU (multi-class), or with ``--best-by loss`` by
the val loss (on a few tiles the IoU can peak in the first epochs, the loss rarely does).

Pixels whose label is no-data or whose ``valid`` flag is off count in no loss and no metric.

:class:`FineTuning` supplies these to the training engine (engine.py), which writes every epoch
``DIR/last.pt`` (everything needed to resume exactly), ``DIR/best.pt`` when the val IoU (or
loss) improved (the model and what evaluation needs, no optimiser) and a line of
``DIR/metrics.jsonl``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from cloudkit.config import RANDOM_INIT, BestBy, FinetuneConfig, ShadowPlacement
from cloudkit.data.hard_negatives import oversample
from cloudkit.data.sampling import stratified_fraction, stratified_split
from cloudkit.data.tasks import IGNORE, Task, get_task, task_targets
from cloudkit.data.tiles import TileDataset
from cloudkit.data.training_crops import TrainingCrops, WholeTiles
from cloudkit.errors import CheckpointError, CloudkitError, OptionError, StoreError, TileShapeError
from cloudkit.eval.metrics import ConfusionAccumulator, class_metrics
from cloudkit.models.checkpoint import BEST, FINE_TUNING, LAST, PRETRAINING, load_checkpoint
from cloudkit.models.encoder import ARCH, Encoder, as_any_band, check_bands, load_encoder
from cloudkit.models.losses import dice_bce_loss, dice_ce_loss, predict_classes
from cloudkit.models.segmentation import (
    Segmenter,
    backbone_parameters,
    build_segmenter,
    freeze_backbone,
    head_parameters,
    segmenter_state,
)
from cloudkit.train import distributed
from cloudkit.train.engine import Engine, EpochCallback, EpochStats

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
    "best_by",
    "min_valid",
    "seed",
    "split_seed",
    "any_bands",
    "arch",
    "synthetic",
    "synthetic_shadows",
    "synthetic_veils",
    "hard_negatives",
    "resolutions",
)
#: what a run written before an option existed used
_RESUME_BEFORE = {
    "hard_negatives": 0.0,
    "split_seed": None,
    "best_by": "iou",
    "synthetic_shadows": "sun",
    "synthetic_veils": "water",
}


# ---------------------------------------------------------------------------------------------
# data


def targets_of(batch: dict[str, Tensor], task: Task, device: torch.device) -> Tensor:
    """(N, H, W) int64 class targets; IGNORE where the label is no-data or the pixel invalid."""
    targets = task_targets(batch["labels"].to(device), task)
    return targets.masked_fill(~batch["valid"].to(device)[:, 0], IGNORE)


def val_figures(val_loss: float, confusion: np.ndarray, task: Task) -> dict[str, Any]:
    """What an epoch records of its validation: the val loss, and the IoU and F1 of the
    positive class (binary) or their means over the classes (multi-class)."""
    metrics = class_metrics(confusion, task.classes)
    per_class = metrics["per_class"]
    if task.binary:
        positive = per_class[task.classes[1]]
        iou, f1 = positive["iou"], positive["f1"]
    else:
        iou = metrics["mean_iou"]
        f1 = float(np.mean([per_class[c]["f1"] for c in task.classes]))
    return {
        "val_loss": val_loss,
        "val_iou": iou,
        "val_f1": f1,
        "val_overall_accuracy": metrics["overall_accuracy"],
    }


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
        state = load_checkpoint(path, PRETRAINING, option="--init").get("encoder")
    except CheckpointError as err:
        # a bare encoder state (torch.save(encoder_state(encoder), path)) is welcome too
        state = _bare_encoder_state(path)
        if state is None:
            raise CheckpointError(
                f"--init {init}: {str(err).removeprefix(f'{path}: ')}; pass 'random' or the "
                "last.pt of `cloudkit pretrain`"
            ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"--init {init}: the checkpoint holds no 'encoder'")
    try:
        return load_encoder(state)
    except CloudkitError as err:  # a state cloudkit cannot rebuild, or unknown bands
        raise CheckpointError(f"--init {init}: {err}") from None


def _bare_encoder_state(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    if isinstance(payload, dict) and {"bands", "arch", "state_dict"} <= payload.keys():
        return payload
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
# the method


class FineTuning(Engine):
    """Data, model, optimiser, validation and early stopping of one fine-tuning run."""

    kind = FINE_TUNING
    result = BEST
    model: Segmenter  # build_model's

    def __init__(
        self,
        cfg: FinetuneConfig,
        *,
        device: torch.device,
        dist: distributed.Dist,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        tiles = TileDataset(
            cfg.stores, min_valid=cfg.min_valid, with_labels=True, any_bands=cfg.any_bands
        )
        self.stores = ", ".join(str(s) for s in cfg.stores)
        cfg = cfg.resolved(tile_size=tiles.tile_size, device_type=device.type)
        self.tiles = tiles
        self.task = get_task(cfg.task.value)
        assert cfg.crop is not None  # resolved with the tile size
        if cfg.crop > tiles.tile_size:
            raise TileShapeError(
                f"--crop {cfg.crop} but the tiles of {self.stores} are {tiles.tile_size} px; "
                "lower --crop or tile with a larger --tile-size"
            )
        bins = tiles.cloud_bins()
        if not (bins >= 0).any():
            raise StoreError(
                f"{self.stores} has no labelled tile (no cloud fractions); tile labelled scenes "
                "(e.g. --scl-labels) to fine-tune"
            )
        subset = stratified_fraction(bins, cfg.fraction, seed=cfg.draw_seed)
        self.train_idx, self.val_idx = stratified_split(
            subset, bins, cfg.val_fraction, seed=cfg.draw_seed
        )
        if len(self.val_idx) == 0 or len(self.train_idx) == 0:
            raise OptionError(
                f"--fraction {cfg.fraction:g} of {self.stores} leaves {len(subset)} tile(s); "
                "train and val need one each: raise --fraction or add tiles"
            )
        if cfg.batch_size > len(self.train_idx):
            raise OptionError(
                f"--batch-size {cfg.batch_size} but --fraction {cfg.fraction:g} of "
                f"{self.stores} gives {len(self.train_idx)} training tiles ({len(self.val_idx)} "
                f"more for val); lower --batch-size or raise --fraction"
            )
        loss = dice_bce_loss if self.task.binary else dice_ce_loss
        weights = None if cfg.class_weights is None else torch.tensor(cfg.class_weights)
        self.loss_fn = functools.partial(loss, class_weights=weights)
        # early stopping and best-checkpoint state
        self.best_val_loss = math.inf
        self.epochs_without_improvement = 0
        self.best_iou = -math.inf
        self.best_epoch_val_loss = math.inf
        self.best_epoch = 0
        self.stopped = False
        self.frozen = False
        # the tiles seen per epoch: hard negatives repeated (data/hard_negatives.py)
        self.sampled = oversample(tiles, self.train_idx, cfg.hard_negatives)
        crops = TrainingCrops(
            tiles,
            self.sampled.indices,
            cfg.crop,
            resolutions=cfg.resolutions,
            synthetic=cfg.synthetic,
            sun_cast=cfg.synthetic_shadows is ShadowPlacement.sun,
            veils=cfg.synthetic_veils.value,
        )
        super().__init__(cfg, crops, device=device, dist=dist, checkpoint=checkpoint)
        self.val_loader = DataLoader(
            WholeTiles(tiles, self.val_idx),
            batch_size=self.cfg.batch_size,
            shuffle=False,
            num_workers=self.cfg.workers,
            pin_memory=self.on_gpu,
            persistent_workers=self.cfg.workers > 0,
        )

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        arch = cfg.arch.value if cfg.arch is not None else None
        if cfg.init == RANDOM_INIT:
            encoder = Encoder(self.tiles.bands, any_bands=cfg.any_bands, arch=arch or ARCH)
        else:
            encoder = load_init(cfg.init)
            if arch is not None and encoder.arch != arch:
                raise OptionError(
                    f"--arch {arch}: --init {cfg.init} is a {encoder.arch} encoder; drop --arch "
                    f"or pass --arch {encoder.arch}"
                )
            if cfg.any_bands:
                # an encoder of any bands starts an any-band model: its filters go to their slots
                encoder = as_any_band(encoder)
            else:
                check_bands(encoder.bands, self.tiles.bands, what=f"store {self.stores}")
        if cfg.head.value == "paper" and encoder.arch != ARCH:
            raise OptionError(
                f"--head paper is built on {ARCH}, not {encoder.arch}; use --head unet or light"
            )
        return build_segmenter(
            encoder,
            head=cfg.head.value,
            num_classes=self.task.num_classes,
            binary=self.task.binary,
        ).to(self.device)

    def build_optimizer(self) -> torch.optim.Optimizer:
        lr = self.cfg.lr
        return torch.optim.Adam(
            [
                {"params": head_parameters(self.model), "lr": lr},
                {"params": backbone_parameters(self.model), "lr": lr * self.cfg.backbone_lr_scale},
            ]
        )

    def check_resume(self, checkpoint: dict[str, Any], path: Path) -> None:
        saved = checkpoint.get("config", {})
        now = self.cfg.to_dict()
        differ = [k for k in _RESUME_FIXED if saved.get(k, _RESUME_BEFORE.get(k)) != now.get(k)]
        if differ:
            shown = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r}" for k in differ)
            raise CheckpointError(
                f"--resume: {path} was written with other options ({shown}); resume with the "
                "options of the run that wrote it, or choose another --out"
            )

    # -- an epoch ------------------------------------------------------------------------------

    def before_epoch(self, epoch: int) -> None:
        self.frozen = epoch <= self.cfg.freeze_epochs
        freeze_backbone(self.model, self.frozen)  # BN of a frozen backbone still adapts

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        images = self.to_device(batch["image"])
        targets = targets_of(batch, self.task, self.device)
        with self.autocast:
            logits = self.model(images)
        return self.loss_fn(logits.float(), targets)

    def epoch_record(self, stats: EpochStats) -> dict[str, Any]:
        val = self.validate()
        record: dict[str, Any] = {
            "epoch": stats.epoch,
            "train_loss": stats.loss,
            **val,
            "lr": stats.lrs[0],
            "backbone_lr": 0.0 if self.frozen else stats.lrs[1],
            "frozen": self.frozen,
            "images_per_s": stats.images_per_s,
            "seconds": stats.seconds,
        }
        if self.cfg.best_by is BestBy.loss:
            record["best"] = record["val_loss"] < self.best_epoch_val_loss
        else:  # a tie in IoU (a small val set without the positive class scores 0 every
            # epoch) goes to the lower val loss, not to the first epoch
            record["best"] = record["val_iou"] > self.best_iou or (
                record["val_iou"] == self.best_iou and record["val_loss"] < self.best_epoch_val_loss
            )
        if record["best"]:
            self.best_iou = record["val_iou"]
            self.best_epoch = stats.epoch
            self.best_epoch_val_loss = record["val_loss"]
        if record["val_loss"] < self.best_val_loss:
            self.best_val_loss = record["val_loss"]
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        self.stopped = 0 < self.cfg.patience <= self.epochs_without_improvement
        record["early_stop"] = self.stopped
        return record

    def validate(self) -> dict[str, Any]:
        """Val loss (mean over pixels' batches), IoU and F1 of the positive class (binary) or
        their means over the classes (multi-class), on whole val tiles."""
        return val_figures(*self.validation_pass(), self.task)

    @torch.inference_mode()
    def validation_pass(self) -> tuple[float, np.ndarray]:
        """The model on every whole val tile: the val loss (NaN with no labelled pixel) and
        the class confusion matrix (rows: labels), labelled pixels only."""
        self.model.eval()
        confusion = ConfusionAccumulator(self.task.num_classes, ignore=IGNORE)
        loss_sum, count = 0.0, 0
        for batch in self.val_loader:
            images = self.to_device(batch["image"])
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
        return (loss_sum / count if count else math.nan), confusion.matrix

    def epoch_figures(self, record: dict[str, Any]) -> list[str]:
        parts = [
            f"train loss {record['train_loss']:.4f}",
            f"val loss {record['val_loss']:.4f}",
            f"val IoU {record['val_iou']:.4f}",
            f"val F1 {record['val_f1']:.4f}",
            *self.pace_figures(record),
        ]
        if record["frozen"]:
            parts.append("backbone frozen")
        if record["best"]:
            parts.append("best")
        return parts

    def is_best(self, record: dict[str, Any]) -> bool:
        return record["best"]

    def should_stop(self) -> bool:
        return self.stopped

    def stop_note(self, epoch: int) -> str:
        return (
            f"early stop after epoch {epoch}: no lower val loss for {self.cfg.patience} "
            f"epochs; best val {self._best_figure()} in epoch {self.best_epoch}"
        )

    def _best_figure(self) -> str:
        if self.cfg.best_by is BestBy.loss:
            return f"loss {self.best_epoch_val_loss:.4f}"
        return f"IoU {self.best_iou:.4f}"

    def summary(self) -> str:
        cfg = self.cfg
        return (
            f"fine-tune {self.task.name} ({cfg.head.value} head, init {init_name(cfg.init)}): "
            f"{len(self.train_idx)} train + {len(self.val_idx)} val tiles "
            f"(fraction {cfg.fraction:g} of {len(self.tiles)}), crops {cfg.crop} px, batch "
            f"{cfg.batch_size}, {self.steps_per_epoch} steps/epoch on {self.device}"
            + self._hard_note()
        )

    def _hard_note(self) -> str:
        s = self.sampled
        if not self.cfg.hard_negatives:
            return ""
        return (
            f"; hard negatives: {s.hard_tiles} of {s.tiles} tiles seen more often (mean hard "
            f"share {s.mean_share:.2f}), {len(s.indices)} crops/epoch"
        )

    # -- state ---------------------------------------------------------------------------------

    def checkpoint_info(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "task": self.task.name,
            "bands": list(self.tiles.bands),
            "classes": list(self.task.classes),
            "head": cfg.head.value,
            "normalisation": self.tiles.value_scale.record(),
            "crop": cfg.crop,
            "tile_size": self.tiles.tile_size,
            # predict flags a mask of pixels far coarser than these (predict/writer.py)
            "made_for": cfg.resolutions[1] if cfg.resolutions else self.tiles.coarsest_resolution,
            "init": cfg.init,
            "fraction": cfg.fraction,
            "config": cfg.to_dict(),
            "splits": {"train": self.train_idx.tolist(), "val": self.val_idx.tolist()},
        }

    def model_state(self) -> dict[str, Any]:
        return segmenter_state(self.model, task=self.task.name)

    def load_model_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["state_dict"])

    def method_state(self) -> dict[str, Any]:
        return {
            "early_stopping": {
                "best_val_loss": self.best_val_loss,
                "epochs_without_improvement": self.epochs_without_improvement,
                "best_iou": self.best_iou,
                "best_epoch": self.best_epoch,
                "best_epoch_val_loss": self.best_epoch_val_loss,
                "stopped": self.stopped,
            }
        }

    def load_method_state(self, checkpoint: dict[str, Any]) -> None:
        stop = checkpoint["early_stopping"]
        self.best_val_loss = float(stop["best_val_loss"])
        self.epochs_without_improvement = int(stop["epochs_without_improvement"])
        self.best_iou = float(stop["best_iou"])
        self.best_epoch = int(stop["best_epoch"])
        # checkpoints written before the tie-break: no tie goes to a later epoch
        self.best_epoch_val_loss = float(stop.get("best_epoch_val_loss", -math.inf))
        self.stopped = bool(stop["stopped"])


def finetune(
    cfg: FinetuneConfig, *, on_epoch_end: EpochCallback | None = None, quiet: bool = False
) -> Path:
    """Fine-tune a segmenter; returns the best checkpoint (``cfg.out / "best.pt"``).

    ``on_epoch_end(epoch, metrics)`` is called after the epoch's checkpoints are written (tests
    use it to stop a run as if it was killed); ``quiet`` prints nothing.
    """
    return FineTuning.run(cfg, on_epoch_end=on_epoch_end, quiet=quiet)


__all__ = ["FineTuning", "finetune", "init_name", "load_init"]
