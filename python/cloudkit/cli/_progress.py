"""Rich progress displays of the scene pipeline: scenes, rows of the current scene, a rate."""

from __future__ import annotations

import sys
import time
from types import TracebackType

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from cloudkit.errors import ScenesFailedError
from cloudkit.pipeline.run import FAILED, SceneResult, Summary
from cloudkit.pipeline.run import Progress as PipelineProgress


class _SceneBars(PipelineProgress):
    """A bar over scenes and one over the rows of the scene at hand, both showing ``count``
    (tiles, windows) and ``rate`` rendered by ``rate_text``."""

    def __init__(self, unit: str, rate_text: str) -> None:
        self._console = Console(stderr=True)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(f"{{task.fields[count]}} {unit}, {rate_text}"),
            TimeElapsedColumn(),
            console=self._console,
            disable=not sys.stderr.isatty(),
        )
        self._scenes = self._bar.add_task("scenes", total=None, count=0, rate=0.0)
        self._rows: TaskID | None = None  # the current scene's bar
        self._count = 0
        self._t0 = time.perf_counter()

    def __enter__(self):
        self._bar.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._bar.__exit__(kind, error, trace)

    def scenes_found(self, count: int) -> None:
        self._bar.update(self._scenes, total=count)

    def scene_started(self, scene_id: str, tile_rows: int) -> None:
        if self._rows is not None:
            self._bar.remove_task(self._rows)
        self._rows = self._bar.add_task(scene_id[:48], total=tile_rows, count=0, rate=0.0)

    def _row(self, count: int, rate: float) -> None:
        self._count += count
        if self._rows is not None:  # rows come only between scene_started calls
            self._bar.update(self._rows, advance=1, count=self._count, rate=rate)
        self._bar.update(self._scenes, count=self._count, rate=rate)

    def _per_second(self, amount: float) -> float:
        return amount / max(time.perf_counter() - self._t0, 1e-9)

    def scene_finished(self, result: SceneResult) -> None:
        self._bar.update(self._scenes, advance=1)
        if result.status == FAILED:
            self._console.print(f"[red]failed[/red] {result.scene_id}: {result.error}")


class RichTileProgress(_SceneBars):
    """The tiler's display: tiles written and decoded MB/s."""

    def __init__(self) -> None:
        super().__init__("tiles", "{task.fields[rate]:.1f} MB/s")
        self._mb = 0.0

    def row_done(self, windows: int, megabytes: float) -> None:
        self._mb += megabytes
        self._row(windows, self._per_second(self._mb))


class RichPredictProgress(_SceneBars):
    """Prediction's display: windows predicted per second."""

    def __init__(self) -> None:
        super().__init__("windows", "{task.fields[rate]:.1f}/s")

    def row_done(self, windows: int, megabytes: float) -> None:
        self._row(windows, self._per_second(self._count + windows))


def report_failures(summary: Summary) -> None:
    """Each failed scene on stderr, then the run's one-line error (exit code 1)."""
    if not summary.failed:
        return
    for r in summary.failed:
        typer.echo(f"  failed: {r.scene_id}: {r.error}", err=True)
    total = len(summary.results)
    raise ScenesFailedError(f"{len(summary.failed)} of {total} scene(s) failed; see above")
