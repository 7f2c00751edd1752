"""A rich progress display for the tiler: scenes, tiles and decode throughput."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cloudkit.tiling import Progress as TileProgress
from cloudkit.tiling import SceneResult


class RichProgress(TileProgress):
    def __init__(self, total_scenes: int) -> None:
        self._console = Console(stderr=True)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[tiles]} tiles, {task.fields[rate]:.1f} MB/s"),
            TimeElapsedColumn(),
            console=self._console,
            disable=not sys.stderr.isatty(),
        )
        self._scenes = self._bar.add_task("scenes", total=total_scenes, tiles=0, rate=0.0)
        self._rows = None
        self._tiles = 0
        self._mb = 0.0
        self._t0 = time.perf_counter()

    def __enter__(self) -> RichProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

    def scene_started(self, scene_id: str, tile_rows: int) -> None:
        if self._rows is not None:
            self._bar.remove_task(self._rows)
        self._rows = self._bar.add_task(scene_id[:48], total=tile_rows, tiles=0, rate=0.0)

    def row_done(self, tiles: int, megabytes: float) -> None:
        self._tiles += tiles
        self._mb += megabytes
        rate = self._mb / max(time.perf_counter() - self._t0, 1e-9)
        self._bar.update(self._rows, advance=1, tiles=self._tiles, rate=rate)
        self._bar.update(self._scenes, tiles=self._tiles, rate=rate)

    def scene_finished(self, result: SceneResult) -> None:
        self._bar.update(self._scenes, advance=1)
        if result.status == "failed":
            self._console.print(f"[red]failed[/red] {result.scene_id}: {result.error}")


class RichPredictProgress:
    """Scenes and tile rows of windows predicted, with the window rate."""

    def __init__(self, total_scenes: int) -> None:
        self._console = Console(stderr=True)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[windows]} windows, {task.fields[rate]:.1f}/s"),
            TimeElapsedColumn(),
            console=self._console,
            disable=not sys.stderr.isatty(),
        )
        self._scenes = self._bar.add_task("scenes", total=total_scenes, windows=0, rate=0.0)
        self._rows = None
        self._windows = 0
        self._t0 = time.perf_counter()

    def __enter__(self) -> RichPredictProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

    def scene_started(self, scene_id: str, tile_rows: int) -> None:
        if self._rows is not None:
            self._bar.remove_task(self._rows)
        self._rows = self._bar.add_task(scene_id[:48], total=tile_rows, windows=0, rate=0.0)

    def row_done(self, windows: int) -> None:
        self._windows += windows
        rate = self._windows / max(time.perf_counter() - self._t0, 1e-9)
        self._bar.update(self._rows, advance=1, windows=self._windows, rate=rate)
        self._bar.update(self._scenes, windows=self._windows, rate=rate)

    def scene_finished(self, result) -> None:
        self._bar.update(self._scenes, advance=1)
        if result.status == "failed":
            self._console.print(f"[red]failed[/red] {result.scene_id}: {result.error}")
