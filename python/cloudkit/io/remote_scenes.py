"""Scenes in object storage or on a web server, read in place by GDAL's virtual file systems
(``/vsis3/``, ``/vsicurl/``): only the headers and the windows a run decodes travel.

- ``https://.../scene.tif`` or ``s3://bucket/.../scene.tif``: one GeoTIFF or COG (13 or 12
  bands, or band descriptions naming them), as a local GeoTIFF is read;
- ``s3://bucket/prefix``: a band folder (one raster per band, as the Sentinel-2 COGs and
  the L1C tiles on AWS are laid out, with their tileInfo.json or STAC item), or a prefix
  holding such folders one level down. A web server cannot list a folder, so over https only
  single files are read; a ``.SAFE`` in object storage is not read in place (download it).
"""

from __future__ import annotations

import posixpath
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, urlsplit

from cloudkit.errors import SceneNotFoundError, UnknownLayoutError
from cloudkit.io.datasets import band_files, read_band_folder, read_geotiff
from cloudkit.io.location import S3Location, configure_gdal, is_url
from cloudkit.io.raster import RASTER_SUFFIXES
from cloudkit.io.scene import Scene

#: JSON documents larger than this beside the bands are not product metadata
_MAX_DOCUMENT_BYTES = 1 << 20


def as_url(path: Path | str) -> str | None:
    """The URL a path argument names, or None for a local path (a URL that went through
    ``Path`` has lost a slash: ``s3:/bucket``)."""
    text = str(path)
    for scheme in ("s3", "https", "http"):
        if text.startswith(f"{scheme}:/") and not text.startswith(f"{scheme}://"):
            text = f"{scheme}://" + text.removeprefix(f"{scheme}:/")
    return text if is_url(text) else None


def remote_scenes(url: str, *, scl_labels: bool = False) -> list[Scene]:
    """Every scene at ``url`` (see the module docstring)."""
    configure_gdal()
    parts = urlsplit(url)
    suffix = posixpath.splitext(parts.path)[1].lower()
    if suffix in RASTER_SUFFIXES:
        if parts.scheme == "s3":
            return [read_geotiff(Path(f"/vsis3/{parts.netloc}{parts.path}"))]
        # the URL quoted whole: a Path would fold the // of http:// into one slash
        gdal = Path(f"/vsicurl?list_dir=no&url={quote(url, safe='')}")
        name = posixpath.splitext(posixpath.basename(parts.path))[0]
        return [replace(read_geotiff(gdal), scene_id=name)]
    if parts.scheme != "s3":
        raise UnknownLayoutError(
            f"{url}: over {parts.scheme} only a single GeoTIFF or COG is read (a web server "
            "cannot list a folder); give the file's URL, or the folder as s3://"
        )
    if parts.path.rstrip("/").endswith(".SAFE"):
        raise UnknownLayoutError(
            f"{url}: a .SAFE in object storage is not read in place; download it (aws s3 sync) "
            "and pass the local folder, or use its band files (s3://.../B02.jp2 ...)"
        )
    files = _listing(S3Location(url))
    if not files:
        raise SceneNotFoundError(f"{url}: no such prefix, or nothing under it")
    folders = sorted({posixpath.dirname(key) for key in files})
    scenes = []
    for folder in folders:
        if "/" in folder:  # band folders are the prefix itself or one level down
            continue
        names = [posixpath.basename(k) for k in files if posixpath.dirname(k) == folder]
        gdal = Path(f"/vsis3/{parts.netloc}{parts.path.rstrip('/')}") / folder
        if band_files(gdal, names):
            scenes.append(_band_folder(S3Location(url), folder, gdal, names, files, scl_labels))
    if not scenes:
        raise UnknownLayoutError(
            f"{url}: holds no band folder (B02.tif ... or B02.jp2 ...) in the prefix or one "
            "level down"
        )
    return scenes


def _listing(location: S3Location) -> dict[str, int]:
    """Every object under the prefix: its key below the prefix, and its size."""
    import obstore

    return {
        obj["path"]: int(obj["size"]) for batch in obstore.list(location._store) for obj in batch
    }


def _band_folder(
    location: S3Location,
    folder: str,
    gdal: Path,
    names: list[str],
    sizes: dict[str, int],
    scl_labels: bool,
) -> Scene:
    documents = {}
    for name in names:
        key = posixpath.join(folder, name) if folder else name
        if name.endswith(".json") and sizes[key] <= _MAX_DOCUMENT_BYTES:
            documents[name] = location.read(key) or b""
    return read_band_folder(gdal, scl_labels=scl_labels, names=names, documents=documents)
