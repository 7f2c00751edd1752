"""`cloudkit predict`: whole scenes to georeferenced cloud masks, streamed window by window.

Each scene goes through the tiler's path: the same readers and grid plan, the same decoding
lanes (`SceneRows`) and the same Rust cut of a tile row (`kernels.cut_stripe`, which the tile
store's writer uses too), and the same store-value-to-reflectance conversion as `TileDataset`.
So a window here and the tile of a store at the same place reach the network as the same
numbers. Windows are predicted in batches, blended where they overlap (`blend.py`) and the
finished rows streamed to disk (`output.py`); a scene is never held whole.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cloudkit import __version__, kernels
from cloudkit.errors import BandMismatchError, CloudkitError, TileShapeError
from cloudkit.io.discover import discover_scenes
from cloudkit.io.grid import GridPlan, plan_grid
from cloudkit.io.scene import Scene
from cloudkit.io.scene_rows import SceneRows
from cloudkit.io.store import QUANTIFICATION, STORE_ADD_OFFSET, dn_shift_for
from cloudkit.predict.blend import BlendedRows, RowBlender
from cloudkit.predict.model import ModelInfo, Predictor
from cloudkit.predict.output import MaskWriter, OutputPaths, is_complete, output_paths

#: Class code of pixels outside the swath (some band has no data) in the mask.
NODATA = 255
#: Class names counted as cloud / as shadow in the summary.
CLOUD_CLASSES = ("cloud", "thick cloud", "thin cloud")
SHADOW_CLASSES = ("shadow", "cloud shadow")
_RGB = ("B04", "B03", "B02")
#: The blend only has to cover the margin where a window's border shows in its predictions;
#: more overlap buys nothing visible and costs windows (384 px windows overlapping by 64 px
#: run 1.5x the scene's pixels through the network, by 32 px 1.25x).
MAX_DEFAULT_OVERLAP = 32


@dataclass(frozen=True)
class PredictOptions:
    resolution: float | None = None
    window: int | None = None  # default: the checkpoint's training tile size
    overlap: int | None = None  # default: a sixth of the window, at most MAX_DEFAULT_OVERLAP
    batch_size: int = 8
    workers: int | None = None
    probabilities: bool = False
    quicklook: bool = False
    overwrite: bool = False

    def window_for(self, info: ModelInfo) -> tuple[int, int]:
        window = self.window or info.tile_size
        overlap = self.overlap if self.overlap is not None else default_overlap(window)
        return window, overlap


def default_overlap(window: int) -> int:
    """A sixth of the window, in whole 8 px steps, at most MAX_DEFAULT_OVERLAP."""
    return min(MAX_DEFAULT_OVERLAP, (window // 6) // 8 * 8)


@dataclass
class SceneResult:
    scene_id: str
    status: str  # "predicted", "skipped" (outputs exist) or "failed"
    seconds: float = 0.0
    windows: int = 0
    outputs: OutputPaths | None = None
    summary: dict | None = None
    error: str | None = None


@dataclass
class PredictSummary:
    results: list[SceneResult] = field(default_factory=list)

    @property
    def failed(self) -> list[SceneResult]:
        return [r for r in self.results if r.status == "failed"]


class Progress:
    """What prediction reports while it works; the CLI renders it with rich."""

    def scene_started(self, scene_id: str, tile_rows: int) -> None: ...

    def row_done(self, windows: int) -> None: ...

    def scene_finished(self, result: SceneResult) -> None: ...


class Timings:
    """Wall seconds per stage of a scene, accumulated with ``with timings.stage("read"):``."""

    STAGES = ("read", "preprocess", "model", "write")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.STAGES, 0.0)

    @contextmanager
    def stage(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started


def check_options(options: PredictOptions) -> None:
    if options.batch_size < 1:
        raise TileShapeError(f"--batch-size {options.batch_size} must be at least 1")
    if options.window is not None and not 32 <= options.window <= 4096:
        raise TileShapeError(f"--window {options.window} is out of range; expected 32..4096")
    if options.overlap is not None and options.overlap < 0:
        raise TileShapeError(f"--overlap {options.overlap} must be at least 0")
    if options.workers is not None and options.workers < 1:
        raise TileShapeError(f"--workers {options.workers} must be at least 1")


def check_window(window: int, overlap: int) -> None:
    if 2 * overlap > window:
        raise TileShapeError(
            f"--overlap {overlap} must be at most half of the window ({window} px); the "
            "blending ramps of two neighbours may not cross"
        )


def predict_paths(
    paths: Sequence[Path],
    predictor: Predictor,
    out_dir: Path,
    options: PredictOptions,
    progress: Progress | None = None,
) -> PredictSummary:
    """Predict every scene found under ``paths``; a path or scene that fails is reported in
    the summary and the next one goes on."""
    check_options(options)
    check_window(*options.window_for(predictor.info))
    summary = PredictSummary()
    scenes: list[Scene] = []
    for path in paths:
        try:
            scenes.extend(discover_scenes([Path(path)]))
        except CloudkitError as err:
            summary.results.append(SceneResult(str(path), "failed", error=str(err)))
    predicted = predict_scenes(scenes, predictor, out_dir, options, progress)
    summary.results.extend(predicted.results)
    return summary


def predict_scenes(
    scenes: Iterable[Scene],
    predictor: Predictor,
    out_dir: Path,
    options: PredictOptions,
    progress: Progress | None = None,
) -> PredictSummary:
    check_options(options)
    check_window(*options.window_for(predictor.info))
    progress = progress or Progress()
    summary = PredictSummary()
    for scene in scenes:
        try:
            if not options.overwrite and is_complete(Path(out_dir), scene.scene_id):
                result = SceneResult(
                    scene.scene_id, "skipped", outputs=output_paths(Path(out_dir), scene.scene_id)
                )
            else:
                plan = plan_for(scene, predictor.info, options.resolution)
                result = predict_scene(plan, predictor, Path(out_dir), options, progress)
        except CloudkitError as err:
            result = SceneResult(scene.scene_id, "failed", error=str(err))
        summary.results.append(result)
        progress.scene_finished(result)
    return summary


def plan_for(scene: Scene, info: ModelInfo, resolution: float | None) -> GridPlan:
    """The scene's grid plan for the model's bands, or an error that says what would work."""
    have = set(scene.bands) | set(scene.missing)
    lacking = [b for b in info.bands if b not in have]
    if lacking:
        raise BandMismatchError(_lacking_bands_message(scene, info, lacking, have))
    return plan_grid(scene, resolution=resolution, bands=info.bands)


def _lacking_bands_message(scene: Scene, info: ModelInfo, lacking: list[str], have) -> str:
    needs = f"{scene.scene_id}: the model ({len(info.bands)} bands) needs {', '.join(lacking)}"
    if "B10" in lacking and scene.layout == "l2a-safe":
        return (
            f"{needs}; L2A products have no B10 (cirrus: Sen2Cor drops it). Predict the "
            "matching L1C product, or fine-tune a model without B10 (tile L2A with "
            "--bands B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B11,B12)"
        )
    ordered = sorted(have)
    return f"{needs}, which this {scene.layout} scene lacks; it has {', '.join(ordered)}"


def predict_scene(
    plan: GridPlan,
    predictor: Predictor,
    out_dir: Path,
    options: PredictOptions,
    progress: Progress,
) -> SceneResult:
    """Predict one planned scene and write its outputs (atomically, the summary last)."""
    started = time.perf_counter()
    info = predictor.info
    window, overlap = options.window_for(info)
    check_window(window, overlap)
    scene, height, width = plan.scene, plan.height, plan.width
    shifts = list(dn_shift_for(tuple(scene.offset_of(b) for b in plan.bands)))
    cols_of_row: dict[int, list[int]] = {}
    for row, col in kernels.tile_windows(height, width, window, overlap):
        cols_of_row.setdefault(row, []).append(col)  # cut_stripe's order: left to right
    row_origins = sorted(cols_of_row)
    rgb = (
        [plan.bands.index(b) for b in _RGB]
        if options.quicklook and all(b in plan.bands for b in _RGB)
        else None
    )
    blender = RowBlender(
        height, width, window, overlap, info.channels, pasted=len(rgb) if rgb else 0
    )
    workers = options.workers or _default_workers()
    timings, counts = Timings(), _ClassCounts(len(info.classes))
    progress.scene_started(scene.scene_id, len(row_origins))
    windows = 0
    writer = MaskWriter(
        out_dir,
        scene.scene_id,
        crs=plan.crs,
        transform=plan.transform,
        height=height,
        width=width,
        classes=info.classes,
        probabilities=options.probabilities,
        quicklook=options.quicklook,
        threads=workers,
    )
    with writer, SceneRows(plan, workers=workers) as scene_rows:
        for y0 in row_origins:
            with timings.stage("read"):
                bands, _ = scene_rows.read(y0, min(window, height - y0))
            with timings.stage("preprocess"):
                images, valid, _, valid_fraction, _ = kernels.cut_stripe(
                    y0, bands, list(plan.factors), height, width, window, overlap, shifts,
                    threads=workers,
                )  # fmt: skip
                del bands
                keep = np.flatnonzero(valid_fraction > 0)
            probs = _predict_windows(predictor, images, valid, keep, options.batch_size, timings)
            with timings.stage("write"):
                cols = [cols_of_row[y0][k] for k in keep]
                pasted = images[keep[:, None], rgb] if rgb else None
                for rows in blender.add_row(y0, cols, probs, valid[keep], pasted):
                    _write_rows(writer, rows, info, counts, options.probabilities)
            windows += len(keep)
            progress.row_done(len(keep))
        with timings.stage("write"):
            writer.build()  # compress, overviews: timed as writing
        seconds = time.perf_counter() - started
        summary = _summary(plan, info, options, window, overlap, predictor, windows, counts)
        summary["timings"] = _timing_summary(timings, seconds, windows)
        outputs = writer.finish(summary)
    seconds = time.perf_counter() - started
    return SceneResult(scene.scene_id, "predicted", seconds, windows, outputs, summary)


def _predict_windows(
    predictor: Predictor,
    images: np.ndarray,
    valid: np.ndarray,
    keep: np.ndarray,
    batch_size: int,
    timings: Timings,
) -> np.ndarray:
    n, t = len(keep), images.shape[-1]
    probs = np.empty((n, predictor.info.channels, t, t), dtype=np.float32)
    for start in range(0, n, batch_size):
        chosen = keep[start : start + batch_size]
        with timings.stage("preprocess"):
            x = predictor.inputs(images[chosen], valid[chosen])
        with timings.stage("model"):
            probs[start : start + len(chosen)] = predictor.probabilities(x)
    return probs


def _write_rows(
    writer: MaskWriter, rows: BlendedRows, info: ModelInfo, counts: _ClassCounts, with_probs: bool
) -> None:
    p = rows.probabilities
    if info.binary:
        classes = (p[0] > 0.5).astype(np.uint8)
        per_class = np.stack([1.0 - p[0], p[0]]) if with_probs else None
    else:
        classes = np.argmax(np.nan_to_num(p, nan=-1.0), axis=0).astype(np.uint8)
        per_class = p if with_probs else None
    classes[~rows.valid] = NODATA
    counts.add(classes)
    rgb = None
    if rows.pasted is not None:
        dn = rows.pasted
        scale, offset = (
            np.float32(1.0 / QUANTIFICATION),
            np.float32(STORE_ADD_OFFSET / QUANTIFICATION),
        )
        rgb = np.where(dn == 0, np.float32(0.0), dn.astype(np.float32) * scale + offset)
    writer.write_rows(rows.row0, classes, per_class, rgb)


class _ClassCounts:
    def __init__(self, num_classes: int) -> None:
        self.per_class = np.zeros(num_classes, dtype=np.int64)
        self.pixels = 0

    def add(self, classes: np.ndarray) -> None:
        counts = np.bincount(classes.ravel(), minlength=256)
        self.per_class += counts[: len(self.per_class)]
        self.pixels += classes.size

    @property
    def valid(self) -> int:
        return int(self.per_class.sum())


def _summary(
    plan: GridPlan,
    info: ModelInfo,
    options: PredictOptions,
    window: int,
    overlap: int,
    predictor: Predictor,
    windows: int,
    counts: _ClassCounts,
) -> dict:
    scene, valid = plan.scene, counts.valid

    def percent(names: Sequence[str]) -> float | None:
        chosen = [i for i, name in enumerate(info.classes) if name in names]
        if not chosen:
            return None
        return _pct(int(counts.per_class[chosen].sum()), valid)

    return {
        "scene": scene.scene_id,
        "source": str(scene.path),
        "layout": scene.layout,
        "product_type": scene.product_type,
        "processing_baseline": scene.processing_baseline,
        "grid": {
            "crs": plan.crs.to_string(),
            "transform": [float(v) for v in plan.transform[:6]],
            "height": plan.height,
            "width": plan.width,
            "resolution": float(plan.resolution),
        },
        "model": {
            "checkpoint": str(info.path),
            "task": info.task,
            "head": info.head,
            "bands": list(info.bands),
        },
        "classes": {str(i): name for i, name in enumerate(info.classes)},
        "nodata": NODATA,
        "valid_percent": _pct(valid, counts.pixels),
        "cloud_percent": percent(CLOUD_CLASSES),
        "shadow_percent": percent(SHADOW_CLASSES),
        "class_percent": {
            name: _pct(int(n), valid)
            for name, n in zip(info.classes, counts.per_class, strict=True)
        },
        "inference": {
            "window": window,
            "overlap": overlap,
            "windows": windows,
            "batch_size": options.batch_size,
            "device": str(predictor.device),
            "precision": predictor.precision,
            "compiled": predictor.compiled,
        },
        "cloudkit_version": __version__,
    }


def _timing_summary(timings: Timings, seconds: float, windows: int) -> dict:
    result = {f"{k}_s": round(v, 3) for k, v in timings.seconds.items()}
    result["total_s"] = round(seconds, 3)
    model = timings.seconds["model"]
    result["windows_per_s"] = round(windows / model, 2) if model > 0 else None
    return result


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 4) if whole else None


def _default_workers() -> int:
    from cloudkit.tiling import _default_workers as workers

    return workers()
