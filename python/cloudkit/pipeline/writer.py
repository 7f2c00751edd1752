"""The one class an output of the scene pipeline implements, and what it is handed per scene.

For every scene `run.run_scenes` calls :meth:`SceneWriter.plan`, asks
:meth:`SceneWriter.existing` whether the output holds the scene already (then it is skipped),
and otherwise :meth:`~SceneWriter.begin_scene`, :meth:`~SceneWriter.write_row` for each tile
row from top to bottom, and :meth:`~SceneWriter.commit_scene`. When anything fails or is
interrupted in between, :meth:`~SceneWriter.abort_scene` must leave nothing that looks
written. :meth:`~SceneWriter.close` ends the run.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from cloudkit.config import SceneOptions
from cloudkit.errors import InvalidSceneError
from cloudkit.io.grid import GridPlan
from cloudkit.io.scene import Scene
from cloudkit.io.store import QUANTIFICATION, dn_shift_for
from cloudkit.pipeline.windows import WindowGrid


class SceneTally:
    """What a scene took so far: windows written, decoded megabytes, seconds per stage."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.windows = 0
        self.megabytes = 0.0
        self.stages: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Adds the wall time of the block to ``stages[name]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] += time.perf_counter() - started

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def timings(self, names: Iterable[str] = ()) -> dict[str, float]:
        """Seconds per stage as a scene's summary gives them (``STAGE_s``; ``names`` first,
        listed even when they took none) and in all (``total_s``)."""
        seconds = {**dict.fromkeys(names, 0.0), **self.stages}
        result = {f"{name}_s": round(value, 3) for name, value in seconds.items()}
        result["total_s"] = round(self.elapsed(), 3)
        return result


@dataclass(frozen=True)
class SceneJob:
    """One scene on its way to an output."""

    plan: GridPlan
    windows: WindowGrid
    # added to every non-zero DN of each band: the store's values (io/store/'s convention)
    dn_shift: tuple[int, ...]
    tally: SceneTally = field(default_factory=SceneTally)

    @property
    def scene(self) -> Scene:
        return self.plan.scene


@dataclass(frozen=True)
class Written:
    """What an output made of a scene, for its :class:`~cloudkit.pipeline.run.SceneResult`."""

    outputs: Any  # where the scene went: the store's path, predict's OutputPaths
    summary: dict | None = None  # the output's own report of the scene
    status: str | None = None  # in place of the writer's `wrote`: another run wrote it first


class SceneWriter(ABC):
    """An output of the scene pipeline; see the module docstring for the order of calls."""

    #: status of a scene this output wrote ("tiled", "predicted")
    wrote: ClassVar[str]
    #: whether the pipeline decodes the plan's label file (when it has one) for write_row
    reads_labels: ClassVar[bool] = False
    options: SceneOptions

    @abstractmethod
    def plan(self, scene: Scene) -> GridPlan:
        """The grid to write ``scene`` on; a CloudkitError naming what is wrong if none."""

    @abstractmethod
    def existing(self, plan: GridPlan) -> Any | None:
        """Where the output holds this scene already (it is skipped then), else None."""

    @abstractmethod
    def window(self, plan: GridPlan) -> tuple[int, int]:
        """Window edge and overlap in pixels."""

    @abstractmethod
    def begin_scene(self, job: SceneJob) -> None:
        """Make room for the scene's windows; nothing of it counts as written yet."""

    @abstractmethod
    def write_row(self, row: int, bands: list[np.ndarray], labels: np.ndarray | None) -> int:
        """Write the windows of the tile row at ``row`` from each band's native DN rows (and
        label rows); returns how many windows were written. It may empty ``bands`` once it
        is done with them, to free the memory early."""

    @abstractmethod
    def commit_scene(self, job: SceneJob) -> Written:
        """Every row is written: make the scene part of the output, atomically."""

    @abstractmethod
    def abort_scene(self) -> None:
        """Undo a begun scene; harmless when nothing was begun."""

    def close(self) -> None:  # noqa: B027 - a hook; outputs without resources skip it
        """End of the run."""

    def __enter__(self) -> SceneWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def store_dn_shift(plan: GridPlan) -> tuple[int, ...]:
    """Per band, what turns the scene's DN into the store's values; products quantified
    otherwise than the store are refused, their reflectance would land at the wrong scale."""
    scene = plan.scene
    if not math.isclose(scene.quantification, QUANTIFICATION):
        raise InvalidSceneError(
            f"{scene.radiometry_file or scene.path}: quantification value "
            f"{scene.quantification:g}; cloudkit reads products quantified by "
            f"{QUANTIFICATION:g} only (every Sentinel-2 product so far)"
        )
    offsets = tuple(scene.offset_of(b) for b in plan.bands)
    absurd = [f"{b} {o}" for b, o in zip(plan.bands, offsets, strict=True) if abs(o) > MAX_OFFSET]
    if absurd:  # the DN would be clamped at the store's bounds: the source lost, silently
        raise InvalidSceneError(
            f"{scene.radiometry_file or scene.path}: radiometric offset {', '.join(absurd)}; "
            f"Sentinel-2 products hold 0 or -1000 (at most {MAX_OFFSET} either way is read)"
        )
    return dn_shift_for(offsets)


#: the largest radiometric offset read (Sentinel-2: 0 before baseline 04.00, -1000 since)
MAX_OFFSET = 2000
