"""`cloudkit finetune` and `cloudkit experiment` (the label-fraction grid): their options
and configs."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cloudkit.config.choices import (
    Arch,
    BestBy,
    Device,
    Head,
    ShadowPlacement,
    TaskName,
    Veils,
)
from cloudkit.config.parsing import (
    _check_signs,
    _check_training,
    _plain_fields,
    parse_class_weights,
    parse_resolutions,
)
from cloudkit.errors import OptionError

#: Fine-tuning defaults of the paper (Gbodjo et al. 2026).
FINETUNE_DEFAULT_MAX_CROP = 256


RANDOM_INIT = "random"


@dataclass(frozen=True, kw_only=True)
class FinetuneOptions:
    """The hyper-parameters shared by `cloudkit finetune` and `cloudkit experiment`."""

    task: TaskName = TaskName.cloud
    head: Head = Head.unet
    epochs: int = 50
    batch_size: int = 16
    crop: int | None = None  # training crop edge in pixels; default min(256, tile size)
    lr: float = 7e-3
    backbone_lr_scale: float = 0.1  # the backbone's lr once unfrozen is lr * this
    freeze_epochs: int = 5
    patience: int = 15  # early stopping: epochs without a lower val loss
    best_by: BestBy = BestBy.iou  # which epoch is best.pt
    val_fraction: float = 0.2
    min_valid: float = 0.5
    seed: int = 0
    # seed of the tiles drawn (--fraction) and of the train/val split; None: ``seed``. Runs of
    # several seeds that share it are validated on the same tiles, so their losses compare
    split_seed: int | None = None
    device: Device = Device.auto
    amp: bool | None = None  # bf16 autocast; default on with CUDA; never on CPU
    workers: int | None = None
    # a model for any product: the 13 band slots, stores of any bands, random band subsets
    any_bands: bool = False
    # the encoder's architecture; None: the --init checkpoint's, ResNet-18 from random weights
    arch: Arch | None = None
    # share of training crops that get synthetic clouds and shadows (data/training_crops.py)
    synthetic: float = 0.0
    # where a synthetic cloud's shadow falls: cast by the tile's sun, or anywhere near
    synthetic_shadows: ShadowPlacement = ShadowPlacement.sun
    # how synthetic thin clouds look and from which opacity they are labelled thin
    synthetic_veils: Veils = Veils.water
    # weight of hard negatives: a tile is seen 1 + round(w * hard share) times per epoch
    # (data/hard_negatives.py)
    hard_negatives: float = 0.0
    # (lo, hi) metres: each training crop is seen at a resolution drawn in this range
    resolutions: tuple[float, float] | None = None
    # how much a pixel of each class counts in the cross-entropy (None: all alike)
    class_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.class_weights, str):
            object.__setattr__(self, "class_weights", parse_class_weights(self.class_weights))
        elif self.class_weights is not None:
            object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
        if isinstance(self.resolutions, str):
            object.__setattr__(self, "resolutions", parse_resolutions(self.resolutions))
        elif self.resolutions is not None:
            object.__setattr__(self, "resolutions", tuple(float(r) for r in self.resolutions))
        object.__setattr__(self, "task", TaskName(self.task))
        object.__setattr__(self, "head", Head(self.head))
        object.__setattr__(self, "best_by", BestBy(self.best_by))
        object.__setattr__(self, "synthetic_shadows", ShadowPlacement(self.synthetic_shadows))
        object.__setattr__(self, "synthetic_veils", Veils(self.synthetic_veils))
        if self.arch is not None:
            object.__setattr__(self, "arch", Arch(self.arch))
        object.__setattr__(self, "device", Device(self.device))

    def validate(self) -> None:
        positive = {
            "epochs": "--epochs",
            "batch_size": "--batch-size",
            "crop": "--crop",
            "lr": "--lr",
        }
        non_negative = {
            "backbone_lr_scale": "--backbone-lr-scale",
            "freeze_epochs": "--freeze-epochs",
            "patience": "--patience",
            "workers": "--workers",
        }
        _check_signs(self, positive=positive, non_negative=non_negative)
        _check_training(self.batch_size, self.workers, self.lr)
        if not 0.0 < self.val_fraction < 1.0:
            raise OptionError(
                f"--val-fraction must be in (0, 1), got {self.val_fraction}; early stopping "
                "and the best checkpoint need a validation set"
            )
        if not 0.0 <= self.min_valid <= 1.0:
            raise OptionError(f"--min-valid must be in [0, 1], got {self.min_valid}")
        if not 0.0 <= self.synthetic <= 1.0:
            raise OptionError(
                f"--synthetic must be a share of the crops in [0, 1], got {self.synthetic}"
            )
        if not (self.hard_negatives >= 0.0 and math.isfinite(self.hard_negatives)):
            raise OptionError(f"--hard-negatives must be 0 or more, got {self.hard_negatives}")
        if self.resolutions is not None:
            lo, hi = self.resolutions
            if not (0.0 < lo <= hi and math.isfinite(hi)):
                raise OptionError(
                    f"--resolutions {lo:g},{hi:g}: expected two pixel sizes in metres, "
                    "smallest first, e.g. 20,60"
                )
        if self.class_weights is not None:
            from cloudkit.data.tasks import TASKS

            classes = TASKS[self.task.value].classes
            weights = self.class_weights
            if len(weights) != len(classes) or not all(math.isfinite(w) and w > 0 for w in weights):
                raise OptionError(
                    f"--class-weights {','.join(f'{w:g}' for w in weights)}: task "
                    f"{self.task.value} needs {len(classes)} positive weights, one per class "
                    f"({', '.join(classes)})"
                )

    @property
    def draw_seed(self) -> int:
        """The seed of the tiles drawn and of the train/val split."""
        return self.seed if self.split_seed is None else self.split_seed

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (paths and enums as strings), e.g. for a checkpoint."""
        return _plain_fields(self)


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig(FinetuneOptions):
    """Everything `cloudkit finetune` needs; one field per CLI option.

    ``init`` is ``"random"`` or the path of a pretraining checkpoint (``last.pt`` of
    `cloudkit pretrain`); ``fraction`` is the share in (0, 1] of the labelled tiles used (drawn
    stratified on the cloudiness bins, then split into train and val the same way).
    """

    stores: tuple[Path, ...]
    out: Path
    init: str = RANDOM_INIT
    fraction: float = 1.0
    resume: bool = False  # continue the run in `out` from its last.pt

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "stores", tuple(Path(s) for s in self.stores))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "init", str(self.init))

    def validate(self) -> None:
        if not self.stores:
            raise OptionError("give at least one labelled tile store (made by `cloudkit tile`)")
        if not 0.0 < self.fraction <= 1.0:
            raise OptionError(
                f"--fraction must be in (0, 1] (a share of the labelled tiles, e.g. 0.25), "
                f"got {self.fraction}"
            )
        super().validate()

    def resolved(self, *, tile_size: int, device_type: str) -> FinetuneConfig:
        """Fills ``crop`` from the tile size and ``amp`` from the device (bf16 on CUDA only)."""
        self.validate()
        changes: dict[str, Any] = {}
        if self.crop is None:
            changes["crop"] = min(FINETUNE_DEFAULT_MAX_CROP, tile_size)
        on_gpu = device_type == "cuda"
        changes["amp"] = bool(self.amp if self.amp is not None else on_gpu) and on_gpu
        return replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig(FinetuneOptions):
    """`cloudkit experiment`: fine-tune every init x fraction, evaluate each on the test stores.

    ``fractions`` are percentages in (0, 100] (the paper's 1, 5, 10, 25, 50, 100).
    """

    stores: tuple[Path, ...]
    test_stores: tuple[Path, ...]
    out: Path
    inits: tuple[str, ...] = (RANDOM_INIT,)
    fractions: tuple[float, ...] = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "stores", tuple(Path(s) for s in self.stores))
        object.__setattr__(self, "test_stores", tuple(Path(s) for s in self.test_stores))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "inits", tuple(str(i) for i in self.inits))
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))

    def validate(self) -> None:
        if not self.stores:
            raise OptionError("give at least one labelled training store")
        if not self.test_stores:
            raise OptionError("give at least one labelled --test-store")
        if not self.inits:
            raise OptionError("--inits: give 'random' and/or pretraining checkpoints")
        bad = [f for f in self.fractions if not 0.0 < f <= 100.0]
        if not self.fractions or bad:
            raise OptionError(
                f"--fractions must be percentages in (0, 100], got {', '.join(map(str, bad))}"
            )
        for name, values in (("--fractions", self.fractions), ("--inits", self.inits)):
            repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
            if repeated:  # each would be one more identical row of the grid
                raise OptionError(f"{name} names {', '.join(map(str, repeated))} twice")
        super().validate()
