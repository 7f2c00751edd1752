"""`cloudkit predict`: cloud masks as an output of the scene pipeline.

Each scene goes through the tiler's path (`cloudkit.pipeline`): the same readers and grid
plan, the same decoding lanes and the same Rust cut of a tile row (`_core.cut_stripe`, which
the tile store's writer uses too), and the same store-value-to-reflectance conversion as
`TileDataset`. So a window here and the tile of a store at the same place reach the network
as the same numbers. Windows are predicted in batches, blended where they overlap
(`blend.py`) and the finished rows streamed to disk (`output.py`); a scene is never held whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cloudkit import __version__, kernels
from cloudkit.config import PredictOptions
from cloudkit.data.tasks import multi_classes
from cloudkit.errors import InvalidSceneError
from cloudkit.io.grid import GridPlan, plan_grid
from cloudkit.io.location import is_url
from cloudkit.io.scene import Scene
from cloudkit.io.sun_metadata import plan_sun
from cloudkit.pipeline.run import Progress, Summary, run_scenes
from cloudkit.pipeline.writer import SceneJob, SceneTally, SceneWriter, Written
from cloudkit.predict.blend import BlendedRows, RowBlender
from cloudkit.predict.model import Predictor
from cloudkit.predict.output import MaskWriter, OutputPaths, output_paths
from cloudkit.predict.remote_outputs import RemoteOutputs
from cloudkit.predict.seal import damage
from cloudkit.predict.shadow_pass import GEOMETRIC, ShadowPass, sun_report

PREDICTED = "predicted"
#: Class code of pixels outside the swath (some band has no data) in the mask.
NODATA = 255
#: Class names counted as cloud / as shadow in the summary.
CLOUD_CLASSES = ("cloud", "thick cloud", "thin cloud")
SHADOW_CLASSES = ("shadow", "cloud shadow")
#: Stages of a scene's wall time in its summary ("read" is the pipeline's decoding).
STAGES = ("read", "preprocess", "model", "shadows", "write")
_RGB = ("B04", "B03", "B02")


def predict_paths(
    paths: Sequence[Path],
    predictor: Predictor,
    out_dir: Path | str,
    options: PredictOptions,
    progress: Progress | None = None,
) -> Summary:
    """Predict every scene found under ``paths``; a scene that fails is reported in the
    summary and the next one goes on."""
    writer = PredictionWriter(predictor, out_dir, options)
    return run_scenes(paths, writer, progress, keep_going=True)


class PredictionWriter(SceneWriter):
    """Per scene: windows through the model, blended into rows, written as a mask (and
    probabilities, quicklook) with a JSON summary, all atomically (`output.py`)."""

    wrote = PREDICTED
    options: PredictOptions

    def __init__(self, predictor: Predictor, out_dir: Path | str, options: PredictOptions) -> None:
        self.predictor = predictor
        # s3://: every scene is written in a local staging folder, then uploaded
        self._remote = RemoteOutputs(str(out_dir)) if is_url(out_dir) else None
        self.out_dir = self._remote.staging if self._remote else Path(out_dir)
        self.options = options
        self._window = options.window_for(predictor.info.tile_size, predictor.info.overlap)
        # the scene being written: set by begin_scene
        self._job: SceneJob | None = None
        self._masks: MaskWriter | None = None
        self._blender: RowBlender | None = None
        self._counts: _ClassCounts | None = None
        self._rgb: list[int] | None = None  # where B04, B03, B02 are, for the quicklook
        self._shadows: ShadowPass | None = None  # the geometric check of the scene's shadow
        self._damaged: dict[str, str] = {}  # scenes predicted again: what was wrong before
        self._shadow_check: dict = {}

    def plan(self, scene: Scene) -> GridPlan:
        """The scene's grid for the bands the model reads, or an error that says what would
        work."""
        bands = self.predictor.bands_for(scene)
        return plan_grid(
            scene,
            resolution=self.options.resolution,
            bands=bands,
            at_least=self.predictor.info.resolution,
            decode=self.options.decode,
        )

    def existing(self, plan: GridPlan) -> OutputPaths | None:
        scene_id = plan.scene.scene_id
        if self.options.overwrite:
            return None
        if self._remote is not None:
            text = self._remote.summary(scene_id)
            if text is None:
                return None  # never finished: the summary is uploaded last
            paths = self._remote.paths(scene_id)
            _check_same_product(text, paths.summary, plan)
            problem = self._remote.damage(scene_id, text)
        else:
            paths = output_paths(self.out_dir, scene_id)
            if not paths.summary.is_file():
                return None  # never finished: the summary is written last
            _check_same_product(_read(paths.summary), paths.summary, plan)
            problem = _local_damage(paths)
        if problem is not None:  # skipping would pass damaged outputs off as done
            self._damaged[scene_id] = problem
            return None
        return paths

    def window(self, plan: GridPlan) -> tuple[int, int]:
        return self._window

    def begin_scene(self, job: SceneJob) -> None:
        plan, info = job.plan, self.predictor.info
        quicklook = self.options.quicklook and all(b in plan.bands for b in _RGB)
        self._rgb = [plan.bands.index(b) for b in _RGB] if quicklook else None
        self._blender = RowBlender(
            plan.height,
            plan.width,
            job.windows.size,
            job.windows.overlap,
            info.channels,
            pasted=len(self._rgb) if self._rgb else 0,
        )
        self._counts = _ClassCounts(len(info.classes))
        self._job = job
        self._begin_shadow_check(plan)
        self._masks = MaskWriter(
            self.out_dir,
            plan.scene.scene_id,
            crs=plan.crs,
            transform=plan.transform,
            height=plan.height,
            width=plan.width,
            classes=info.classes,
            probabilities=self.options.probabilities,
            quicklook=self.options.quicklook,
            threads=self.options.threads,
            fallback=self._shadows is not None,
        )

    def _begin_shadow_check(self, plan: GridPlan) -> None:
        """The scene's sun angles, and its shadow check unless asked for the model's shadow
        or the model has no shadow class."""
        info, given = self.predictor.info, self.options.sun_angles
        self._shadows, self._shadow_check = None, {}
        if str(getattr(self.options.shadows, "value", self.options.shadows)) == GEOMETRIC:
            check = ShadowPass(plan, info.classes, info.task, given)
            if check.active:
                self._shadows = check
                return
            self._shadow_check = {"method": GEOMETRIC, "sun": sun_report(check.sun)}
            self._shadow_check["note"] = "the model has no shadow class: nothing to check"
            return
        sun, _ = plan_sun(plan, given)
        self._shadow_check = {"method": "model", "sun": sun_report(sun)}

    def write_row(self, row: int, bands: list[np.ndarray], labels: np.ndarray | None) -> int:
        job, blender = self._job, self._blender
        assert job is not None and blender is not None  # set by begin_scene
        windows = job.windows
        plan, tally = job.plan, job.tally
        with tally.stage("preprocess"):
            images, valid, _, valid_fraction, _ = kernels.cut_stripe(
                row, bands, list(plan.factors), plan.height, plan.width, windows.size,
                windows.overlap, list(job.dn_shift), threads=self.options.threads,
            )  # fmt: skip
            bands.clear()  # the decoded rows are cut: free them before the model runs
            keep = np.flatnonzero(valid_fraction > 0)
        probs = predict_windows(
            self.predictor, plan.bands, images, valid, keep, self.options.batch_size, tally
        )
        with tally.stage("write"):
            cols = [windows.columns[row][k] for k in keep]
            pasted = images[keep[:, None], self._rgb] if self._rgb else None
            for rows in blender.add_row(row, cols, probs, valid[keep], pasted):
                self._write_rows(rows)
        return len(keep)

    def commit_scene(self, job: SceneJob) -> Written:
        masks, counts = self._masks, self._counts
        assert masks is not None and counts is not None  # set by begin_scene
        if self._shadows is not None:
            with job.tally.stage("shadows"):
                self._shadows.decide()
                masks.rewrite_classes(self._shadows.apply)
                shadow = self._shadows.codes.shadow
                assert shadow is not None  # a check is kept only where there is a shadow class
                counts.move_shadow(shadow, self._shadows.changes)
                self._shadow_check = self._shadows.report()
            self._shadows = None
        with job.tally.stage("write"):
            masks.build()  # compress, overviews: timed as writing
        summary = _summary(job, self.predictor, self.options, counts)
        summary["shadow_check"] = self._shadow_check
        problem = self._damaged.pop(job.scene.scene_id, None)
        if problem is not None:
            summary["warnings"].append(
                f"its earlier outputs were damaged ({problem}): predicted again"
            )
        summary["timings"] = _timing_summary(job.tally)
        outputs = masks.finish(summary)
        self._masks = None
        if self._remote is not None:
            outputs = self._remote.publish(outputs)
        return Written(outputs, summary)

    def abort_scene(self) -> None:
        self._shadows = None
        if self._masks is not None:
            self._masks.abort()
            self._masks = None

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()

    def _write_rows(self, rows: BlendedRows) -> None:
        masks, counts = self._masks, self._counts
        assert masks is not None and counts is not None  # set by begin_scene
        info, p = self.predictor.info, rows.probabilities
        with_probs = self.options.probabilities
        if info.binary:
            classes = (p[0] > info.threshold).astype(np.uint8)
            per_class = np.stack([1.0 - p[0], p[0]]) if with_probs else None
        else:
            classes = mask_classes(info.task, np.nan_to_num(p, nan=0.0))
            per_class = p if with_probs else None
        classes[~rows.valid] = NODATA
        counts.add(classes)
        fallback = None
        if self._shadows is not None:
            fallback = self._shadows.add(rows.row0, classes, p, rows.valid)
        rgb = None
        if rows.pasted is not None:
            rgb = self.predictor.values_for(_RGB).reflectance(rows.pasted)
        masks.write_rows(rows.row0, classes, per_class, rgb, fallback)


def mask_classes(task: str, probabilities: np.ndarray) -> np.ndarray:
    """(K, H, W) probabilities -> (H, W) uint8 classes: the ``multi`` task's rule for a
    cloudkit model, a peer's own argmax for a peer."""
    if task == "multi":
        probs = torch.from_numpy(probabilities)[None]
        return multi_classes(probs)[0].numpy().astype(np.uint8)
    return np.argmax(probabilities, axis=0).astype(np.uint8)


def predict_windows(
    predictor: Predictor,
    bands: Sequence[str],
    images: np.ndarray,
    valid: np.ndarray,
    keep: np.ndarray,
    batch_size: int,
    tally: SceneTally,
) -> np.ndarray:
    """Probabilities ``(len(keep), channels, T, T)`` of the windows ``keep`` of ``images``
    (store values of ``bands``) in batches, timed in ``tally`` (preprocess, model)."""
    n, t = len(keep), images.shape[-1]
    probs = np.empty((n, predictor.info.channels, t, t), dtype=np.float32)
    for start in range(0, n, batch_size):
        chosen = keep[start : start + batch_size]
        with tally.stage("preprocess"):
            x = predictor.inputs(images[chosen], valid[chosen], bands)
        with tally.stage("model"):
            probs[start : start + len(chosen)] = predictor.probabilities(x)
    return probs


class _ClassCounts:
    def __init__(self, num_classes: int) -> None:
        self.per_class = np.zeros(num_classes, dtype=np.int64)
        self.pixels = 0

    def add(self, classes: np.ndarray) -> None:
        counts = np.bincount(classes.ravel(), minlength=256)
        self.per_class += counts[: len(self.per_class)]
        self.pixels += classes.size

    def move_shadow(self, shadow: int, gained: np.ndarray) -> None:
        """The shadow check gave ``gained[k]`` shadow pixels to class k."""
        self.per_class += gained
        self.per_class[shadow] -= int(gained.sum())

    @property
    def valid(self) -> int:
        return int(self.per_class.sum())


#: how much coarser than a model's own pixel size a scene may be before its mask is flagged
COARSEST = 8


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _local_damage(paths: OutputPaths) -> str | None:
    """What is wrong with a finished scene's outputs on disk, or None."""
    if not paths.mask.is_file():  # a summary of any age needs its mask
        return f"{paths.mask.name} is missing"
    return damage(paths.summary)


def _check_same_product(text: bytes | None, summary: Path | str, plan: GridPlan) -> None:
    """Outputs named after a scene may be those of another product of that name (two dates of
    a tile in folders both called ``T31TCJ/``, in one run or two, on the very same grid):
    skipping would pass the other's mask off as this one's. Only the same source is done.
    ``text``: the content of the scene's summary at ``summary``."""
    try:
        source = Path(json.loads(text or b"")["source"])
    except (ValueError, KeyError, TypeError):
        return  # a summary this cloudkit did not write vouches for nothing either way
    scene = plan.scene
    if source.resolve() != Path(scene.path).resolve():
        folder = str(summary).rsplit("/", 1)[0]
        raise InvalidSceneError(
            f"{scene.path}: {folder} already holds the mask of {source}, another "
            f"product named {scene.scene_id}; predict this one into another folder (or pass "
            "--overwrite to replace that mask)"
        )


def unchecked_resolution(info) -> str | None:
    """Why no scene's resolution can be checked against the model (`_warnings`), or None:
    a checkpoint that records no pixel size (fine-tuned before cloudkit recorded it). Said
    once a run, not in every scene's summary."""
    if info.made_for or info.resolution:
        return None
    return (
        f"{info.path}: the model records no resolution, so no scene's resolution is checked "
        "against it (masks of pixels far coarser than it was trained on are not flagged); "
        "fine-tune it again (cloudkit now records it), or record the pixel size it was "
        "trained at: cloudkit export CHECKPOINT OUT --resolution M"
    )


def _warnings(plan: GridPlan, info) -> list[str]:
    """What a user must know to trust the mask: said, even though the run succeeds."""
    # the coarsest pixels it was trained on (a checkpoint's record, a peer's card), else the
    # size it works at
    made_for = info.made_for or info.resolution
    if made_for and plan.resolution > COARSEST * made_for:
        what = "pixels this model was trained on" if info.made_for else "this model works at"
        return [
            f"read at {plan.resolution:g} m, more than {COARSEST}x coarser than the "
            f"{made_for:g} m {what}: its classes are unreliable there"
        ]
    return []


def _summary(
    job: SceneJob, predictor: Predictor, options: PredictOptions, counts: _ClassCounts
) -> dict:
    plan, scene, info, valid = job.plan, job.scene, predictor.info, counts.valid

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
            # bands decoded at a JPEG 2000 resolution level (2**level coarser), not in full
            "reduced_levels": {b: j for b, j in zip(plan.bands, plan.levels, strict=True) if j},
        },
        "model": {
            "checkpoint": str(info.path),
            "task": info.task,
            "head": info.head,
            "bands": list(plan.bands),
        },
        "classes": {str(i): name for i, name in enumerate(info.classes)},
        "nodata": NODATA,
        "warnings": _warnings(plan, info),
        "valid_percent": _pct(valid, counts.pixels),
        "cloud_percent": percent(CLOUD_CLASSES),
        "shadow_percent": percent(SHADOW_CLASSES),
        "class_percent": {
            name: _pct(int(n), valid)
            for name, n in zip(info.classes, counts.per_class, strict=True)
        },
        "inference": {
            "window": job.windows.size,
            "overlap": job.windows.overlap,
            "windows": job.tally.windows,
            "batch_size": options.batch_size,
            "device": str(predictor.device),
            "precision": predictor.precision,
            "compiled": predictor.compiled,
        },
        "cloudkit_version": __version__,
    }


def _timing_summary(tally: SceneTally) -> dict:
    result: dict = tally.timings(STAGES)
    model = tally.stages["model"]
    result["windows_per_s"] = round(tally.windows / model, 2) if model > 0 else None
    return result


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 4) if whole else None
