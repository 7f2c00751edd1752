"""Run configurations: plain dataclasses whose fields map 1:1 to the CLI options.

No torch here: the CLI imports this module to build its options and ``cloudkit --help`` must
stay fast. A field left at ``None`` means "the method's default" (from the paper, Gbodjo et al.
2026, and its reference code); :meth:`PretrainConfig.resolved` fills them in. The CLI takes
every option's default from these fields (``cli._options.defaults_from``), never a copy.
"""

from __future__ import annotations

import enum
import math
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from cloudkit.errors import OptionError, TileShapeError
from cloudkit.sun import SunAngles


class Method(str, enum.Enum):
    """Self-supervised pretraining method."""

    moco = "moco"
    deepcluster = "deepcluster"


class Views(str, enum.Enum):
    """How the two views of a training sample are made."""

    two_augmentations = "two-augmentations"  # two augmentations of the same tile
    cloudiness_pair = "cloudiness-pair"  # two tiles of the same cloudiness bin (needs labels)


class Device(str, enum.Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Arch(str, enum.Enum):
    """Encoder architecture (cloudkit.models.archs): torchvision networks, no pretrained
    weights."""

    resnet18 = "resnet18"  # the paper's and the default
    mobilenet_v3_large = "mobilenet_v3_large"  # light: about a quarter of ResNet-18's parameters
    efficientnet_b0 = "efficientnet_b0"
    regnet_y_400mf = "regnet_y_400mf"


class Shadows(str, enum.Enum):
    """Which cloud shadows a mask keeps (cloudkit.shadows)."""

    geometric = "geometric"  # only those a cloud of the scene (or beyond its edge) casts
    model = "model"  # every pixel the model calls shadow


class Decode(str, enum.Enum):
    """How JPEG 2000 bands that are averaged down are decoded (cloudkit.io.grid)."""

    full = "full"  # every pixel, then area-averaged: bit-exact
    reduced = "reduced"  # the codestream's coarser resolution levels: about a quarter the cost


@dataclass(frozen=True)
class MethodDefaults:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    momentum: float
    temperature: float
    warmup_epochs: int
    final_lr: float
    queue_size: int | None = None
    moco_momentum: float | None = None
    prototypes: tuple[int, ...] | None = None


#: Hyper-parameters of the paper's runs (Gbodjo et al. 2026 and its reference code).
METHOD_DEFAULTS: dict[Method, MethodDefaults] = {
    # MoCo v2: SGD, cosine schedule (no warm-up) down to 0
    Method.moco: MethodDefaults(
        epochs=100,
        batch_size=64,
        lr=0.03,
        weight_decay=1e-4,
        momentum=0.9,
        temperature=0.07,
        warmup_epochs=0,
        final_lr=0.0,
        queue_size=65536,
        moco_momentum=0.999,
    ),
    # DeepCluster v2: LARS, 11 linear warm-up epochs, then cosine down to 0.0006
    Method.deepcluster: MethodDefaults(
        epochs=100,
        batch_size=128,
        lr=0.6,
        weight_decay=1e-6,
        momentum=0.9,
        temperature=0.1,
        warmup_epochs=11,
        final_lr=0.0006,
        prototypes=(3000, 3000, 3000),
    ),
}

#: Largest view edge used when --crop is not given (the paper trains on 256 px patches).
DEFAULT_MAX_CROP = 256


def parse_int_list(value: str | None, *, option: str) -> tuple[int, ...] | None:
    """``"3000,3000"`` -> ``(3000, 3000)``; a readable error for anything else."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    try:
        numbers = tuple(int(p) for p in parts)
    except ValueError:
        numbers = ()
    if not numbers or min(numbers) < 1:
        raise OptionError(
            f"{option} {value!r}: expected positive whole numbers separated by commas, e.g. 3000,3000,3000"
        )
    return numbers


@dataclass(frozen=True)
class PretrainConfig:
    """Everything `cloudkit pretrain` needs; one field per CLI option."""

    stores: tuple[Path, ...]
    out: Path
    method: Method = Method.moco
    epochs: int | None = None
    batch_size: int | None = None  # per process (per GPU under torchrun)
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None  # SGD / LARS momentum
    queue_size: int | None = None  # MoCo only
    moco_momentum: float | None = None  # MoCo only: EMA of the key encoder
    temperature: float | None = None
    prototypes: tuple[int, ...] | None = None  # DeepCluster only: prototypes per head
    warmup_epochs: int | None = None
    final_lr: float | None = None
    views: Views = Views.two_augmentations
    crop: int | None = None  # view edge in pixels; default min(256, tile size)
    # an encoder of the 13 band slots; each view keeps its own random band subset
    any_bands: bool = False
    arch: Arch = Arch.resnet18  # the encoder's architecture
    min_valid: float = 0.5
    workers: int | None = None  # DataLoader worker processes (per process)
    seed: int = 0
    resume: bool = False  # continue the run in `out` from its last.pt
    device: Device = Device.auto
    compile: bool | None = None  # default: on with CUDA, off on CPU
    amp: bool | None = None  # bf16 autocast; default: on with CUDA, off on CPU

    def __post_init__(self) -> None:
        # accept lists and strings from Python callers; keep the dataclass hashable
        object.__setattr__(self, "stores", tuple(Path(s) for s in self.stores))
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "method", Method(self.method))
        object.__setattr__(self, "views", Views(self.views))
        object.__setattr__(self, "arch", Arch(self.arch))
        object.__setattr__(self, "device", Device(self.device))
        if self.prototypes is not None:
            object.__setattr__(self, "prototypes", tuple(int(p) for p in self.prototypes))

    def validate(self) -> None:
        """Checks that need no data; raises OptionError naming the option."""
        if not self.stores:
            raise OptionError("give at least one tile store (made by `cloudkit tile`)")
        moco_only = {"queue_size": "--queue-size", "moco_momentum": "--moco-momentum"}
        deepcluster_only = {"prototypes": "--prototypes"}
        other = moco_only if self.method is Method.deepcluster else deepcluster_only
        for name, flag in other.items():
            if getattr(self, name) is not None:
                raise OptionError(
                    f"{flag} applies to --method "
                    f"{'moco' if self.method is Method.deepcluster else 'deepcluster'} only, "
                    f"not {self.method.value}"
                )
        if self.views is Views.cloudiness_pair and self.method is not Method.deepcluster:
            raise OptionError(
                "--views cloudiness-pair is for --method deepcluster (MoCo views are two "
                "augmentations of one tile)"
            )
        positive = {
            "epochs": "--epochs",
            "batch_size": "--batch-size",
            "lr": "--lr",
            "queue_size": "--queue-size",
            "temperature": "--temperature",
            "crop": "--crop",
        }
        non_negative = {
            "weight_decay": "--weight-decay",
            "momentum": "--momentum",
            "warmup_epochs": "--warmup-epochs",
            "final_lr": "--final-lr",
            "workers": "--workers",
        }
        _check_signs(self, positive=positive, non_negative=non_negative)
        _check_training(self.batch_size, self.workers, self.lr)
        if self.moco_momentum is not None and not 0.0 <= self.moco_momentum < 1.0:
            raise OptionError(f"--moco-momentum must be in [0, 1), got {self.moco_momentum}")
        if self.momentum is not None and self.momentum >= 1.0:
            raise OptionError(f"--momentum must be below 1, got {self.momentum}")
        if not 0.0 <= self.min_valid <= 1.0:
            raise OptionError(f"--min-valid must be in [0, 1], got {self.min_valid}")
        if self.prototypes is not None and (not self.prototypes or min(self.prototypes) < 1):
            raise OptionError(f"--prototypes must be positive, got {self.prototypes}")

    def resolved(
        self, *, tile_size: int | None = None, device_type: str | None = None
    ) -> PretrainConfig:
        """A copy with every unset hyper-parameter replaced by the method's default.

        ``tile_size`` (of the data) resolves ``crop``; ``device_type`` ("cpu" / "cuda")
        resolves ``compile`` and ``amp``. Options of the other method stay ``None``.
        """
        self.validate()
        defaults = METHOD_DEFAULTS[self.method]
        changes: dict[str, Any] = {}
        for f in fields(MethodDefaults):
            if getattr(self, f.name) is None and getattr(defaults, f.name) is not None:
                changes[f.name] = getattr(defaults, f.name)
        if tile_size is not None and self.crop is None:
            changes["crop"] = min(DEFAULT_MAX_CROP, tile_size)
        if device_type is not None:
            on_gpu = device_type == "cuda"
            if self.compile is None:
                changes["compile"] = on_gpu
            if self.amp is None:
                changes["amp"] = on_gpu
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (paths and enums as strings), e.g. for a checkpoint."""
        return _plain_fields(self)


# ---------------------------------------------------------------------------------------------
# fine-tuning (segmentation) and the label-fraction experiment


class TaskName(str, enum.Enum):
    """What the segmentation model predicts (classes in cloudkit.data.tasks)."""

    cloud = "cloud"  # clear vs thick or thin cloud
    shadow = "shadow"  # no shadow vs cloud shadow
    joint = "joint"  # clear vs cloud or shadow
    multi = "multi"  # clear, thick cloud, thin cloud, cloud shadow


class Head(str, enum.Enum):
    """Segmentation head (cloudkit.models.segmentation)."""

    unet = "unet"  # U-Net decoder on the strided encoder: the efficient default
    light = "light"  # feature pyramid to 1/4, bilinear logits: fastest whole-scene prediction
    paper = "paper"  # every stride 1 + Conv3x3/InstanceNorm/Conv1x1 (the paper's; very slow)


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
    val_fraction: float = 0.2
    min_valid: float = 0.5
    seed: int = 0
    device: Device = Device.auto
    amp: bool | None = None  # bf16 autocast; default on with CUDA; never on CPU
    workers: int | None = None
    # a model for any product: the 13 band slots, stores of any bands, random band subsets
    any_bands: bool = False
    # the encoder's architecture; None: the --init checkpoint's, ResNet-18 from random weights
    arch: Arch | None = None
    # share of training crops that get synthetic clouds and shadows (data/training_crops.py)
    synthetic: float = 0.0
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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (paths and enums as strings), e.g. for a checkpoint."""
        return _plain_fields(self)


def _plain_fields(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in asdict(obj).items():
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[key] = value
    return out


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


def parse_resolutions(value: str | None) -> tuple[float, float] | None:
    """``"20,60"`` -> ``(20.0, 60.0)``; ``"20"`` -> ``(20.0, 20.0)``; None stays None."""
    if value is None:
        return None
    parts = [p.strip().removesuffix("m") for p in str(value).split(",") if p.strip()]
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        numbers = ()
    if len(numbers) not in (1, 2):
        raise OptionError(
            f"--resolutions {value!r}: expected one pixel size or a range in metres, e.g. 20,60"
        )
    return (numbers[0], numbers[-1])


def parse_class_weights(value: str) -> tuple[float, ...]:
    """``"1,1,2,3"`` -> ``(1.0, 1.0, 2.0, 3.0)`` (checked against the task by ``validate``)."""
    try:
        return tuple(float(p) for p in str(value).split(",") if p.strip())
    except ValueError:
        raise OptionError(
            f"--class-weights {value!r}: expected one number per class, e.g. 1,1,2,3"
        ) from None


def parse_fractions(value: str) -> tuple[float, ...]:
    """``"1,5,25,100"`` (percent of the labelled tiles) -> ``(1.0, 5.0, 25.0, 100.0)``."""
    parts = [p.strip().rstrip("%") for p in value.split(",") if p.strip()]
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        numbers = ()
    if not numbers or any(not 0.0 < n <= 100.0 for n in numbers):
        raise OptionError(
            f"--fractions {value!r}: expected percentages in (0, 100] separated by commas, "
            "e.g. 1,5,10,25,50,100"
        )
    return numbers


def parse_inits(value: str) -> tuple[str, ...]:
    """``"random,moco.pt"`` -> ``("random", "moco.pt")``."""
    parts = tuple(p.strip() for p in value.split(",") if p.strip())
    if not parts:
        raise OptionError(
            f"--inits {value!r}: expected 'random' and/or pretraining checkpoints separated by "
            "commas, e.g. random,runs/moco/last.pt"
        )
    return parts


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


# ---------------------------------------------------------------------------------------------
# the scene pipeline (cloudkit.pipeline): `cloudkit tile` and `cloudkit predict`


def default_threads() -> int:
    """Decoding lanes and threads without --workers: CLOUDKIT_NUM_THREADS, else every core
    this process may run on."""
    env = os.environ.get("CLOUDKIT_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True, kw_only=True)
class SceneOptions:
    """Options of every command that streams scenes; checked on construction."""

    resolution: float | None = None  # target pixel size; default: the finest band file's
    workers: int | None = None  # decoding lanes and kernel threads; default: default_threads()
    decode: Decode = Decode.full

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise OptionError(f"--workers {self.workers} must be at least 1")
        cores = len(os.sched_getaffinity(0))
        if self.workers is not None and self.workers > 4 * cores:  # beyond: a thread storm
            raise OptionError(
                f"--workers {self.workers}: more than 4 decoding lanes per core ({cores} cores "
                f"here); give at most {4 * cores}"
            )

    @property
    def threads(self) -> int:
        return self.workers or default_threads()


@dataclass(frozen=True, kw_only=True)
class TileOptions(SceneOptions):
    """`cloudkit tile`: one field per CLI option."""

    bands: tuple[str, ...] | None = None  # ESA names; default: every band of the scene
    tile_size: int = 384
    overlap: int = 0
    scl_labels: bool = False  # store L2A's scene classification as labels
    labels_from: str | None = None  # a peer model whose classes become the labels

    def validate(self) -> None:
        super().validate()
        if self.scl_labels and self.labels_from:
            raise OptionError(
                f"--labels-from {self.labels_from} and --scl-labels both say where the labels "
                "come from; pass one of them"
            )
        t, o = self.tile_size, self.overlap
        if t < 16 or t > 4096:
            raise TileShapeError(
                f"--tile-size {t} is out of range; expected 16..4096 (384 is the default)"
            )
        if o < 0 or o >= t:
            raise TileShapeError(
                f"--overlap {o} must be at least 0 and smaller than --tile-size {t}"
            )


#: The blend only has to cover the margin where a window's border shows in its predictions;
#: more overlap buys nothing visible and costs windows (384 px windows overlapping by 64 px
#: run 1.5x the scene's pixels through the network, by 32 px 1.25x).
MAX_DEFAULT_OVERLAP = 32


def default_overlap(window: int) -> int:
    """A sixth of the window, in whole 8 px steps, at most MAX_DEFAULT_OVERLAP."""
    return min(MAX_DEFAULT_OVERLAP, (window // 6) // 8 * 8)


@dataclass(frozen=True, kw_only=True)
class PredictOptions(SceneOptions):
    """`cloudkit predict`: one field per CLI option (the model and device aside)."""

    # a mask at 20 m does not need the 10 m bands' finest wavelet level (README: Performance)
    decode: Decode = Decode.reduced
    window: int | None = None  # default: the checkpoint's training tile size
    overlap: int | None = None  # default: default_overlap(window)
    batch_size: int = 8
    probabilities: bool = False
    quicklook: bool = False
    overwrite: bool = False
    shadows: Shadows = Shadows.geometric
    sun_angles: SunAngles | None = None  # --sun-angles: for every scene, instead of its own

    def validate(self) -> None:
        super().validate()
        if self.batch_size < 1:
            raise OptionError(f"--batch-size {self.batch_size} must be at least 1")
        if self.window is not None and not 32 <= self.window <= 4096:
            raise TileShapeError(f"--window {self.window} is out of range; expected 32..4096")
        if self.overlap is not None and self.overlap < 0:
            raise TileShapeError(f"--overlap {self.overlap} must be at least 0")

    def window_for(self, tile_size: int, overlap: int | None = None) -> tuple[int, int]:
        """Window edge and overlap for a model trained on ``tile_size`` tiles (made for
        windows overlapping by ``overlap``, when it says)."""
        window = self.window or tile_size
        if self.overlap is not None:
            overlap = self.overlap
        elif overlap is None:
            overlap = default_overlap(window)
        if 2 * overlap > window:
            raise TileShapeError(
                f"--overlap {overlap} must be at most half of the window ({window} px); the "
                "blending ramps of two neighbours may not cross"
            )
        return window, overlap


def _check_signs(cfg: object, *, positive: dict[str, str], non_negative: dict[str, str]) -> None:
    """Refuse options (field name -> CLI flag) that are set but out of sign; None means unset."""
    # written as "not ok" so that NaN, which compares false with everything, is refused too
    for name, flag in positive.items():
        value = getattr(cfg, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise OptionError(f"{flag} must be positive, got {value}")
    for name, flag in non_negative.items():
        value = getattr(cfg, name)
        if value is not None and not (value >= 0 and math.isfinite(value)):
            raise OptionError(f"{flag} must be >= 0, got {value}")


#: no optimiser here trains at a larger learning rate; beyond it float32 steps overflow
MAX_LR = 1000.0


def _check_training(batch_size: int | None, workers: int | None, lr: float | None) -> None:
    """Options of a training loop that pass the sign checks and still cannot train: batch
    norm needs two samples a step (a projection head's BatchNorm1d fails on one); DataLoader
    workers far beyond the cores this process may use only fork (a few per core can still
    hide slow storage); a learning rate past MAX_LR overflows the optimiser's step."""
    if batch_size is not None and batch_size < 2:
        raise OptionError(
            f"--batch-size {batch_size}: training needs at least 2 samples a step (batch norm)"
        )
    cores = len(os.sched_getaffinity(0))
    if workers is not None and workers > 4 * cores:
        raise OptionError(
            f"--workers {workers}: more than 4 DataLoader processes per core ({cores} cores "
            f"here); give at most {4 * cores}"
        )
    if lr is not None and lr > MAX_LR:
        raise OptionError(f"--lr {lr:g} is no learning rate; at most {MAX_LR:g}")
