"""Turn the paths a user gives into Scenes, whatever layout each path has.

A path may be a product, a band folder, a GeoTIFF, a dataset root, or a folder holding any of
those (one level down). The result is sorted by scene id, and each id must be unique.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cloudkit.errors import InvalidSceneError, SceneNotFoundError, UnknownLayoutError
from cloudkit.io.datasets import (
    SEN12MS_NAME,
    is_band_folder,
    is_cloudsen12_root,
    is_sen12ms_root,
    is_whus2_root,
    read_band_folder,
    read_cloudsen12,
    read_geotiff,
    read_sen12ms,
    read_whus2,
)
from cloudkit.io.remote_scenes import as_url, remote_scenes
from cloudkit.io.safe import MTD_LAYOUTS, find_mtd, read_safe
from cloudkit.io.scene import Scene

SUPPORTED_LAYOUTS = (
    "a .SAFE product (L1C or L2A), a band folder (B01.jp2 ... B12.jp2), a 13- or 12-band "
    "GeoTIFF, a CloudSEN12 root (cloudsen12_metadata.csv), a WHUS2-CD+ root "
    "({train,test}/10m/...), a SEN12MS folder (ROIs*_s2_*_p*.tif), or a folder of these; "
    "in object storage, s3:// band folders and GeoTIFFs, https:// GeoTIFFs"
)
_GEOTIFF_SUFFIXES = (".tif", ".tiff")


def discover_scenes(paths: Sequence[Path], *, scl_labels: bool = False) -> list[Scene]:
    """Every scene under ``paths``, sorted by scene id; ``scl_labels`` offers L2A SCL labels."""
    scenes: list[Scene] = []
    for path in map(Path, paths):
        url = as_url(path)
        if url is not None:  # in object storage or on a web server: read in place
            scenes.extend(remote_scenes(url, scl_labels=scl_labels))
            continue
        if not path.exists():
            raise SceneNotFoundError(
                f"{path}: no such file or folder; expected {SUPPORTED_LAYOUTS}"
            )
        found = _scenes_at(path, scl_labels)
        if found is None and path.is_dir():
            found = _scenes_below(path, scl_labels)
        if not found:
            raise UnknownLayoutError(
                f"{path}: matches no layout cloudkit reads; expected {SUPPORTED_LAYOUTS}"
            )
        scenes.extend(found)
    return _sorted_unique(scenes)


def _scenes_at(path: Path, scl_labels: bool) -> list[Scene] | None:
    """The scenes ``path`` itself holds, or None when it matches no layout."""
    if path.is_file():
        if path.name in MTD_LAYOUTS:
            return [read_safe(path.parent, scl_labels=scl_labels)]
        if path.suffix.lower() in _GEOTIFF_SUFFIXES:
            if SEN12MS_NAME.match(path.name):
                return read_sen12ms(path)
            return [read_geotiff(path)]
        if path.suffix.lower() == ".zip":
            raise UnknownLayoutError(f"{path}: a zip archive; unzip it and pass the folder")
        return None
    if path.suffix == ".SAFE" or find_mtd(path) is not None:
        return [read_safe(path, scl_labels=scl_labels)]
    if is_cloudsen12_root(path):
        return read_cloudsen12(path)
    if is_whus2_root(path):
        return read_whus2(path)
    if is_band_folder(path):
        return [read_band_folder(path, scl_labels=scl_labels)]
    if is_sen12ms_root(path):
        return read_sen12ms(path)
    return None


def _scenes_below(folder: Path, scl_labels: bool) -> list[Scene]:
    found: list[Scene] = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        try:
            found.extend(_scenes_at(child, scl_labels) or [])
        except UnknownLayoutError:
            # Other files beside the products (a 1-band mask, an archive) are not scenes.
            continue
    return found


def _sorted_unique(scenes: list[Scene]) -> list[Scene]:
    by_id: dict[str, Scene] = {}
    for scene in scenes:
        if scene.scene_id in by_id:
            raise InvalidSceneError(
                f"scene {scene.scene_id} found twice: {by_id[scene.scene_id].path} and "
                f"{scene.path}; expected each scene once: pass one of them"
            )
        by_id[scene.scene_id] = scene
    return [by_id[key] for key in sorted(by_id)]
