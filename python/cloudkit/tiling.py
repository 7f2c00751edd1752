"""`cloudkit tile`: stream scenes through the Rust kernels into a tile store.

Python decodes band windows (rasterio, several at once in threads, GIL released by GDAL) one
tile row ahead while Rust resamples, stacks, cuts, compresses and writes the current row.
Memory stays at a few tile rows of DN whatever the scene size.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cloudkit import kernels
from cloudkit.errors import CloudkitError, TileShapeError
from cloudkit.io.grid import GridPlan, plan_grid
from cloudkit.io.scene import Scene
from cloudkit.io.scene_rows import SceneRows
from cloudkit.io.store import (
    SceneRecord,
    StoreLayout,
    TileRecord,
    TileStore,
    dn_shift_for,
)


@dataclass(frozen=True)
class TileOptions:
    resolution: float | None = None
    bands: tuple[str, ...] | None = None
    tile_size: int = 384
    overlap: int = 0
    workers: int | None = None


@dataclass
class SceneResult:
    scene_id: str
    status: str  # "tiled", "skipped" (already in the store) or "failed"
    tiles: int = 0
    seconds: float = 0.0
    megabytes: float = 0.0  # decoded DN volume
    error: str | None = None


@dataclass
class TileSummary:
    results: list[SceneResult] = field(default_factory=list)

    @property
    def failed(self) -> list[SceneResult]:
        return [r for r in self.results if r.status == "failed"]


class Progress:
    """What the tiler reports while it works; the CLI renders it with rich."""

    def scene_started(self, scene_id: str, tile_rows: int) -> None: ...

    def row_done(self, tiles: int, megabytes: float) -> None: ...

    def scene_finished(self, result: SceneResult) -> None: ...


def tile_scenes(
    scenes: Iterable[Scene],
    out: Path,
    options: TileOptions,
    progress: Progress | None = None,
    *,
    stop_on_error: bool = True,
) -> TileSummary:
    """Tile every scene into the store at ``out``; scenes already committed are skipped.

    With ``stop_on_error`` the first bad scene raises (earlier scenes stay committed);
    otherwise failures are recorded in the summary and the next scene goes on.
    """
    _check_tile_options(options)
    progress = progress or Progress()
    summary = TileSummary()
    store: TileStore | None = None
    try:
        for scene in scenes:
            try:
                plan = plan_grid(scene, resolution=options.resolution, bands=options.bands)
                if store is None:
                    store = TileStore.open(out, _layout_of(plan, options))
                    done = set(store.scene_ids())
                if scene.scene_id in done:
                    result = SceneResult(scene.scene_id, "skipped")
                else:
                    result = tile_scene(plan, store, options, progress)
                    done.add(scene.scene_id)
            except CloudkitError as err:
                if stop_on_error:
                    raise
                result = SceneResult(scene.scene_id, "failed", error=str(err))
            summary.results.append(result)
            progress.scene_finished(result)
    finally:
        if store is not None:
            store.close()
    return summary


def tile_scene(
    plan: GridPlan, store: TileStore, options: TileOptions, progress: Progress
) -> SceneResult:
    """Stream one planned scene into the store and commit it."""
    started = time.perf_counter()
    scene = plan.scene
    t, overlap = options.tile_size, options.overlap
    origins = kernels.tile_windows(plan.height, plan.width, t, overlap)
    row_origins = sorted({r for r, _ in origins})
    with_labels = plan.label is not None
    start = store.begin_scene(scene.scene_id, len(origins), with_labels=with_labels)
    add_offset = tuple(scene.offset_of(b) for b in plan.bands)
    writer = kernels.TileWriter(
        str(store.path),
        start,
        plan.height,
        plan.width,
        list(plan.factors),
        list(dn_shift_for(add_offset)),
        t,
        overlap,
        label_factor=plan.label_factor if with_labels else None,
        threads=options.workers,
    )
    progress.scene_started(scene.scene_id, len(row_origins))
    records: list[TileRecord] = []
    megabytes = 0.0
    workers = options.workers or _default_workers()
    try:
        with SceneRows(plan, workers=workers, with_labels=with_labels) as scene_rows:
            for y0 in row_origins:
                bands, labels = scene_rows.read(y0, min(t, plan.height - y0))
                written = writer.write_row(y0, bands, labels)
                records.extend(TileRecord(*w) for w in written)
                row_mb = sum(b.nbytes for b in bands) / 1e6
                megabytes += row_mb
                progress.row_done(len(written), row_mb)
    except BaseException:
        store.abort_scene()  # drop the partial rows now, so the next scene starts clean
        raise
    store.commit_scene(_record_of(plan, add_offset), records)
    return SceneResult(
        scene.scene_id,
        "tiled",
        tiles=len(records),
        seconds=time.perf_counter() - started,
        megabytes=megabytes,
    )


def _layout_of(plan: GridPlan, options: TileOptions) -> StoreLayout:
    return StoreLayout(
        tuple(plan.bands), options.tile_size, options.overlap, float(plan.resolution)
    )


def _record_of(plan: GridPlan, add_offset: tuple[int, ...]) -> SceneRecord:
    scene = plan.scene
    return SceneRecord(
        scene_id=scene.scene_id,
        path=str(scene.path),
        layout=scene.layout,
        crs_wkt=plan.crs.to_wkt(),
        transform=tuple(float(v) for v in plan.transform[:6]),
        height=plan.height,
        width=plan.width,
        add_offset=add_offset,
        dn_shift=dn_shift_for(add_offset),
        processing_baseline=scene.processing_baseline or "",
        label_kind=plan.label.kind if plan.label is not None else "",
    )


def _check_tile_options(options: TileOptions) -> None:
    t, o = options.tile_size, options.overlap
    if t < 16 or t > 4096:
        raise TileShapeError(
            f"--tile-size {t} is out of range; expected 16..4096 (384 is the default)"
        )
    if o < 0 or o >= t:
        raise TileShapeError(f"--overlap {o} must be at least 0 and smaller than --tile-size {t}")
    if options.workers is not None and options.workers < 1:
        raise TileShapeError(f"--workers {options.workers} must be at least 1")


def _default_workers() -> int:
    env = os.environ.get("CLOUDKIT_NUM_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, len(os.sched_getaffinity(0)))


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
