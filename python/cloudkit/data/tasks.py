"""Segmentation tasks: which store label codes become which training classes.

A tile store keeps cloudkit's four codes (0 clear, 1 thick cloud, 2 thin cloud, 3 cloud
shadow) and 255 for no-data. A task folds them into the classes one model learns, through a
``uint8[256]`` lookup table that sends every code it does not know, no-data included, to
:data:`IGNORE`, so no-data is never scored as clear sky.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cloudkit.io.scene import (
    LABEL_CLEAR,
    LABEL_CLOUD_SHADOW,
    LABEL_THICK_CLOUD,
    LABEL_THIN_CLOUD,
)

#: Target value of pixels that count in no loss and no metric.
IGNORE = 255


@dataclass(frozen=True)
class Task:
    """One way of turning store codes into classes: ``lut[code]`` is the class index."""

    name: str
    classes: tuple[str, ...]
    binary: bool
    lut: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _task(name: str, classes: tuple[str, ...], mapping: dict[int, int]) -> Task:
    lut = np.full(256, IGNORE, dtype=np.uint8)
    for code, target in mapping.items():
        lut[code] = target
    lut.setflags(write=False)  # shared module data: nobody may edit it in place
    return Task(name=name, classes=classes, binary=len(classes) == 2, lut=lut)


CLEAR, THICK, THIN, SHADOW = LABEL_CLEAR, LABEL_THICK_CLOUD, LABEL_THIN_CLOUD, LABEL_CLOUD_SHADOW

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        # shadow is not cloud: a cloud mask leaves shadows to the "clear" class
        _task("cloud", ("clear", "cloud"), {CLEAR: 0, SHADOW: 0, THICK: 1, THIN: 1}),
        _task("shadow", ("no shadow", "shadow"), {CLEAR: 0, THICK: 0, THIN: 0, SHADOW: 1}),
        _task("joint", ("clear", "cloud or shadow"), {CLEAR: 0, THICK: 1, THIN: 1, SHADOW: 1}),
        _task(
            "multi",
            ("clear", "thick cloud", "thin cloud", "cloud shadow"),
            {CLEAR: 0, THICK: 1, THIN: 2, SHADOW: 3},
        ),
    )
}


def get_task(name: str) -> Task:
    """The task called ``name``; ValueError naming the known ones otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None


def task_targets(labels: Tensor, task: Task) -> Tensor:
    """(N, 1, H, W) uint8 store codes -> (N, H, W) int64 class indices, :data:`IGNORE` where
    the code is no-data (or any code the task does not define)."""
    if labels.ndim != 4 or labels.shape[1] != 1:
        raise ValueError(
            f"labels must be (N, 1, H, W) store codes, got shape {tuple(labels.shape)}"
        )
    if labels.dtype != torch.uint8:
        raise ValueError(f"labels must be uint8 store codes, got {labels.dtype}")
    lut = torch.from_numpy(task.lut.astype(np.int64)).to(labels.device)
    return lut[labels[:, 0].long()]


def multi_classes(probabilities: Tensor) -> Tensor:
    """(N, 4, H, W) probabilities of the ``multi`` classes -> (N, H, W) class indices.

    Cloud (thick or thin) where their summed probability is above one half, the likelier of
    the two; elsewhere cloud shadow where it is likelier than clear. Deciding cloud on the
    sum, as a cloud mask asks, keeps a pixel whose probability is split between thick and thin
    from going to clear (a plain argmax gives (0.4, 0.3, 0.3, 0) to clear).
    """
    p = probabilities
    cloud = p[:, THICK] + p[:, THIN] > 0.5
    cloud_class = torch.where(p[:, THICK] >= p[:, THIN], THICK, THIN)
    other = torch.where(p[:, SHADOW] > p[:, CLEAR], SHADOW, CLEAR)
    return torch.where(cloud, cloud_class, other)
