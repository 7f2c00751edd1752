"""Raster headers: size, CRS and transform of a band file, without reading its pixels.

Every reader and the grid planner open rasters through :func:`read_header`, so a corrupt or
non-raster file is always reported the same way: as an :class:`InvalidSceneError` naming it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioError

from cloudkit.errors import InvalidSceneError

#: File endings cloudkit reads band rasters from, in order of preference.
RASTER_SUFFIXES = (".jp2", ".tif", ".tiff")


@dataclass(frozen=True)
class RasterHeader:
    path: Path
    crs: CRS | None
    transform: Affine
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    descriptions: tuple[str | None, ...]
    # JPEG 2000 keeps its wavelet's lower resolution levels in the codestream: level j is the
    # image 2**j times coarser, decoded at a fraction of the cost. How many a file has (0 for
    # other formats, whose overviews may have been made by any resampling).
    reduced_levels: int = 0


def read_header(path: Path) -> RasterHeader:
    """Open ``path`` for its metadata only; unreadable files raise InvalidSceneError."""
    try:
        # Files without georeferencing are reported by the grid checks with a clearer
        # message than GDAL's warning, so the warning itself is noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(str(path)) as ds:
                return RasterHeader(
                    path=Path(path),
                    crs=ds.crs,
                    transform=ds.transform,
                    width=ds.width,
                    height=ds.height,
                    count=ds.count,
                    dtypes=tuple(ds.dtypes),
                    descriptions=tuple(ds.descriptions),
                    reduced_levels=_reduced_levels(ds),
                )
    except RasterioError as err:
        reason = " ".join(str(err).split())  # GDAL messages may span lines
        raise InvalidSceneError(
            f"{path}: not a readable raster ({reason}); expected a GeoTIFF or JPEG 2000 band "
            "file: download it again or remove it"
        ) from err


def read_tags(path: Path) -> dict[str, str]:
    """The dataset-level metadata tags of a raster (``{}`` where GDAL reads none)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(str(path)) as ds:
                return dict(ds.tags())
    except RasterioError as err:
        reason = " ".join(str(err).split())
        raise InvalidSceneError(f"{path}: not a readable raster ({reason})") from err


def _reduced_levels(ds) -> int:
    """The JPEG 2000 resolution levels GDAL shows as overviews: 2, 4, 8... times coarser."""
    if ds.driver != "JP2OpenJPEG" or ds.count < 1:
        return 0
    levels = 0
    for decimation in ds.overviews(1):
        if decimation != 2 ** (levels + 1):
            break
        levels += 1
    return levels


def is_present(path: Path) -> bool:
    """Whether a band or label file is there to read. A GDAL virtual path (``/vsis3/``,
    ``/vsicurl/``) was listed by its reader, or named by the user, a moment ago: it is."""
    return str(path).startswith("/vsi") or path.is_file()


def find_raster(stem_path: Path) -> Path | None:
    """The existing file ``stem_path`` + one of RASTER_SUFFIXES, or None."""
    for suffix in RASTER_SUFFIXES:
        candidate = stem_path.with_name(stem_path.name + suffix)
        if candidate.is_file():
            return candidate
    return None
