"""The loop over scenes: discover, plan, skip or write each one, report.

Paths are discovered first, so a path that does not exist or holds no scene stops the run
before any scene is touched, with one line naming it. Then each scene is planned (a bad
scene or an option that does not fit always shows, even for a scene already written),
skipped when the output holds it, else streamed tile row by tile row into the writer. A
scene that fails is undone by its writer; the run stops there, or with ``keep_going``
records the failure and goes on with the next scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudkit.errors import CloudkitError
from cloudkit.io.discover import discover_scenes
from cloudkit.io.scene import Scene
from cloudkit.io.scene_rows import SceneRows
from cloudkit.pipeline.windows import WindowGrid
from cloudkit.pipeline.writer import SceneJob, SceneWriter, store_dn_shift

SKIPPED = "skipped"  # the output holds the scene already
FAILED = "failed"


@dataclass
class SceneResult:
    scene_id: str
    status: str  # the writer's `wrote` ("tiled", "predicted"), SKIPPED or FAILED
    seconds: float = 0.0
    windows: int = 0  # windows written: tiles of the store, windows predicted
    megabytes: float = 0.0  # decoded DN volume
    outputs: Any = None  # where the scene is: the store's path, predict's OutputPaths
    summary: dict | None = None  # the writer's own report of the scene
    error: str | None = None


@dataclass
class Summary:
    results: list[SceneResult] = field(default_factory=list)

    def with_status(self, status: str) -> list[SceneResult]:
        return [r for r in self.results if r.status == status]

    @property
    def failed(self) -> list[SceneResult]:
        return self.with_status(FAILED)


class Progress:
    """What the pipeline reports while it works; the CLI renders it with rich."""

    def scenes_found(self, count: int) -> None: ...

    def scene_started(self, scene_id: str, tile_rows: int) -> None: ...

    def row_done(self, windows: int, megabytes: float) -> None: ...

    def scene_finished(self, result: SceneResult) -> None: ...


def run_scenes(
    paths: Sequence[Path],
    writer: SceneWriter,
    progress: Progress | None = None,
    *,
    keep_going: bool = False,
    scl_labels: bool = False,
) -> Summary:
    """Every scene under ``paths`` through ``writer``; ``scl_labels`` offers L2A SCL labels."""
    scenes = discover_scenes([Path(p) for p in paths], scl_labels=scl_labels)
    progress = progress or Progress()
    progress.scenes_found(len(scenes))
    summary = Summary()
    with writer:
        for scene in scenes:
            result = run_scene(scene, writer, progress, keep_going=keep_going)
            summary.results.append(result)
            progress.scene_finished(result)
    return summary


def run_scene(
    scene: Scene, writer: SceneWriter, progress: Progress, *, keep_going: bool = True
) -> SceneResult:
    """One scene through an open ``writer``; with ``keep_going`` a scene's CloudkitError
    becomes its FAILED result (the cluster backend runs each scene through this)."""
    try:
        return _run_scene(scene, writer, progress)
    except CloudkitError as err:
        if not keep_going:
            raise
        return SceneResult(scene.scene_id, FAILED, error=str(err))


def _run_scene(scene: Scene, writer: SceneWriter, progress: Progress) -> SceneResult:
    plan = writer.plan(scene)
    existing = writer.existing(plan)
    if existing is not None:
        return SceneResult(scene.scene_id, SKIPPED, outputs=existing)
    window, overlap = writer.window(plan)
    windows = WindowGrid.of(plan.height, plan.width, window, overlap)
    job = SceneJob(plan, windows, store_dn_shift(plan))
    tally = job.tally
    with_labels = writer.reads_labels and plan.label is not None
    try:
        writer.begin_scene(job)
        progress.scene_started(scene.scene_id, len(job.windows.rows))
        threads = writer.options.threads
        with SceneRows(plan, workers=threads, with_labels=with_labels) as scene_rows:
            for row in job.windows.rows:
                with tally.stage("read"):
                    bands, labels = scene_rows.read(row, job.windows.row_height(row))
                megabytes = sum(b.nbytes for b in bands) / 1e6
                written = writer.write_row(row, bands, labels)
                del bands, labels  # the next row's decode needs the memory
                tally.windows += written
                tally.megabytes += megabytes
                progress.row_done(written, megabytes)
        done = writer.commit_scene(job)
    except BaseException:
        writer.abort_scene()  # nothing of the scene may look written
        raise
    return SceneResult(
        scene.scene_id,
        done.status or writer.wrote,
        seconds=tally.elapsed(),
        windows=tally.windows,
        megabytes=tally.megabytes,
        outputs=done.outputs,
        summary=done.summary,
    )
