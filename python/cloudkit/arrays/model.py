"""The model the Python API hands out: loaded once, it masks arrays (`cloudkit.load_model`).

Light to import (``import cloudkit`` imports it): the array machinery, torch with it, loads on
the first :meth:`Model.predict_array`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from cloudkit.config import PredictOptions
from cloudkit.errors import OptionError, TileShapeError

if TYPE_CHECKING:
    import dask.array
    import numpy as np
    import xarray

    from cloudkit.geometry.sun import SunAngles
    from cloudkit.predict.model import ModelInfo, Predictor

#: numpy arrays give numpy arrays, DataArrays DataArrays, dask arrays dask arrays
ArrayT = TypeVar("ArrayT", "np.ndarray", "xarray.DataArray", "dask.array.Array")
#: the smallest array side masked, in the model's pixels: the network's deepest features
#: span 32 px, so a smaller image is mostly the padding of its window
MIN_SIDE = 32
#: the class code of pixels without data in every band (as in `cloudkit predict`'s masks)
NODATA = 255


class Model:
    """A model on a device, loaded once: masks arrays (:meth:`predict_array`) and scenes
    (``cloudkit.predict(scenes, out, model=this)``)."""

    def __init__(self, predictor: Predictor, source: str) -> None:
        self._predictor = predictor
        #: what it was loaded from: a shipped model's or a peer's name, or a checkpoint path
        self.source = source

    @property
    def predictor(self) -> Predictor:
        """What `cloudkit predict`'s pipeline runs (`predict.writer.predict_paths`)."""
        return self._predictor

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
        """The bands it reads (an any-band model: the 13 slots, of which it takes any set
        holding B02 B03 B04; a peer: none, it picks them from what it is given)."""
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
        sun_angles: SunAngles | tuple[float, float] | None = ...,
        shadows: str | None = ...,
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
        sun_angles: SunAngles | tuple[float, float] | None = ...,
        shadows: str | None = ...,
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
        sun_angles: SunAngles | tuple[float, float] | None = None,
        shadows: str | None = None,
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
        ``shadows``: "geometric" keeps a cloud-shadow pixel only where a cloud of the array
        casts it along the sun's direction (`cloudkit.geometry.shadows`, as `cloudkit predict
        --shadows geometric` does), "model" keeps the model's own; by default the check for
        arrays in memory, the model's for dask arrays (the check needs the whole mask:
        compute the array first). ``sun_angles``: the sun's (azimuth, zenith) in degrees;
        without them the check estimates the direction from the mask (its latitude, from a
        georeferenced DataArray, narrows the search).
        ``batch_size``, ``window``, ``overlap``, ``workers``: as `cloudkit predict`'s options.
        """
        import numpy as np

        from cloudkit.arrays import chunked, labelled, reading, shadowed, values
        from cloudkit.arrays.grid import Windows, to_array_grid

        given: dict[str, Any] = {
            "batch_size": batch_size,
            "window": window,
            "overlap": overlap,
            "workers": workers,
        }
        # the options left unset keep cloudkit.config's defaults, as `cloudkit predict`'s do
        options = PredictOptions(**{k: v for k, v in given.items() if v is not None})
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
        if picked != list(range(len(names))):  # a whole scene is not copied for nothing
            data = data[picked]
        info = self.info
        size, overlap_px = options.window_for(info.tile_size, info.overlap)
        windows = Windows(
            size, overlap_px, _factor(pixel, info.resolution), options.batch_size, options.threads
        )
        shape = (int(data.shape[1]), int(data.shape[2]))
        _require_size(shape, windows.model_shape(*shape))
        sun, check = shadowed.sun_of(sun_angles), _shadow_method(shadows, lazy)
        mask = chunked.masker(model, chosen, pixels, windows, shape)
        classes: Any
        probs: Any
        if lazy:
            classes, probs = chunked.mask_dask(
                mask, data, windows, len(info.classes), with_probs=return_probabilities
            )
        else:
            classes, probs, missing = chunked.mask_numpy(mask, data)
            values.require_some_valid(classes, NODATA)
            if check == shadowed.GEOMETRIC:  # on the model's grid, as predict checks a scene
                latitude = labelled.latitude(like) if like is not None else None
                classes = shadowed.checked(
                    classes, probs, info, resolution=pixel * windows.factor, sun=sun,
                    latitude=latitude, nodata=NODATA,
                )  # fmt: skip
            classes = chunked.blank_missing(to_array_grid(classes, windows.factor, *shape), missing)
            if return_probabilities:
                probs = chunked.blank_missing(to_array_grid(probs, windows.factor, *shape), missing)
        if like is not None:
            classes, probs = labelled.pack(
                like, classes, probs if return_probabilities else None, info.classes, NODATA
            )
        return (classes, probs) if return_probabilities else classes


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


def _require_size(shape: tuple[int, int], model_shape: tuple[int, int]) -> None:
    if min(model_shape) < MIN_SIDE:
        raise TileShapeError(
            f"an array of {shape[0]} x {shape[1]} pixels ({model_shape[0]} x "
            f"{model_shape[1]} at the model's pixel size): cloudkit masks images of at least "
            f"{MIN_SIDE} x {MIN_SIDE} model pixels, the span of the network's deepest features"
        )


def _shadow_method(shadows: str | None, lazy: bool) -> str:
    from cloudkit.arrays.shadowed import GEOMETRIC, MODEL

    if shadows is None:
        return MODEL if lazy else GEOMETRIC
    method = str(shadows).lower()
    if method not in (GEOMETRIC, MODEL):
        raise OptionError(f"shadows={shadows!r}: expected {GEOMETRIC!r} or {MODEL!r}")
    if method == GEOMETRIC and lazy:
        raise OptionError(
            "shadows='geometric' needs the whole mask in memory, which a dask array is not "
            "masked as: compute the array first (array.compute()), or pass shadows='model'"
        )
    return method
