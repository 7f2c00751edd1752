"""The sun angles and acquisition time a product's own metadata records.

- ``.SAFE``: the granule's ``MTD_TL.xml`` (``Mean_Sun_Angle``, and the mean viewing incidence
  angles of every band, averaged); the AWS tile layout keeps the same XML as ``metadata.xml``.
- STAC items: ``view:sun_azimuth`` with ``view:sun_elevation``, or ``s2:mean_solar_azimuth``
  with ``s2:mean_solar_zenith``; their ``datetime``.
- GeoTIFF tags that name them (``SUN_AZIMUTH``, ``SUN_ZENITH`` or ``SUN_ELEVATION``, and the
  ``MEAN_SOLAR_*_ANGLE`` spellings, any case).
- an acquisition time in a product or sample name (``..._20170729T153601_...``) or in an AWS
  ``tileInfo.json``: the angles are then computed for the scene's place (`io/grid.py` knows it).

A file that names angles but holds nonsense (text, NaN, out of range) is a one-line error; a
file that does not name them gives None.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from cloudkit.errors import InvalidSceneError
from cloudkit.geometry.sun import MAX_SUN_ZENITH, SunAngles, solar_position

#: the first date-time in a Sentinel-2 name is the datatake's sensing start
_TIME_IN_NAME = re.compile(r"(?<!\d)(\d{8}T\d{6})(?!\d)")

_TAG_NAMES = {
    "azimuth": ("SUN_AZIMUTH", "SUN_AZIMUTH_ANGLE", "MEAN_SOLAR_AZIMUTH_ANGLE", "SOLAR_AZIMUTH"),
    "zenith": ("SUN_ZENITH", "SUN_ZENITH_ANGLE", "MEAN_SOLAR_ZENITH_ANGLE", "SOLAR_ZENITH"),
    "elevation": ("SUN_ELEVATION", "SUN_ELEVATION_ANGLE", "SOLAR_ELEVATION"),
}


def tile_xml_angles(path: Path) -> SunAngles | None:
    """Sun and mean view angles of a granule metadata file (``MTD_TL.xml``), or None when it
    does not record the sun's."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise InvalidSceneError(
            f"{path}: malformed XML ({err}); the product is probably truncated: download it again"
        ) from err
    except OSError as err:
        raise InvalidSceneError(f"{path}: cannot be read ({err.strerror})") from err
    sun = root.find(".//{*}Mean_Sun_Angle")
    if sun is None:
        return None
    zenith = _number(path, "Mean_Sun_Angle/ZENITH_ANGLE", sun.find("{*}ZENITH_ANGLE"))
    azimuth = _number(path, "Mean_Sun_Angle/AZIMUTH_ANGLE", sun.find("{*}AZIMUTH_ANGLE"))
    view_az, view_zen = _mean_view(path, root)
    return SunAngles(azimuth, zenith, path.name, view_azimuth=view_az, view_zenith=view_zen)


def _mean_view(path: Path, root: ET.Element) -> tuple[float | None, float | None]:
    """The view angles averaged over bands (azimuths as unit vectors), or (None, None)."""
    zeniths, east, north = [], 0.0, 0.0
    for node in root.findall(".//{*}Mean_Viewing_Incidence_Angle"):
        zen = node.find("{*}ZENITH_ANGLE")
        az = node.find("{*}AZIMUTH_ANGLE")
        if zen is None or az is None:
            continue
        z = _number(path, "Mean_Viewing_Incidence_Angle/ZENITH_ANGLE", zen)
        a = math.radians(_number(path, "Mean_Viewing_Incidence_Angle/AZIMUTH_ANGLE", az))
        zeniths.append(z)
        east, north = east + math.sin(a), north + math.cos(a)
    if not zeniths:
        return None, None
    return math.degrees(math.atan2(east, north)) % 360.0, sum(zeniths) / len(zeniths)


def _number(path: Path, what: str, node: ET.Element | None) -> float:
    text = (node.text or "").strip() if node is not None else ""
    try:
        value = float(text)
    except ValueError:
        raise InvalidSceneError(f"{path}: {what} is {text!r}; expected degrees") from None
    if not math.isfinite(value):
        raise InvalidSceneError(f"{path}: {what} is {text!r}; expected degrees")
    return value


def safe_angles(product: Path) -> SunAngles | None:
    """The angles of a ``.SAFE`` product's (single) granule, or None without its MTD_TL.xml."""
    found = sorted(product.glob("GRANULE/*/MTD_TL.xml"))
    return tile_xml_angles(found[0]) if found else None


def stac_angles(path: Path, properties: dict) -> SunAngles | None:
    """Sun angles of a STAC item's properties; None when it has none."""
    azimuth = _prop(path, properties, "view:sun_azimuth", "s2:mean_solar_azimuth")
    zenith = _prop(path, properties, "s2:mean_solar_zenith")
    if zenith is None:
        elevation = _prop(path, properties, "view:sun_elevation")
        zenith = None if elevation is None else 90.0 - elevation
    if azimuth is None or zenith is None:
        return None
    return SunAngles(azimuth, zenith, f"{path.name} (STAC item)")


def _prop(path: Path, properties: dict, *keys: str) -> float | None:
    for key in keys:
        if key in properties and properties[key] is not None:
            value = properties[key]
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InvalidSceneError(
                    f"{path}: {key} is {value!r}; expected a number of degrees"
                ) from None
            if not math.isfinite(number):
                raise InvalidSceneError(f"{path}: {key} is {value!r}; expected degrees")
            return number
    return None


def tag_angles(path: Path, tags: dict[str, str]) -> SunAngles | None:
    """Sun angles from a GeoTIFF's metadata tags; None when the tags do not name them."""
    upper = {str(k).upper(): v for k, v in tags.items()}
    found: dict[str, float] = {}
    for what, names in _TAG_NAMES.items():
        for name in names:
            if name in upper:
                found[what] = _tag_number(path, name, upper[name])
                break
    if "zenith" not in found and "elevation" in found:
        found["zenith"] = 90.0 - found["elevation"]
    if "azimuth" not in found or "zenith" not in found:
        return None
    return SunAngles(found["azimuth"], found["zenith"], f"{path.name} (GeoTIFF tags)")


def _tag_number(path: Path, name: str, text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise InvalidSceneError(f"{path}: tag {name} is {text!r}; expected degrees") from None
    if not math.isfinite(value):
        raise InvalidSceneError(f"{path}: tag {name} is {text!r}; expected degrees")
    return value


def time_in_name(name: str) -> datetime | None:
    """The UTC acquisition time in a Sentinel-2 product or sample name, or None."""
    match = _TIME_IN_NAME.search(name)
    if not match:
        return None
    try:
        return datetime.strptime(match[1], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def iso_time(text: object) -> datetime | None:
    """An ISO 8601 time ("2017-07-29T15:35:57.455Z") as aware UTC, or None."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def scene_place(crs, transform, height: int, width: int) -> tuple[float, float] | None:
    """(latitude, longitude) of a grid's centre, or None where it has no usable CRS."""
    from rasterio.errors import RasterioError
    from rasterio.warp import transform as warp

    if crs is None:
        return None
    x, y = transform * (width / 2.0, height / 2.0)
    try:
        lon, lat = warp(crs, "EPSG:4326", [x], [y])
    except (RasterioError, ValueError):
        return None
    if not (math.isfinite(lat[0]) and math.isfinite(lon[0])):
        return None
    return float(lat[0]), float(lon[0])


def plan_sun(plan, given: SunAngles | None = None) -> tuple[SunAngles | None, float | None]:
    """(the sun angles of a planned scene, its latitude): ``given`` first, then the
    product's metadata, then computed from its acquisition time at the grid's centre; None
    when none of these is known (the shadow check then estimates the direction)."""
    place = scene_place(plan.crs, plan.transform, plan.height, plan.width)
    latitude = place[0] if place else None
    scene = plan.scene
    if given is not None:
        return given, latitude
    if scene.sun is not None:
        return scene.sun, latitude
    if scene.acquired is not None and place is not None:
        azimuth, zenith = solar_position(scene.acquired, *place)
        if zenith <= MAX_SUN_ZENITH:
            when = scene.acquired.strftime("%Y-%m-%dT%H:%M:%SZ")
            return SunAngles(
                azimuth, zenith, f"computed for {when} at the scene's centre"
            ), latitude
    return None, latitude
