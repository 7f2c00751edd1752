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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from cloudkit.errors import OptionError, ScenesFailedError, TileShapeError

if TYPE_CHECKING:
    import dask.array
    import numpy as np
    import xarray

    from cloudkit.pipeline.run import Progress, SceneResult, Summary
    from cloudkit.predict.model import ModelInfo, Predictor
    from cloudkit.predict.peer import PeerPredictor

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

#: numpy arrays give numpy arrays, DataArrays DataArrays, dask arrays dask arrays
ArrayT = TypeVar("ArrayT", "np.ndarray", "xarray.DataArray", "dask.array.Array")
#: ``callback(epoch, record)`` after each epoch of pretraining or fine-tuning
EpochCallback = Callable[[int, dict[str, Any]], None]
#: the smallest array side masked, in the model's pixels: the network's deepest features
#: span 32 px, so a smaller image is mostly the padding of its window
MIN_SIDE = 32
#: the class code of pixels without data in every band (as in `cloudkit predict`'s masks)
NODATA = 255


class Model:
    """A model on a device, loaded once: masks arrays (:meth:`predict_array`) and scenes
    (``cloudkit.predict(scenes, out, model=this)``)."""

    def __init__(self, predictor: Predictor | PeerPredictor, source: str) -> None:
        self._predictor = predictor
        #: what it was loaded from: a shipped model's or a peer's name, or a checkpoint path
        self.source = source

    @property
    def info(self) -> ModelInfo:
        """Task, classes, bands, training tile size, the pixel size it works at, ..."""
        return self._predictor.info

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names; a mask's code is the index of its class (255: no data)."""
        return self.info.classes

    @property
    def bands(self) -> tuple[str, ...]:
        """The bands it reads (an any-band model: those of the 13 it is given, at least
        B02 B03 B04; a peer: chosen by its rules, so none here)."""
        return self.info.bands

    @property
    def resolution(self) -> float | None:
        """Pixel size in metres it works at: finer arrays are averaged down to it."""
        return self.info.resolution

    @property
    def device(self) -> str:
        return str(self._predictor.device)

    def __repr__(self) -> str:
        info = self.info
        return (
            f"Model({self.source!r}, task={info.task!r}, classes={info.classes}, "
            f"resolution={info.resolution}, device={self.device!r})"
        )

    @overload
    def predict_array(
        self,
        array: ArrayT,
        *,
        bands: Sequence[str] | None = ...,
        resolution: float | None = ...,
        band_axis: int = ...,
        nodata: float | None = ...,
        dn_offset: int | Sequence[int] | None = ...,
        level: str | None = ...,
        return_probabilities: Literal[False] = ...,
        sun_angles: tuple[float, float] | None = ...,
        batch_size: int | None = ...,
        window: int | None = ...,
        overlap: int | None = ...,
        workers: int | None = ...,
    ) -> ArrayT: ...

    @overload
    def predict_array(
        self,
        array: ArrayT,
        *,
        bands: Sequence[str] | None = ...,
        resolution: float | None = ...,
        band_axis: int = ...,
        nodata: float | None = ...,
        dn_offset: int | Sequence[int] | None = ...,
        level: str | None = ...,
        return_probabilities: Literal[True],
        sun_angles: tuple[float, float] | None = ...,
        batch_size: int | None = ...,
        window: int | None = ...,
        overlap: int | None = ...,
        workers: int | None = ...,
    ) -> tuple[ArrayT, ArrayT]: ...

    def predict_array(
        self,
        array: ArrayT,
        *,
        bands: Sequence[str] | None = None,
        resolution: float | None = None,
        band_axis: int = 0,
        nodata: float | None = None,
        dn_offset: int | Sequence[int] | None = None,
        level: str | None = None,
        return_probabilities: bool = False,
        sun_angles: tuple[float, float] | None = None,
        batch_size: int | None = None,
        window: int | None = None,
        overlap: int | None = None,
        workers: int | None = None,
    ) -> ArrayT | tuple[ArrayT, ArrayT]:
        """Class codes of every pixel of ``array``: uint8 ``(H, W)``, the index of its class
        in :attr:`classes`, 255 where some band has no data; with ``return_probabilities``
        also float32 ``(len(classes), H, W)`` probabilities (NaN where no data).

        ``array``: a numpy array ``(band, y, x)`` (``band_axis=0``) or ``(y, x, band)``
        (``band_axis=-1``), named by ``bands`` (ESA names, e.g. ``("B02", "B03", "B04")``);
        or an xarray DataArray with a ``band`` dimension, named by its ``band`` coordinate
        (or ``bands``), whose outputs are DataArrays on its grid (CRS and transform too,
        with rioxarray); or a dask array, or a dask-backed DataArray, masked lazily chunk by
        chunk with the margin the windows need. The same pixels give the mask `cloudkit
        predict` writes.

        Values: floats are reflectance 0-1 (TOA for L1C, BOA for L2A); integers are DN as
        in the product's files, whose radiometric offset ``dn_offset`` must be given (-1000
        for processing baseline 04.00 and later, 0 before; one, or one per band). NaN, DN 0
        and ``nodata`` are no data. ``resolution``: pixel size in metres (a DataArray's
        coordinates tell it); an array finer than the model's :attr:`resolution` by a whole
        factor is averaged down to it and the mask repeated back, as `cloudkit predict`
        reads a 10 m product at 20 m. ``level`` ("L1C" or "L2A") is needed by peer models.
        ``sun_angles``: the sun's (azimuth, zenith) in degrees, for the geometric shadow
        check.
        ``batch_size``, ``window``, ``overlap``, ``workers``: as `cloudkit predict`'s options.
        """
        import numpy as np

        from cloudkit.arrays import chunked, labelled, reading, values
        from cloudkit.arrays.grid import Windows

        options = _make(
            "PredictOptions",
            {"batch_size": batch_size, "window": window, "overlap": overlap, "workers": workers},
        )
        source: Any = array  # one of ArrayT's kinds, told apart here
        like = source if _is_dataarray(source) else None
        if like is not None:
            unpacked = labelled.unpack(like)
            data: Any = unpacked.data
            names = labelled.band_names(bands, unpacked)
            resolution = labelled.resolution_of(resolution, unpacked)
        else:
            data, names = _bands_first(source, band_axis), bands
        lazy = _is_dask(data)
        if not lazy:
            data = np.asarray(data)
        if data.ndim != 3:
            raise TileShapeError(
                f"an array of shape {tuple(data.shape)}: expected 3 dimensions, (band, y, x) "
                "with band_axis=0 or (y, x, band) with band_axis=-1"
            )
        pixel = _pixel_size(resolution)
        names = values.band_names(names, data.shape[0])
        model, chosen = reading.reader_for(self._predictor, names, level)
        pixels = values.pixels_of(data.dtype, len(names), dn_offset=dn_offset, nodata=nodata)
        picked = [names.index(b) for b in chosen]
        pixels = values.Pixels(
            pixels.reflectance, tuple(pixels.shifts[i] for i in picked), pixels.nodata
        )
        data = data[picked]
        info = self.info
        size, overlap_px = options.window_for(info.tile_size, info.overlap)
        windows = Windows(
            size, overlap_px, _factor(pixel, info.resolution), options.batch_size, options.threads
        )
        shape = (int(data.shape[1]), int(data.shape[2]))
        _require_size(windows.model_shape(*shape), windows.factor)
        mask = chunked.masker(
            model, chosen, pixels, windows, shape, sun_angles=_sun_angles(sun_angles)
        )
        classes: Any
        probs: Any
        if lazy:
            classes, probs = chunked.mask_dask(
                mask, data, windows, info.channels, with_probs=return_probabilities
            )
        else:
            classes, probs = chunked.mask_numpy(mask, data)
            values.require_some_valid(classes, NODATA)
        if like is not None:
            classes, probs = labelled.pack(
                like, classes, probs if return_probabilities else None, info.classes, NODATA
            )
        return (classes, probs) if return_probabilities else classes


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
    from cloudkit.model_zoo import load_predictor

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
    ``probabilities``, ``quicklook``, ``overwrite``; `config.PredictOptions`). Every scene is
    tried; then a ScenesFailedError names those that failed, unless ``keep_going`` (then
    they are in ``result.failed``). ``cluster``: "local:N" or "tcp://HOST:PORT"."""
    from cloudkit.io.location import is_url
    from cloudkit.model_zoo import load_predictor
    from cloudkit.predict.writer import predict_paths

    paths = _paths(scenes)
    opts = _make("PredictOptions", options, caller="cloudkit.predict")
    target: Path | str = str(out) if is_url(str(out)) else Path(out)
    load: dict[str, Any] = {"device": device, "precision": precision, "compile": compile}
    if cluster is None:
        predictor = model._predictor if isinstance(model, Model) else load_predictor(model, **load)
        summary = predict_paths(paths, predictor, target, opts, progress)  # type: ignore[arg-type]
    else:
        from cloudkit.cluster import parse_cluster, predict_on_cluster

        spec = model.source if isinstance(model, Model) else str(model)
        # a bad model stops here in one line; the device is the workers' (remote: theirs)
        local = parse_cluster(cluster)[0] == "local"
        load_predictor(spec, **(load if local else {**load, "device": "cpu"}))
        summary = predict_on_cluster(paths, spec, load, target, opts, cluster, progress)
    _raise_failures(summary, keep_going)
    return PredictResult(target, tuple(summary.results))


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
    ``result.failed``. ``cluster`` implies ``keep_going``, as for the command."""
    from cloudkit.io.location import is_url
    from cloudkit.tiling import tile_paths, tile_paths_on

    paths = _paths(scenes)
    if "bands" in options and options["bands"] is not None:
        options["bands"] = _esa_bands(options["bands"])
    opts = _make("TileOptions", options, caller="cloudkit.tile")
    store: Path | str = str(out) if is_url(str(out)) else Path(out)
    if cluster is None:
        summary = tile_paths(paths, store, opts, progress, keep_going=keep_going)
    else:
        summary = tile_paths_on(cluster, paths, store, opts, progress)
    _raise_failures(summary, keep_going or cluster is None)
    return TileResult(store, tuple(summary.results))


def pretrain(
    stores: str | Path | Sequence[str | Path],
    out: str | Path,
    method: str = "moco",
    *,
    progress: EpochCallback | None = None,
    **options: Any,
) -> TrainResult:
    """`cloudkit pretrain STORES --method METHOD --out OUT`: a MoCo v2 or DeepCluster v2
    encoder; returns ``last.pt``. ``options``: the command's (`config.PretrainConfig`:
    ``epochs``, ``batch_size``, ``crop``, ``queue_size``, ``prototypes``, ``device``,
    ``resume``, ...; unset ones take the method's defaults)."""
    from cloudkit.config import PretrainConfig
    from cloudkit.train.pretrain import pretrain as run

    cfg = _make(
        "PretrainConfig", {**options, "stores": _paths(stores), "out": Path(out), "method": method}
    )
    assert isinstance(cfg, PretrainConfig)
    return _trained(run(cfg, on_epoch_end=progress, quiet=True), cfg.out)


def finetune(
    stores: str | Path | Sequence[str | Path],
    out: str | Path,
    init: str | Path = "random",
    *,
    fraction: float = 1.0,
    progress: EpochCallback | None = None,
    **options: Any,
) -> TrainResult:
    """`cloudkit finetune STORES --init INIT --out OUT`: a segmentation model from random
    weights or a pretraining checkpoint, on ``fraction`` of the labelled tiles; returns
    ``best.pt``, which :func:`load_model` loads. ``options``: the command's
    (`config.FinetuneConfig`: ``task``, ``head``, ``epochs``, ``batch_size``, ``crop``,
    ``lr``, ``device``, ``resume``, ...)."""
    from cloudkit.config import FinetuneConfig
    from cloudkit.train.finetune import finetune as run

    given = {"stores": _paths(stores), "out": Path(out), "init": str(init), "fraction": fraction}
    cfg = _make("FinetuneConfig", {**options, **given})
    assert isinstance(cfg, FinetuneConfig)
    return _trained(run(cfg, on_epoch_end=progress, quiet=True), cfg.out)


def evaluate(
    stores: str | Path | Sequence[str | Path],
    *,
    checkpoint: str | Path | None = None,
    reference: str | None = None,
    task: str | None = None,
    threshold: float | None = None,
    batch_size: int = 16,
    device: str = "auto",
    out: str | Path | None = None,
) -> EvaluateResult:
    """`cloudkit evaluate`: a fine-tuned ``checkpoint`` or a ``reference`` (a peer's name,
    "scl", or a mask GeoTIFF) scored against the labels of ``stores``; the metrics are
    written as JSON to ``out`` when given. ``task`` and ``threshold`` go with a reference."""
    from cloudkit.eval.evaluate import evaluate_checkpoint, evaluate_reference, write_json

    paths = _paths(stores)
    if (checkpoint is None) == (reference is None):
        raise OptionError(
            "cloudkit.evaluate scores a checkpoint= or a reference=; give exactly one"
        )
    if checkpoint is not None:
        if task is not None or threshold is not None:
            raise OptionError("task and threshold go with reference=; a checkpoint brings its task")
        metrics = evaluate_checkpoint(Path(checkpoint), paths, batch_size=batch_size, device=device)
    else:
        assert reference is not None
        metrics = evaluate_reference(
            paths, reference=reference, task=task or "cloud", threshold=threshold
        )
    target = None if out is None else Path(out)
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
    from cloudkit import config as configs

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
    from cloudkit.bands import esa_order
    from cloudkit.errors import BandMismatchError

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
    from cloudkit.train.metrics import read_metrics

    metrics = out / "metrics.jsonl"
    epochs = tuple(read_metrics(metrics)) if metrics.is_file() else ()
    return TrainResult(Path(checkpoint), out, epochs)


def _is_dataarray(array: object) -> bool:
    # a DataArray can only come from an imported xarray: no import here
    module = type(array).__module__
    return module.startswith("xarray.") and type(array).__name__ == "DataArray"


def _is_dask(array: object) -> bool:
    return type(array).__module__.startswith("dask.") and type(array).__name__ == "Array"


def _bands_first(array: Any, band_axis: int) -> Any:
    if band_axis not in (0, -1):
        raise OptionError(f"band_axis={band_axis}: 0 (bands first) or -1 (bands last)")
    if band_axis == 0 or getattr(array, "ndim", 0) != 3:
        return array
    if _is_dask(array):
        import dask.array as da

        return da.moveaxis(array, -1, 0)
    import numpy as np

    return np.moveaxis(np.asarray(array), -1, 0)


def _pixel_size(resolution: float | None) -> float:
    if resolution is None:
        raise OptionError(
            "resolution: pass the array's pixel size in metres (10, 20 or 60 for Sentinel-2 bands)"
        )
    if not (math.isfinite(resolution) and resolution > 0):
        raise OptionError(f"resolution={resolution}: expected a pixel size in metres, e.g. 20")
    return float(resolution)


def _factor(resolution: float, works_at: float | None) -> int:
    """How many array pixels, per side, one pixel of the model's grid holds: the model's
    pixel size over the array's when that is a whole number above 1, else 1 (the array's
    own grid, as `cloudkit predict --resolution` of that size)."""
    if works_at is None or resolution >= works_at:
        return 1
    ratio = works_at / resolution
    whole = round(ratio)
    return whole if whole > 1 and math.isclose(ratio, whole, rel_tol=1e-6) else 1


def _require_size(shape: tuple[int, int], factor: int) -> None:
    if min(shape) < MIN_SIDE:
        height, width = shape
        raise TileShapeError(
            f"an array of {height * factor} x {width * factor} pixels ({height} x {width} "
            f"at the model's pixel size): cloudkit masks images of at least {MIN_SIDE} x "
            f"{MIN_SIDE} model pixels, the span of the network's deepest features"
        )


def _sun_angles(angles: tuple[float, float] | None) -> tuple[float, float] | None:
    """(azimuth, zenith) in degrees, as ``cloudkit predict --sun-angles`` takes them."""
    if angles is None:
        return None
    try:
        azimuth, zenith = (float(a) for a in angles)
    except (TypeError, ValueError):
        raise OptionError(f"sun_angles={angles!r}: expected (azimuth, zenith) in degrees") from None
    if not (0.0 <= azimuth <= 360.0 and 0.0 <= zenith < 90.0):
        raise OptionError(
            f"sun_angles=({azimuth}, {zenith}): the azimuth in [0, 360] degrees clockwise from "
            "north, the zenith in [0, 90), as a product's metadata gives them"
        )
    return azimuth, zenith
