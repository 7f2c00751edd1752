"""`cloudkit tile`: stream scenes through the Rust kernels into a tile store.

Python decodes band windows (rasterio, several at once in threads, GIL released by GDAL) one
tile row ahead while Rust resamples, stacks, cuts, compresses and writes the current row.
Memory stays at a few tile rows of DN whatever the scene size.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from cloudkit import _core
from cloudkit.errors import CloudkitError, InvalidSceneError, TileShapeError
from cloudkit.io.grid import GridPlan, plan_grid
from cloudkit.io.scene import Scene
from cloudkit.io.store import (
    SceneRecord,
    StoreLayout,
    TileRecord,
    TileStore,
    dn_shift_for,
)

#: GDAL's block cache must hold one row of JPEG 2000 tiles of every band, or windows that cut
#: a JP2 tile row would decode it again for each tile row of ours.
GDAL_CACHE_MB = 1024


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
    origins = _core.tile_windows(plan.height, plan.width, t, overlap)
    row_origins = sorted({r for r, _ in origins})
    with_labels = plan.label is not None
    start = store.begin_scene(scene.scene_id, len(origins), with_labels=with_labels)
    add_offset = tuple(scene.offset_of(b) for b in plan.bands)
    writer = _core.TileWriter(
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
    try:
        with _BandReader(plan, t, workers=options.workers) as reader:
            for y0, (bands, labels) in reader.rows(row_origins):
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


class _BandReader:
    """Reads the native-resolution windows of every band for one tile row at a time.

    Each band file has its own dataset handle, used by one thread at a time; the reads of
    the next tile row are submitted before the current row is handed to Rust.
    """

    def __init__(self, plan: GridPlan, tile_size: int, *, workers: int | None) -> None:
        self._plan = plan
        self._tile = tile_size
        self._workers = workers or _default_workers()
        self._stack = ExitStack()

    def __enter__(self) -> _BandReader:
        self._stack.enter_context(
            rasterio.Env(
                GDAL_CACHEMAX=GDAL_CACHE_MB,
                GDAL_NUM_THREADS=1,
                GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
            )
        )
        self._datasets = [self._open(s.path) for s in self._plan.sources]
        self._label = self._open(self._plan.label.path) if self._plan.label is not None else None
        self._pool = self._stack.enter_context(ThreadPoolExecutor(max_workers=self._workers))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open(self, path: Path):
        try:
            return self._stack.enter_context(rasterio.open(path))
        except rasterio.errors.RasterioIOError as err:
            raise InvalidSceneError(f"{path}: cannot open raster ({_first_line(err)})") from err

    def rows(self, row_origins: Sequence[int]):
        """Yield (y0, (band arrays, label array or None)) for every tile row, reading ahead."""
        pending = self._submit(row_origins[0]) if row_origins else None
        for i, y0 in enumerate(row_origins):
            current = pending
            pending = self._submit(row_origins[i + 1]) if i + 1 < len(row_origins) else None
            yield y0, self._collect(current)

    def _submit(self, y0: int) -> tuple[list[Future], Future | None]:
        plan, rows = self._plan, min(self._tile, self._plan.height - y0)
        # biggest windows first so the two decoders finish together
        order = sorted(
            range(len(self._datasets)),
            key=lambda i: -self._datasets[i].width * abs(plan.factors[i]),
        )
        futures: list[Future | None] = [None] * len(order)
        for i in order:
            src = plan.sources[i]
            futures[i] = self._pool.submit(
                self._read, self._datasets[i], src.index, src.path, y0, rows, plan.factors[i]
            )
        label = None
        if self._label is not None:
            lab = plan.label
            label = self._pool.submit(
                self._read_label,
                self._label,
                lab.index,
                lab.path,
                lab.lut,
                y0,
                rows,
                plan.label_factor,
            )
        return futures, label  # type: ignore[return-value]

    @staticmethod
    def _collect(pending: tuple[list[Future], Future | None]):
        futures, label = pending
        return [f.result() for f in futures], (label.result() if label is not None else None)

    @staticmethod
    def _read(ds, index: int, path: Path, y0: int, rows: int, factor: int) -> np.ndarray:
        row0, nrows = _core.band_window(y0, rows, factor, ds.height)
        try:
            data = ds.read(index, window=Window(0, row0, ds.width, nrows))
        except rasterio.errors.RasterioIOError as err:
            raise InvalidSceneError(
                f"{path}: cannot decode rows {row0}-{row0 + nrows} ({_first_line(err)})"
            ) from err
        if data.dtype != np.uint16:
            if (
                not np.issubdtype(data.dtype, np.integer)
                or data.min(initial=0) < 0
                or data.max(initial=0) > 65535
            ):
                raise InvalidSceneError(
                    f"{path}: band {index} is {data.dtype}, expected uint16 digital numbers"
                )
            data = data.astype(np.uint16)
        return np.ascontiguousarray(data)

    @staticmethod
    def _read_label(ds, index, path, lut, y0, rows, factor) -> np.ndarray:
        row0, nrows = _core.band_window(y0, rows, factor, ds.height)
        try:
            data = ds.read(index, window=Window(0, row0, ds.width, nrows))
        except rasterio.errors.RasterioIOError as err:
            raise InvalidSceneError(
                f"{path}: cannot decode label rows ({_first_line(err)})"
            ) from err
        if data.dtype != np.uint8:
            data = np.clip(data, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(lut[data])


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
