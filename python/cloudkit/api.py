"""cloudkit as a library: a model loaded once that masks arrays, and the commands as functions.

``load_model`` gives a :class:`Model` whose :meth:`Model.predict_array` masks a numpy array,
an xarray DataArray or a dask-backed one with the windows, blending and class rule of
`cloudkit predict` (`cloudkit.arrays`). :func:`predict`, :func:`tile`, :func:`pretrain`,
:func:`finetune` and :func:`evaluate` call what the commands call and return what it made.
Nothing prints: progress reaches a callback when one is given. Errors are the classes of
`cloudkit.errors`, as for the CLI.

Heavy modules (torch, the Rust extension, rasterio, zarr) are imported inside the functions
that need them: ``import cloudkit`` and ``cloudkit --help`` stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudkit import config as configs
from cloudkit.arrays.model import Model
from cloudkit.bands import esa_order
from cloudkit.config import FinetuneConfig, PretrainConfig
from cloudkit.errors import BandMismatchError, OptionError, ScenesFailedError
from cloudkit.files.disk import require_writable
from cloudkit.io.location import is_url, location_of
from cloudkit.train.metrics import read_metrics

if TYPE_CHECKING:
    from cloudkit.pipeline.run import Progress, SceneResult, Summary

__all__ = [
    "EvaluateResult",
    "Model",
    "PredictResult",
    "TileResult",
    "TrainResult",
    "evaluate",
    "finetune",
    "load_model",
    "predict",
    "pretrain",
    "tile",
]

#: ``callback(epoch, record)`` after each epoch of pretraining or fine-tuning
EpochCallback = Callable[[int, dict[str, Any]], None]


def load_model(
    name_or_path: str | Path = "default",
    *,
    device: str = "auto",
    precision: str = "auto",
    compile: bool = False,
) -> Model:
    """The model `cloudkit predict --model` names: a shipped model ("default"), a peer
    ("ukis-csmask", "s2cloudless"), or a `cloudkit finetune` checkpoint (best.pt); on
    ``device`` ("auto": CUDA when there is one, else the CPU)."""
    from cloudkit.models.zoo import load_predictor

    predictor = load_predictor(name_or_path, device=device, precision=precision, compile=compile)
    return Model(predictor, str(name_or_path))


# --------------------------------------------------------------------------------------------
# the commands


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict` did: per scene its status ("predicted", "skipped", "failed"),
    its outputs (``.mask``, ``.summary``, ...) and its summary (cloud and shadow
    percentages, timings: the JSON beside the mask)."""

    out: Path | str
    scenes: tuple[SceneResult, ...]
    #: what holds for the whole run (a model with no recorded pixel size), once
    warnings: tuple[str, ...] = ()

    @property
    def masks(self) -> list[Path]:
        """The mask of every scene predicted now or before."""
        return [r.outputs.mask for r in self.scenes if r.outputs is not None]

    @property
    def failed(self) -> list[SceneResult]:
        return [r for r in self.scenes if r.error is not None]


@dataclass(frozen=True)
class TileResult:
    """What :func:`tile` did: per scene its status ("tiled", "skipped", "failed") and
    tiles written."""

    store: Path | str
    scenes: tuple[SceneResult, ...]

    @property
    def tiles(self) -> int:
        """Tiles written by this run."""
        return sum(r.windows for r in self.scenes)

    @property
    def failed(self) -> list[SceneResult]:
        return [r for r in self.scenes if r.error is not None]


@dataclass(frozen=True)
class TrainResult:
    """A pretraining or fine-tuning run: its checkpoint (pretraining's ``last.pt``,
    fine-tuning's ``best.pt``), its folder, and each epoch's metrics record."""

    checkpoint: Path
    out: Path
    epochs: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class EvaluateResult:
    """Scores against the stores' labels: ``per_class`` (precision, recall, f1, iou, ...),
    ``overall_accuracy``, ``mean_iou``, ``confusion_matrix``, ... (``metrics``), and where
    they were written, if asked."""

    task: str
    tiles: int
    metrics: dict[str, Any]
    path: Path | None


def predict(
    scenes: str | Path | Sequence[str | Path],
    out: str | Path = ".",
    model: str | Path | Model = "default",
    *,
    device: str = "auto",
    precision: str = "auto",
    compile: bool = False,
    cluster: str | None = None,
    keep_going: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> PredictResult:
    """`cloudkit predict SCENES -o OUT`: a mask (COG), summary JSON, and on request
    probabilities and a quicklook per scene in ``out`` (a folder, or s3://). ``model``: a
    name, a checkpoint or a :class:`Model` already loaded. ``options``: the command's
    (``resolution``, ``window``, ``overlap``, ``batch_size``, ``workers``, ``decode``,
    ``probabilities``, ``quicklook``, ``overwrite``, ``shadows``, ``sun_angles``;
    `config.PredictOptions`). Every scene is tried; then a ScenesFailedError names those
    that failed, unless ``keep_going`` (then they are in ``result.failed``). ``cluster``:
    "local:N" or "tcp://HOST:PORT".
    ``progress``: a `cloudkit.pipeline.run.Progress`, told of each scene and tile row."""
    from cloudkit.models.zoo import load_predictor
    from cloudkit.predict.writer import PREDICTED, predict_paths, unchecked_resolution

    paths = _paths(scenes)
    if options.get("sun_angles") is not None:
        from cloudkit.arrays.shadowed import sun_of

        options["sun_angles"] = sun_of(options["sun_angles"])  # (azimuth, zenith) taken too
    opts = _make("PredictOptions", options, caller="cloudkit.predict")
    target: Path | str = str(out) if is_url(str(out)) else Path(out)
    load: dict[str, Any] = {"device": device, "precision": precision, "compile": compile}
    if cluster is None:
        predictor = model.predictor if isinstance(model, Model) else load_predictor(model, **load)
        summary = predict_paths(paths, predictor, target, opts, progress)
    else:
        from cloudkit.pipeline.cluster import parse_cluster, predict_on_cluster

        spec = model.source if isinstance(model, Model) else str(model)
        # a bad model stops here in one line; the device is the workers' (remote: theirs)
        local = parse_cluster(cluster)[0] == "local"
        predictor = load_predictor(spec, **(load if local else {**load, "device": "cpu"}))
        summary = predict_on_cluster(paths, spec, load, target, opts, cluster, progress)
    _raise_failures(summary, keep_going)
    unchecked = unchecked_resolution(predictor.info)
    # once a run, where it made masks
    warnings = (unchecked,) if unchecked and summary.with_status(PREDICTED) else ()
    return PredictResult(target, tuple(summary.results), warnings)


def tile(
    scenes: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    cluster: str | None = None,
    keep_going: bool = False,
    progress: Progress | None = None,
    **options: Any,
) -> TileResult:
    """`cloudkit tile SCENES OUT.zarr`: scenes cut into a tile store (created, or appended
    to; scenes it holds are skipped). ``options``: the command's (``resolution``,
    ``tile_size``, ``overlap``, ``bands``, ``workers``, ``decode``, ``scl_labels``,
    ``labels_from``; `config.TileOptions`). Without ``keep_going`` the first bad scene
    raises its error (earlier ones stay in the store); with it, failures are in
    ``result.failed``. On a ``cluster`` ("local:N", "tcp://HOST:PORT") every scene is tried,
    as the command does, and then a ScenesFailedError names those that failed, unless
    ``keep_going``."""
    from cloudkit.tiler.writer import tile_paths

    paths = _paths(scenes)
    if "bands" in options and options["bands"] is not None:
        options["bands"] = _esa_bands(options["bands"])
    opts = _make("TileOptions", options, caller="cloudkit.tile")
    store: Path | str = str(out) if is_url(str(out)) else Path(out)
    if is_url(store):  # a missing bucket or credentials: one line now, not one per scene
        location_of(store).check_reachable()
    if cluster is None:
        summary = tile_paths(paths, store, opts, progress, keep_going=keep_going)
    else:
        from cloudkit.pipeline.cluster import tile_on_cluster  # Dask's client: only when asked for

        summary = tile_on_cluster(paths, store, opts, cluster, progress)
    # one machine without keep_going has raised at the first bad scene already
    _raise_failures(summary, keep_going or cluster is None)
    return TileResult(store, tuple(summary.results))


def pretrain(
    stores: str | Path | Sequence[str | Path],
    out: str | Path,
    method: str = "moco",
    *,
    progress: EpochCallback | None = None,
    quiet: bool = True,
    **options: Any,
) -> TrainResult:
    """`cloudkit pretrain STORES --method METHOD --out OUT`: a MoCo v2 or DeepCluster v2
    encoder; returns ``last.pt``. ``options``: the command's (`config.PretrainConfig`:
    ``epochs``, ``batch_size``, ``crop``, ``queue_size``, ``prototypes``, ``device``,
    ``resume``, ...; unset ones take the method's defaults). ``quiet=False`` prints each
    epoch's line, as the command does."""
    from cloudkit.train.pretrain import pretrain as run

    cfg = _make(
        "PretrainConfig", {**options, "stores": _paths(stores), "out": Path(out), "method": method}
    )
    assert isinstance(cfg, PretrainConfig)
    return _trained(run(cfg, on_epoch_end=progress, quiet=quiet), cfg.out)


def finetune(
    stores: str | Path | Sequence[str | Path],
    out: str | Path,
    init: str | Path = "random",
    *,
    fraction: float = 1.0,
    progress: EpochCallback | None = None,
    quiet: bool = True,
    **options: Any,
) -> TrainResult:
    """`cloudkit finetune STORES --init INIT --out OUT`: a segmentation model from random
    weights or a pretraining checkpoint, on ``fraction`` of the labelled tiles; returns
    ``best.pt``, which :func:`load_model` loads. ``options``: the command's
    (`config.FinetuneConfig`: ``task``, ``head``, ``epochs``, ``batch_size``, ``crop``,
    ``lr``, ``device``, ``resume``, ...). ``quiet=False`` prints each epoch's line."""
    from cloudkit.train.finetune import finetune as run

    given = {"stores": _paths(stores), "out": Path(out), "init": str(init), "fraction": fraction}
    cfg = _make("FinetuneConfig", {**options, **given})
    assert isinstance(cfg, FinetuneConfig)
    return _trained(run(cfg, on_epoch_end=progress, quiet=quiet), cfg.out)


def evaluate(
    stores: str | Path | Sequence[str | Path],
    *,
    checkpoint: str | Path | None = None,
    reference: str | None = None,
    task: str | None = None,
    threshold: float | None = None,
    batch_size: int = 16,
    device: str = "auto",
    shadows: str = "model",
    out: str | Path | None = None,
) -> EvaluateResult:
    """`cloudkit evaluate`: a fine-tuned ``checkpoint`` or a ``reference`` (a peer's name,
    "scl", or a mask GeoTIFF) scored against the labels of ``stores``; the metrics are
    written as JSON to ``out`` when given. ``task`` and ``threshold`` go with a reference;
    ``shadows`` with a checkpoint ("model": every pixel it calls shadow; "geometric": only
    the shadow a cloud of the scene casts, as `cloudkit predict` keeps by default)."""
    from cloudkit.eval.evaluate import evaluate_checkpoint, evaluate_reference, write_json

    paths = _paths(stores)
    if (checkpoint is None) == (reference is None):
        raise OptionError(
            "cloudkit.evaluate scores a checkpoint= or a reference=; give exactly one"
        )
    target = None if out is None else Path(out)
    if target is not None:  # before the scoring, not after it
        require_writable(target.parent, "the scores (--out, out=)")
    if checkpoint is not None:
        if task is not None or threshold is not None:
            raise OptionError("task and threshold go with reference=; a checkpoint brings its task")
        metrics = evaluate_checkpoint(
            Path(checkpoint), paths, batch_size=batch_size, device=device, shadows=shadows
        )
    else:
        assert reference is not None
        if shadows != "model":
            raise OptionError("shadows goes with a checkpoint; a reference is scored as it is")
        metrics = evaluate_reference(
            paths, reference=reference, task=task or "cloud", threshold=threshold
        )
    if target is not None:
        write_json(metrics, target)
    return EvaluateResult(str(metrics["task"]), int(metrics["tiles"]), metrics, target)


# --------------------------------------------------------------------------------------------
# helpers


def _paths(items: str | Path | Sequence[str | Path]) -> list[Path]:
    """One path or several; at least one."""
    paths = [Path(items)] if isinstance(items, (str, Path)) else [Path(p) for p in items]
    if not paths:
        raise OptionError("give at least one path")
    return paths


def _make(config: str, options: dict[str, Any], *, caller: str = "") -> Any:
    """``config.<config>(**options)`` without the options left at None (so the defaults
    stay config.py's, as the CLI's do), an unknown option named in an OptionError."""
    kind = getattr(configs, config)
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise OptionError(
            f"{caller or kind.__name__}: no option {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(known))}"
        )
    return kind(**{k: v for k, v in options.items() if v is not None})


def _esa_bands(bands: str | Sequence[str]) -> tuple[str, ...]:
    names = bands.split(",") if isinstance(bands, str) else list(bands)
    try:
        return tuple(esa_order([b.strip().upper() for b in names if b.strip()]))
    except KeyError as err:
        raise BandMismatchError(f"bands: {err.args[0]}") from None


def _raise_failures(summary: Summary, keep_going: bool) -> None:
    if keep_going or not summary.failed:
        return
    lines = "; ".join(f"{r.scene_id}: {r.error}" for r in summary.failed)
    raise ScenesFailedError(
        f"{len(summary.failed)} of {len(summary.results)} scene(s) failed ({lines}); the "
        "others were written (keep_going=True returns them in result.failed instead)"
    )


def _trained(checkpoint: Path, out: Path) -> TrainResult:
    metrics = out / "metrics.jsonl"
    epochs = tuple(read_metrics(metrics)) if metrics.is_file() else ()
    return TrainResult(Path(checkpoint), out, epochs)
