"""Score a reference mask (Sen2Cor's SCL, s2cloudless output, ...) against a store's labels.

(A peer model named as the reference is scored on the store's own pixels instead: `peer.py`.)

Each tile's footprint comes from its scene's grid in the store (``scenes/crs``,
``scenes/transform``, ``tile_row``/``tile_col``); the reference raster is read over that
footprint, resampled by nearest neighbour onto the tile's pixels (any pixel size, same CRS),
and scored with the metrics of :mod:`cloudkit.eval.metrics`. Pixels count when the tile is
valid there, the label is known for the task and the reference has a value; pixels where only
the reference lacks a value (outside its extent, its no-data) are reported as
``reference_nodata_pixels`` instead of being counted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloudkit.data.tasks import IGNORE, Task, get_task
from cloudkit.errors import CloudkitError, InvalidSceneError, OptionError, StoreError
from cloudkit.eval.metrics import ConfusionAccumulator, class_metrics
from cloudkit.io.labels import SCL_LUT
from cloudkit.io.store import StoreReader
from cloudkit.peers.registry import PEERS

#: Tiles read from the store at once.
_BATCH = 256


@dataclass(frozen=True)
class TileFootprint:
    """Where a tile lies: its scene's CRS (WKT) and the tile's own affine transform."""

    index: int
    scene: int
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    size: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the scene's CRS."""
        a, _, c, _, e, f = self.transform
        xs = (c, c + a * self.size)
        ys = (f, f + e * self.size)
        return min(xs), min(ys), max(xs), max(ys)


def tile_footprints(store: StoreReader) -> list[TileFootprint]:
    """The footprint of every committed tile of a store (needs the store's scenes/ table)."""
    if store.num_scenes == 0:
        raise StoreError(
            f"{store.path}: store has no scenes/ table, so its tiles have no place on the "
            "ground; score a store made by `cloudkit tile`"
        )
    crs = store.scenes("crs")
    transform = store.scenes("transform")
    scene = store.index("tile_scene")
    rows, cols = store.index("tile_row"), store.index("tile_col")
    size = store.tile_size
    out = []
    for i in range(store.num_tiles):
        s = int(scene[i])
        a, b, c, d, e, f = (float(v) for v in transform[s])
        r, q = int(rows[i]), int(cols[i])
        tile_transform = (a, b, c + a * q + b * r, d, e, f + d * q + e * r)
        out.append(TileFootprint(i, s, str(crs[s]), tile_transform, size))
    return out


class MaskReader:
    """Reads a single-band raster over tile footprints, nearest-neighbour resampled.

    Values outside the raster, its no-data value and NaN come back as ``fill``.
    """

    def __init__(self, path: Path, *, fill: float = math.nan) -> None:
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning, RasterioError

        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidSceneError(f"{path}: no such mask raster; expected a GeoTIFF path")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._ds = rasterio.open(self.path)
        except RasterioError as err:
            reason = " ".join(str(err).split())
            raise InvalidSceneError(f"{path}: not a readable raster ({reason})") from err
        self.fill = fill
        self._checked_crs: set[str] = set()

    def close(self) -> None:
        self._ds.close()

    def __enter__(self) -> MaskReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_crs(self, crs_wkt: str) -> None:
        from rasterio.crs import CRS

        if crs_wkt in self._checked_crs:
            return
        scene_crs = CRS.from_wkt(crs_wkt)
        if self._ds.crs is None:
            raise InvalidSceneError(
                f"{self.path}: has no CRS; expected a georeferenced mask in {_crs_name(scene_crs)}"
            )
        if self._ds.crs != scene_crs:
            raise InvalidSceneError(
                f"{self.path}: is in {_crs_name(self._ds.crs)} but the scene is in "
                f"{_crs_name(scene_crs)}; reproject the mask first, e.g. "
                f"`gdalwarp -r near -t_srs {_crs_name(scene_crs)} IN.tif OUT.tif`"
            )
        self._checked_crs.add(crs_wkt)

    def read(self, tile: TileFootprint) -> np.ndarray:
        """(T, T) float64 values of the raster over ``tile`` (``fill`` where it has none)."""
        from rasterio.enums import Resampling
        from rasterio.windows import Window, from_bounds

        self._check_crs(tile.crs_wkt)
        ds, t = self._ds, tile.size
        window = from_bounds(*tile.bounds, transform=ds.transform)
        # a footprint on the raster's own grid gives whole pixels up to float noise
        window = Window(*(_snap(v) for v in window.flatten()))
        # boundless: tiles may hang over the raster's edge; a fill the data never holds
        # marks those pixels (rasterio's default fill is the no-data value or 0)
        sentinel = _sentinel(ds.dtypes[0], ds.nodata)
        inside = (
            window.col_off >= 0
            and window.row_off >= 0
            and window.col_off + window.width <= ds.width
            and window.row_off + window.height <= ds.height
        )
        # boundless reads go through a warped VRT: slower, so only at the raster's edges
        extra = {} if inside else {"boundless": True, "fill_value": sentinel}
        data = ds.read(
            1, window=window, out_shape=(t, t), resampling=Resampling.nearest, **extra
        ).astype(np.float64)
        missing = data == sentinel
        if ds.nodata is not None and not math.isnan(ds.nodata):
            missing |= data == ds.nodata
        missing |= np.isnan(data)
        data[missing] = self.fill
        return data


def _snap(v: float) -> float:
    r = round(v)
    return float(r) if abs(v - r) < 1e-6 else float(v)


def _sentinel(dtype: str, nodata: float | None) -> float:
    if nodata is not None and not math.isnan(nodata):
        return float(nodata)
    if np.issubdtype(np.dtype(dtype), np.integer):
        return float(np.iinfo(np.dtype(dtype)).max)
    return -3.0e38  # far below any mask value or probability


def _crs_name(crs) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_string()


def scl_path(scene_path: str, resolution: float) -> Path:
    """The SCL raster of an L2A product: the one at ``resolution`` if present, else the finest."""
    from cloudkit.io.safe import read_safe

    try:
        scene = read_safe(Path(scene_path), scl_labels=True)
    except CloudkitError as err:
        raise InvalidSceneError(
            f"--reference scl needs each scene's L2A product, but {scene_path} cannot be "
            f"read: {err}"
        ) from None
    labels = [label for label in scene.labels if label.path.is_file()]
    if not labels:
        raise InvalidSceneError(
            f"{scene_path}: no SCL raster found; --reference scl needs L2A products (.SAFE with "
            "SCL_20m/SCL_60m); pass a mask raster instead"
        )
    exact = [lab for lab in labels if lab.nominal_resolution == round(resolution)]
    chosen = exact or sorted(labels, key=lambda lab: lab.nominal_resolution or 0)
    return chosen[0].path


def _to_classes(
    values: np.ndarray, task: Task, *, scl: bool, threshold: float | None
) -> np.ndarray:
    """Reference values -> task class indices, IGNORE where the reference has no value."""
    missing = np.isnan(values)
    if scl:
        codes = np.where(missing | (values < 0) | (values > 255), 255, values).astype(np.uint8)
        return task.lut[SCL_LUT[codes]]
    if threshold is not None:
        classes = (np.where(missing, -np.inf, values) >= threshold).astype(np.uint8)
        classes[missing] = IGNORE
        return classes
    known = ~missing & (values >= 0) & (values < task.num_classes) & (values == np.round(values))
    return np.where(known, values, IGNORE).astype(np.uint8)


def _iter_batches(n: int) -> Iterator[slice]:
    for start in range(0, n, _BATCH):
        yield slice(start, min(n, start + _BATCH))


def evaluate_reference(
    stores: Sequence[Path],
    *,
    reference: str,
    task: str,
    threshold: float | None = None,
    tiles: Sequence[int] | None = None,
) -> dict:
    """Score a reference mask against the labels of ``stores`` for ``task``.

    ``reference``: the name of a peer model (``ukis-csmask``, ``s2cloudless``: run on the
    store's own pixels by :func:`cloudkit.peers.scoring.evaluate_peer`), ``"scl"`` (each scene's own Sen2Cor SCL, found from the product path in the
    store's scenes/ table, mapped with ``SCL_LUT`` then the task) or the path of a single-band
    mask raster in the scenes' CRS. A mask holds the task's class indices (0/1 for binary
    tasks; other values are no-data), or, with ``threshold`` (binary tasks), a probability:
    ``value >= threshold`` is the positive class. Floating-point masks default to 0.5.

    Returns :func:`class_metrics` output plus ``reference``, ``task``, ``stores``, ``tiles``
    and ``reference_nodata_pixels``. ``tiles``: only these tile indices of every store.
    """
    the_task = get_task(task) if isinstance(task, str) else task
    if threshold is not None and not 0.0 < threshold < 1.0:  # written so NaN fails too
        raise OptionError(
            f"--threshold {threshold}: a probability mask's threshold is in (0, 1), e.g. 0.5"
        )
    if reference in PEERS:
        if threshold is not None:
            raise OptionError(
                f"--threshold applies to mask rasters; {reference} decides its classes itself"
            )
        from cloudkit.peers.scoring import evaluate_peer

        return evaluate_peer(stores, peer=reference, task=the_task.name, tiles=tiles)
    if not stores:
        raise StoreError("no tile store given; pass at least one store made by `cloudkit tile`")
    scl = reference.lower() == "scl"
    if threshold is not None and (not the_task.binary or scl):
        raise OptionError(
            f"--threshold applies to probability masks and binary tasks; not to "
            f"{'--reference scl' if scl else f'--task {the_task.name}'}"
        )
    mask: MaskReader | None = None
    if not scl:
        mask = MaskReader(Path(reference))
        if threshold is None and np.issubdtype(np.dtype(mask._ds.dtypes[0]), np.floating):
            if not the_task.binary:
                mask.close()
                raise InvalidSceneError(
                    f"{reference}: holds {mask._ds.dtypes[0]} values; --task "
                    f"{the_task.name} needs integer class indices 0..{the_task.num_classes - 1}"
                )
            threshold = 0.5
    acc = ConfusionAccumulator(the_task.num_classes)
    scored = nodata = 0
    try:
        for path in map(Path, stores):
            store = StoreReader.open(path)
            store.require_labels()
            footprints = tile_footprints(store)
            if tiles is not None:
                footprints = [footprints[i] for i in tiles]
            scenes = store.scenes("path")
            resolution = store.resolution
            readers: dict[int, MaskReader] = {}
            try:
                for batch in _iter_batches(len(footprints)):
                    rows = np.asarray([f.index for f in footprints[batch]], dtype=np.int64)
                    labels = store.tiles("labels", rows)[:, 0]
                    valid = store.tiles("valid", rows)[:, 0] != 0
                    for k, tile in enumerate(footprints[batch]):
                        target = the_task.lut[labels[k]]
                        target[~valid[k]] = IGNORE
                        if not (target != IGNORE).any():
                            continue
                        if scl:
                            if tile.scene not in readers:
                                readers[tile.scene] = MaskReader(
                                    scl_path(str(scenes[tile.scene]), resolution)
                                )
                            reader = readers[tile.scene]
                        else:
                            assert mask is not None  # opened above, the reference not scl
                            reader = mask
                        pred = _to_classes(
                            reader.read(tile), the_task, scl=scl, threshold=threshold
                        )
                        lacking = (pred == IGNORE) & (target != IGNORE)
                        nodata += int(lacking.sum())
                        target[lacking] = IGNORE
                        acc.update(pred, target)
                        scored += 1
            finally:
                for r in readers.values():
                    r.close()
    finally:
        if mask is not None:
            mask.close()
    if scored and not acc.matrix.sum():  # every labelled pixel fell where the reference has none
        raise InvalidSceneError(
            f"{reference}: no pixel of the stores' labels has a class in this reference "
            f"({nodata} labelled pixels fell on its no-data or on values that are no class of "
            f"--task {the_task.name}); nothing to score"
        )
    result = class_metrics(acc.matrix, the_task.classes)
    result.update(
        {
            "reference": "scl" if scl else str(reference),
            "threshold": threshold,
            "task": the_task.name,
            "stores": [str(s) for s in stores],
            "tiles": scored,
            "reference_nodata_pixels": nodata,
        }
    )
    return result
