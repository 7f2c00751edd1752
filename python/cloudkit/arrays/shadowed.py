"""The geometric shadow check (`cloudkit.geometry.shadows`) on a mask in memory, as `cloudkit predict`
runs it on a scene's: a cloud-shadow pixel stays only where a cloud casts it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cloudkit.errors import InvalidSceneError, OptionError
from cloudkit.geometry.shadows import check_shadows
from cloudkit.geometry.sun import SunAngles
from cloudkit.predict.model import ModelInfo

GEOMETRIC, MODEL = "geometric", "model"


def sun_of(angles: SunAngles | Sequence[float] | None) -> SunAngles | None:
    """``(azimuth, zenith)`` in degrees, as ``--sun-angles`` takes them, or SunAngles."""
    if angles is None or isinstance(angles, SunAngles):
        return angles
    try:
        azimuth, zenith = (float(a) for a in angles)
    except (TypeError, ValueError):
        raise OptionError(
            f"sun_angles={angles!r}: expected (azimuth, zenith) in degrees, e.g. (152.3, 38.0)"
        ) from None
    try:
        return SunAngles(azimuth, zenith, "given")
    except InvalidSceneError as err:
        raise OptionError(f"sun_angles: {str(err).split(': ', 1)[1]}") from None


def checked(
    classes: np.ndarray,
    per_class: np.ndarray,
    info: ModelInfo,
    *,
    resolution: float,
    sun: SunAngles | None,
    latitude: float | None,
    nodata: int,
) -> np.ndarray:
    """``classes`` with the shadow no cloud casts given to the next likeliest class (the
    class rule of the model's task, as `predict.shadow_pass` does)."""
    rule = "multi" if info.task == "multi" else "argmax"
    out, _ = check_shadows(
        classes,
        per_class,
        info.classes,
        resolution=resolution,
        sun=sun,
        valid=classes != nodata,
        rule=rule,
        latitude=latitude,
    )
    return out
