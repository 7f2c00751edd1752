"""Where the sun (and the satellite) stood for a scene: the angles a cloud's shadow follows.

A cloud at height h casts its shadow h * tan(sun zenith) away from the sun, along the sun's
azimuth turned by 180 degrees. Seen from a satellite off nadir, the cloud itself appears
h * tan(view zenith) away from the satellite, so the shadow sits at
``h * (tan(view zenith) * u(view azimuth) - tan(sun zenith) * u(sun azimuth))`` from where the
cloud appears (u: the unit vector of an azimuth, clockwise from north).

Angles come, best first, from the user (``--sun-angles``), the product's metadata (``source``
names the file), or the acquisition time and place (the NOAA solar position equations,
accurate to about 0.01 degree between 1901 and 2099); `cloudkit.geometry.shadows` estimates the
shadow direction from the mask itself when none of these is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone

from cloudkit.errors import InvalidSceneError, OptionError

#: beyond this zenith the sun grazes the horizon: shadows are unbounded and Sentinel-2 does
#: not acquire (its products stop near 82 degrees)
MAX_SUN_ZENITH = 85.0
#: Sentinel-2's widest view zenith is about 12 degrees at the swath's edge
MAX_VIEW_ZENITH = 20.0


@dataclass(frozen=True)
class SunAngles:
    """Mean sun (and view) angles of a scene, in degrees; azimuths clockwise from north."""

    azimuth: float
    zenith: float
    #: where they came from: "given", a metadata file's name, "computed from ..." or "estimated"
    source: str
    view_azimuth: float | None = None
    view_zenith: float | None = None

    def __post_init__(self) -> None:
        check_angles(self.azimuth, self.zenith, what=self.source)
        if (self.view_azimuth is None) != (self.view_zenith is None):
            raise ValueError("view azimuth and zenith go together")
        if self.view_zenith is not None and not (0.0 <= self.view_zenith <= MAX_VIEW_ZENITH):
            raise InvalidSceneError(
                f"{self.source}: view zenith {self.view_zenith} is out of range; expected 0 "
                f"to {MAX_VIEW_ZENITH:g} degrees"
            )

    def shadow_offset(self) -> tuple[float, float]:
        """(east, north) metres from a cloud as seen to its shadow, per metre of its height."""
        az, zen = math.radians(self.azimuth), math.radians(self.zenith)
        east = -math.tan(zen) * math.sin(az)
        north = -math.tan(zen) * math.cos(az)
        if self.view_zenith is not None and self.view_azimuth is not None:
            vaz, vzen = math.radians(self.view_azimuth), math.radians(self.view_zenith)
            east += math.tan(vzen) * math.sin(vaz)
            north += math.tan(vzen) * math.cos(vaz)
        return east, north

    def as_dict(self) -> dict:
        out: dict = {"azimuth": round(self.azimuth, 4), "zenith": round(self.zenith, 4)}
        if self.view_zenith is not None:
            out["view_azimuth"] = round(float(self.view_azimuth or 0.0), 4)
            out["view_zenith"] = round(self.view_zenith, 4)
        out["source"] = self.source
        return out


def check_angles(azimuth: float, zenith: float, *, what: str) -> None:
    """A one-line error unless the azimuth is in 0..360 and the zenith in 0..MAX_SUN_ZENITH
    (NaN fails: every comparison with it is false)."""
    if not (0.0 <= azimuth <= 360.0):
        raise InvalidSceneError(
            f"{what}: sun azimuth {azimuth} is out of range; expected 0 to 360 degrees, "
            "clockwise from north"
        )
    if not (0.0 <= zenith <= MAX_SUN_ZENITH):
        raise InvalidSceneError(
            f"{what}: sun zenith {zenith} is out of range; expected 0 to {MAX_SUN_ZENITH:g} "
            "degrees (90 minus the sun's elevation)"
        )


def parse_sun_angles(text: str) -> SunAngles:
    """``--sun-angles AZIMUTH,ZENITH`` (degrees) -> SunAngles; OptionError otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        azimuth, zenith = (float(p) for p in parts)
    except ValueError:
        raise OptionError(
            f"--sun-angles {text}: expected AZIMUTH,ZENITH in degrees, e.g. 152.3,38.0"
        ) from None
    try:
        return SunAngles(azimuth % 360.0 if azimuth == 360.0 else azimuth, zenith, "given")
    except InvalidSceneError as err:
        raise OptionError(f"--sun-angles {text}: {str(err).split(': ', 1)[1]}") from None


def solar_position(when: datetime, latitude: float, longitude: float) -> tuple[float, float]:
    """(azimuth, zenith) of the sun in degrees at ``when`` (aware, or naive UTC) seen from
    ``latitude``, ``longitude`` (degrees): NOAA's general solar position equations."""
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    day_start = when.replace(hour=0, minute=0, second=0, microsecond=0)
    hours = (when - day_start).total_seconds() / 3600.0
    days_in_year = 366 if _leap(when.year) else 365
    gamma = 2 * math.pi / days_in_year * (when.timetuple().tm_yday - 1 + (hours - 12) / 24)
    eqtime = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    decl = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    true_solar_minutes = hours * 60 + eqtime + 4 * longitude
    hour_angle = math.radians(true_solar_minutes / 4 - 180)
    lat = math.radians(latitude)
    cos_zen = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)
    zenith = math.acos(max(-1.0, min(1.0, cos_zen)))
    # azimuth clockwise from north, from the sun's east and north components
    east = -math.sin(hour_angle) * math.cos(decl)
    north = math.cos(lat) * math.sin(decl) - math.sin(lat) * math.cos(decl) * math.cos(hour_angle)
    azimuth = math.degrees(math.atan2(east, north)) % 360.0
    return azimuth, math.degrees(zenith)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
