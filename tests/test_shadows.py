"""The geometric shadow check: shadows with known geometry, shadows no cloud casts, shadows cast
from beyond the scene's edge, scenes without angles, and bad angles."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import numpy as np
import pytest

from cloudkit.errors import InvalidSceneError, OptionError
from cloudkit.geometry.shadows import check_shadows, sun_azimuths
from cloudkit.geometry.sun import SunAngles, parse_sun_angles, solar_position

CLASSES = ("clear", "thick cloud", "thin cloud", "cloud shadow")
CLEAR, CLOUD, SHADOW = 0, 1, 3
RES = 20.0  # metres


def _disk(shape, row, col, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - row) ** 2 + (xx - col) ** 2 <= radius**2


def _cast(cloud: np.ndarray, sun: SunAngles, height_m: float) -> np.ndarray:
    """The shadow of ``cloud`` at ``height_m`` under ``sun``, on the same grid."""
    east, north = sun.shadow_offset()
    dr, dc = int(round(-north * height_m / RES)), int(round(east * height_m / RES))
    out = np.zeros_like(cloud)
    h, w = cloud.shape
    rows, cols = np.nonzero(cloud)
    r, c = rows + dr, cols + dc
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    out[r[inside], c[inside]] = True
    return out & ~cloud


def _mask(cloud: np.ndarray, shadow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes and probabilities of a model that saw exactly these clouds and shadows."""
    classes = np.where(cloud, CLOUD, np.where(shadow, SHADOW, CLEAR)).astype(np.uint8)
    probs = np.zeros((4, *cloud.shape), np.float32)
    probs[0] = 0.9
    probs[1][cloud] = 0.9
    probs[0][cloud] = 0.05
    probs[3][shadow] = 0.85
    probs[0][shadow] = 0.1
    probs[2] = 0.05
    return classes, probs


SUN = SunAngles(150.0, 40.0, "test")


@pytest.fixture
def scene():
    """1000 x 1000 px at 20 m: three cumulus and their true shadows at 1.5 km, plus dark
    forest called shadow where no cloud casts any."""
    shape = (1000, 1000)
    cloud = np.zeros(shape, bool)
    for row, col, radius in ((400, 500, 25), (550, 300, 15), (300, 700, 20)):
        cloud |= _disk(shape, row, col, radius)
    true_shadow = _cast(cloud, SUN, 1500.0)
    forest = _disk(shape, 150, 150, 40) | _disk(shape, 800, 200, 30)
    classes, probs = _mask(cloud, true_shadow | forest)
    return classes, probs, true_shadow, forest


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * float((pred & truth).sum()) / float(pred.sum() + truth.sum())


class TestKnownGeometry:
    def test_keeps_cast_shadow_and_removes_shadow_no_cloud_casts(self, scene):
        classes, probs, true_shadow, forest = scene
        out, report = check_shadows(classes, probs, CLASSES, resolution=RES, sun=SUN)
        shadow = out == SHADOW
        assert shadow[true_shadow].mean() > 0.98  # nothing cast is lost
        assert not shadow[forest].any()  # the forest was no shadow
        assert (out[forest] == CLEAR).all()  # ...and went to the likeliest other class
        assert _f1(shadow, true_shadow) > _f1(classes == SHADOW, true_shadow)
        assert report["sun"]["source"] == "test"
        assert report["matched_objects"] == report["cloud_objects"] == 3
        assert 1.2 < report["cloud_height"]["median"] < 1.8  # km: cast at 1.5
        assert report["removed_pixels"] == int(forest.sum())
        assert report["removed_to"] == {"clear": int(forest.sum())}

    def test_clouds_are_never_touched(self, scene):
        classes, probs, *_ = scene
        out, _ = check_shadows(classes, probs, CLASSES, resolution=RES, sun=SUN)
        np.testing.assert_array_equal(out == CLOUD, classes == CLOUD)

    def test_no_cloud_anywhere_removes_dark_water_and_forest(self):
        shape = (1000, 1000)
        dark = _disk(shape, 150, 150, 60) | _disk(shape, 300, 250, 40)  # far from up-sun edges
        classes, probs = _mask(np.zeros(shape, bool), dark)
        out, report = check_shadows(classes, probs, CLASSES, resolution=RES, sun=SUN)
        assert not (out == SHADOW).any()
        assert report["cloud_objects"] == 0
        assert report["removed_pixels"] == int(dark.sum())

    def test_cloud_beyond_the_edge_still_casts_its_shadow_inside(self):
        """The sun is in the south-east: a cloud just beyond the bottom-right corner casts
        its shadow into the scene; it must stay, while the same patch far from any edge goes."""
        shape = (1000, 1000)
        beyond = _disk((1200, 1200), 1050, 1050, 40)  # the cloud, outside the 1000 px scene
        cast = _cast(beyond, SUN, 1500.0)[:1000, :1000]
        assert cast.sum() > 500  # the shadow does fall inside
        middle = _disk(shape, 200, 200, 30)
        classes, probs = _mask(np.zeros(shape, bool), cast | middle)
        out, report = check_shadows(classes, probs, CLASSES, resolution=RES, sun=SUN)
        assert (out[cast] == SHADOW).all()
        assert not (out[middle] == SHADOW).any()
        assert report["kept_near_edge_pixels"] == int(cast.sum())

    def test_swath_edge_counts_as_an_edge(self):
        """No-data (outside the swath) hides clouds as the scene's edge does."""
        shape = (1000, 1000)
        valid = np.ones(shape, bool)
        valid[:, 600:] = False  # the swath ends at column 600; the sun is to the east
        beyond = _disk(shape, 500, 640, 30)
        cast = _cast(beyond, SUN, 1500.0) & valid
        classes, probs = _mask(np.zeros(shape, bool), cast)
        classes[~valid] = 255
        probs[:, ~valid] = np.nan
        out, _ = check_shadows(classes, probs, CLASSES, resolution=RES, sun=SUN, valid=valid)
        assert (out[cast] == SHADOW).all()

    def test_model_without_shadow_class_is_left_alone(self):
        classes = np.zeros((50, 50), np.uint8)
        probs = np.zeros((2, 50, 50), np.float32)
        out, report = check_shadows(classes, probs, ("clear", "cloud"), resolution=RES, sun=SUN)
        assert out is classes
        assert "no shadow class" in report["note"]


class TestWithoutAngles:
    def test_direction_is_estimated_from_the_mask(self, scene):
        classes, probs, true_shadow, forest = scene
        out, report = check_shadows(
            classes, probs, CLASSES, resolution=RES, sun=None, latitude=45.0
        )
        assert report["sun"]["source"] == "estimated"
        assert abs(report["sun"]["azimuth"] - SUN.azimuth) <= 10
        shadow = out == SHADOW
        assert shadow[true_shadow].mean() > 0.95
        assert not shadow[forest].any()

    def test_latitude_narrows_the_directions_tried(self):
        north, south = sun_azimuths(50.0), sun_azimuths(-50.0)
        assert 150 in north and 300 not in north and 30 not in north
        assert 30 in south and 150 not in south
        assert len(sun_azimuths(None)) == 72

    def test_no_cloud_and_no_angles_removes_all_but_edge_shadow(self):
        shape = (600, 600)
        dark = _disk(shape, 300, 300, 40)
        classes, probs = _mask(np.zeros(shape, bool), dark)
        out, report = check_shadows(classes, probs, CLASSES, resolution=RES, sun=None)
        assert report["sun"]["source"] == "estimated"
        assert "no cloud" in report["sun"]["note"]
        assert not (out == SHADOW).any()


class TestAngles:
    @pytest.mark.parametrize(
        ("azimuth", "zenith"), [(-1, 30), (361, 30), (90, -5), (90, 89), (math.nan, 30)]
    )
    def test_out_of_range_or_nan_is_refused_in_one_line(self, azimuth, zenith):
        with pytest.raises(InvalidSceneError) as err:
            SunAngles(azimuth, zenith, "MTD_TL.xml")
        assert "\n" not in str(err.value) and "MTD_TL.xml" in str(err.value)

    @pytest.mark.parametrize("text", ["150", "a,b", "150,95", "nan,30", "1,2,3"])
    def test_bad_option_is_one_line(self, text):
        with pytest.raises(OptionError) as err:
            parse_sun_angles(text)
        assert str(err.value).startswith(f"--sun-angles {text}:")

    def test_option_parses(self):
        sun = parse_sun_angles(" 152.5, 38 ")
        assert (sun.azimuth, sun.zenith, sun.source) == (152.5, 38.0, "given")

    def test_shadow_falls_away_from_the_sun(self):
        east, north = SunAngles(180.0, 45.0, "t").shadow_offset()  # sun due south
        assert north == pytest.approx(1.0) and east == pytest.approx(0.0, abs=1e-12)
        # a view from the east shifts the cloud west: the shadow, seen from it, moves east
        east, _ = SunAngles(180.0, 45.0, "t", view_azimuth=90.0, view_zenith=10.0).shadow_offset()
        assert east == pytest.approx(math.tan(math.radians(10.0)))

    def test_solar_position_at_the_equinox_noon(self):
        when = datetime(2023, 3, 20, 12, 7, tzinfo=timezone.utc)  # solar noon at 0 E
        azimuth, zenith = solar_position(when, 0.0, 0.0)
        assert zenith < 1.0
        _, zenith = solar_position(when, 45.0, 0.0)
        assert zenith == pytest.approx(45.0, abs=1.0)
        azimuth, _ = solar_position(datetime(2023, 6, 21, 9, 0, tzinfo=timezone.utc), 45.0, 0.0)
        assert 90 < azimuth < 135  # a June morning: the sun in the east-south-east
