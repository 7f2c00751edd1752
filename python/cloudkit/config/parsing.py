"""Option values parsed from their CLI text, and the checks every training config shares:
signs, batch size, workers per core, learning rate."""

from __future__ import annotations

import enum
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cloudkit.errors import OptionError


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
