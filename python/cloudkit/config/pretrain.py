"""`cloudkit pretrain`: each method's defaults from the paper, and :class:`PretrainConfig`."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from cloudkit.config.choices import Arch, Device, Method, Views
from cloudkit.config.parsing import _check_signs, _check_training, _plain_fields
from cloudkit.errors import OptionError


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
