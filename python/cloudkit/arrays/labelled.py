"""An xarray DataArray in (bands along its ``band`` dimension), DataArrays out: the classes
``(y, x)`` and probabilities ``(class, y, x)`` keep the input's coordinates and, where
rioxarray is installed, its CRS, transform and a no-data value."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from cloudkit.errors import BandMismatchError, OptionError, TileShapeError
from cloudkit.io.sun_metadata import scene_place

if TYPE_CHECKING:
    import xarray

BAND_DIM = "band"


@dataclass(frozen=True)
class Unpacked:
    """What a DataArray holds: data ``(band, y, x)`` (numpy or dask), band names if its
    coordinate has them, the pixel size if its coordinates tell it."""

    data: Any
    bands: tuple[str, ...] | None
    resolution: float | None


def unpack(array: xarray.DataArray) -> Unpacked:
    if BAND_DIM not in array.dims or array.ndim != 3:
        raise TileShapeError(
            f"a DataArray with dimensions {tuple(array.dims)}: expected 3, one of them "
            f"{BAND_DIM!r} (e.g. ('band', 'y', 'x'), as rioxarray.open_rasterio makes it)"
        )
    spatial = [d for d in array.dims if d != BAND_DIM]
    array = array.transpose(BAND_DIM, *spatial)
    names = None
    if BAND_DIM in array.coords and array.coords[BAND_DIM].dtype.kind in "UO":
        names = tuple(str(v) for v in array.coords[BAND_DIM].values)
    return Unpacked(array.data, names, _pixel_size(array, str(spatial[1])))


def _pixel_size(array: xarray.DataArray, x_dim: str) -> float | None:
    """The pixel size from rioxarray's transform, else from the x coordinate's spacing."""
    if _has_rioxarray():
        try:
            return float(abs(array.rio.resolution()[0]))
        except Exception:  # noqa: BLE001 - rioxarray raises several kinds when it cannot tell
            pass
    if x_dim in array.coords and array.sizes[x_dim] > 1:
        x = np.asarray(array.coords[x_dim].values, dtype=np.float64)
        return float(abs(x[1] - x[0]))
    return None


def band_names(given: Sequence[str] | None, unpacked: Unpacked) -> Sequence[str] | None:
    """``bands=`` when given (it must agree with the coordinate's names), else the names."""
    named = unpacked.bands
    if (
        given is not None
        and named is not None
        and [b.upper() for b in given] != [b.upper() for b in named]
    ):
        raise BandMismatchError(
            f"bands={tuple(given)} but the DataArray's band coordinate holds {named}; give "
            "one of them"
        )
    return given if given is not None else unpacked.bands


def resolution_of(given: float | None, unpacked: Unpacked) -> float:
    if given is not None:
        return given
    if unpacked.resolution is None or not unpacked.resolution > 0:
        raise OptionError(
            "the DataArray's coordinates do not tell its pixel size: pass resolution= in metres"
        )
    return unpacked.resolution


def pack(
    like: xarray.DataArray,
    classes: Any,
    probabilities: Any | None,
    class_names: Sequence[str],
    nodata: int,
) -> tuple[xarray.DataArray, xarray.DataArray | None]:
    """The outputs as DataArrays on the grid of ``like``."""
    import xarray as xr

    spatial = [d for d in like.dims if d != BAND_DIM]
    coords = {n: c for n, c in like.coords.items() if BAND_DIM not in c.dims}
    flags = {
        "flag_values": list(range(len(class_names))),
        "flag_meanings": " ".join(n.replace(" ", "_") for n in class_names),
        "nodata": nodata,
    }
    masks = xr.DataArray(classes, dims=spatial, coords=coords, name="classes", attrs=flags)
    probs = None
    if probabilities is not None:
        probs = xr.DataArray(
            probabilities,
            dims=["class", *spatial],
            coords={**coords, "class": list(class_names)},
            name="probabilities",
        )
    if _has_rioxarray() and like.rio.crs is not None:
        masks = _georeferenced(masks, like).rio.write_nodata(nodata)
        probs = None if probs is None else _georeferenced(probs, like)
    return masks, probs


def latitude(like: xarray.DataArray) -> float | None:
    """The latitude of the DataArray's centre, where rioxarray tells its CRS."""
    if not _has_rioxarray() or like.rio.crs is None:
        return None

    spatial = [d for d in like.dims if d != BAND_DIM]
    height, width = (like.sizes[d] for d in spatial)
    place = scene_place(like.rio.crs, like.rio.transform(), height, width)
    return None if place is None else place[0]


def _georeferenced(out: xarray.DataArray, like: xarray.DataArray) -> xarray.DataArray:
    georeferenced = out.rio.write_crs(like.rio.crs).rio.write_transform(like.rio.transform())
    return cast("xarray.DataArray", georeferenced)


def _has_rioxarray() -> bool:
    if importlib.util.find_spec("rioxarray") is None:
        return False
    import rioxarray  # noqa: F401 - registers the .rio accessor

    return True
