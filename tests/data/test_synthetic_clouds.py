"""Synthetic clouds and shadows: exact labels that match what was painted."""

from __future__ import annotations

import numpy as np
import pytest

from cloudkit.bands import L1C_BANDS, L2A_BANDS
from cloudkit.data.synthetic_clouds import PATH_REFLECTANCE, _cast_shadow, composite, shadow_shift
from cloudkit.geometry.sun import SunAngles
from cloudkit.io.scene import (
    LABEL_CLEAR,
    LABEL_CLOUD_SHADOW,
    LABEL_NODATA,
    LABEL_THICK_CLOUD,
    LABEL_THIN_CLOUD,
)


def _surface(bands, size=96, value=0.08):
    rng = np.random.default_rng(1)
    return (value + 0.02 * rng.random((len(bands), size, size))).astype(np.float32)


def _many(bands, toa, n=40, size=96):
    image = _surface(bands, size)
    labels = np.zeros((size, size), np.uint8)
    return [
        (image, *composite(image, labels, bands, toa=toa, rng=np.random.default_rng(seed)))
        for seed in range(n)
    ]


def test_same_seed_same_composite():
    image = _surface(L1C_BANDS)
    labels = np.zeros(image.shape[1:], np.uint8)
    a = composite(image, labels, L1C_BANDS, toa=True, rng=np.random.default_rng(7))
    b = composite(image, labels, L1C_BANDS, toa=True, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_inputs_are_not_modified():
    image = _surface(L2A_BANDS)
    labels = np.zeros(image.shape[1:], np.uint8)
    before = image.copy()
    composite(image, labels, L2A_BANDS, toa=False, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(image, before)
    assert (labels == 0).all()


def test_labels_follow_the_paint():
    """Thick cloud is bright in the visible, shadow darker than the surface, every class
    appears over a batch of draws, and no-data stays no-data."""
    red = L1C_BANDS.index("B04")
    seen = set()
    for surface, out, labels in _many(L1C_BANDS, toa=True):
        seen |= set(np.unique(labels).tolist())
        thick = labels == LABEL_THICK_CLOUD
        if thick.any():
            assert out[red][thick].mean() > 0.12 > surface[red].mean()
        shadow = labels == LABEL_CLOUD_SHADOW
        if shadow.any():
            assert (out[red][shadow] < surface[red][shadow]).mean() > 0.97
        untouched = labels == LABEL_CLEAR
        assert np.isfinite(out).all()
        if untouched.any():
            # at most a faint veil (opacity < 0.1, cloud reflectance < 1.5) over what stays clear
            np.testing.assert_allclose(out[:, untouched], surface[:, untouched], atol=0.15)
    assert {LABEL_CLEAR, LABEL_THICK_CLOUD, LABEL_THIN_CLOUD, LABEL_CLOUD_SHADOW} <= seen
    assert LABEL_NODATA in seen  # faint veils and shadows are left unlabelled


def test_ice_veils_are_bright_at_1380_nm_and_darker_in_the_swir():
    """``ice`` veils are high ice cloud: per unit of visible brightness they show more in the
    cirrus band than the low water clouds labelled thick, and less in the SWIR."""
    image = _surface(L1C_BANDS)
    image[L1C_BANDS.index("B10")] = 0.001  # the ground is hidden at 1.38 um
    labels = np.zeros(image.shape[1:], np.uint8)
    cirrus, red, swir = (L1C_BANDS.index(b) for b in ("B10", "B04", "B12"))
    ratios = {LABEL_THIN_CLOUD: ([], []), LABEL_THICK_CLOUD: ([], [])}
    for seed in range(60):
        out, new = composite(
            image, labels, L1C_BANDS, toa=True, rng=np.random.default_rng(seed), veils="ice"
        )
        for label, (at_cirrus, at_swir) in ratios.items():
            pixels = new == label
            if pixels.sum() > 50:
                veil = out[red][pixels] - image[red][pixels]  # what the cloud adds in the red
                at_cirrus.append(np.median(out[cirrus][pixels] / np.maximum(veil, 1e-3)))
                added = out[swir][pixels] - image[swir][pixels]
                at_swir.append(np.median(added / np.maximum(veil, 1e-3)))
    (thin_cirrus, thin_swir), (thick_cirrus, thick_swir) = ratios.values()
    assert len(thin_cirrus) >= 5 and len(thick_cirrus) >= 5
    assert np.median(thin_cirrus) > 2 * np.median(thick_cirrus)
    assert np.median(thin_swir) < np.median(thick_swir)


def test_shadows_keep_the_path_reflectance_on_l1c():
    """A shadow on top-of-atmosphere data cannot fall below the atmosphere's own signal."""
    blue = L1C_BANDS.index("B02")
    for _surface, out, labels in _many(L1C_BANDS, toa=True, n=20):
        shadow = labels == LABEL_CLOUD_SHADOW
        if shadow.any():
            assert out[blue][shadow].min() >= PATH_REFLECTANCE["B02"] - 1e-6


def test_shadows_only_on_clear_ground_and_nan_channels_stay_nan():
    bands = ("B02", "B03", "B04", "B08")
    image = _surface(bands)
    image[3] = np.nan  # a band the product lacks
    labels = np.full(image.shape[1:], LABEL_NODATA, np.uint8)
    for seed in range(20):
        out, new = composite(image, labels, bands, toa=False, rng=np.random.default_rng(seed))
        assert np.isnan(out[3]).all()
        assert not (new == LABEL_CLOUD_SHADOW).any()


def test_rejects_non_square_crops():
    with pytest.raises(ValueError, match="square"):
        composite(
            np.zeros((3, 8, 9), np.float32),
            np.zeros((8, 9), np.uint8),
            ("B02", "B03", "B04"),
            toa=True,
            rng=np.random.default_rng(0),
        )


SOUTH_EAST_SUN = SunAngles(135.0, 45.0, source="test")  # shadows fall to the north-west


def test_shadow_shift_is_the_suns():
    """Away from the sun by height x tan(zenith), heights 0.2 to 12 km as the geometric check
    searches; None once the shadow is more than a crop away."""
    shifts = [shadow_shift(128, np.random.default_rng(s), SOUTH_EAST_SUN, 60.0) for s in range(200)]
    cast = [s for s in shifts if s is not None]
    for rows, cols in cast:
        assert rows < 0 and cols < 0 and rows == pytest.approx(cols)  # up and left, at 45 deg
        assert 200 / 60 - 1e-6 <= np.hypot(rows, cols) <= 128 * np.sqrt(2)
    assert 0 < len(shifts) - len(cast) < len(shifts) / 2  # the highest clouds' fall outside
    at_10m = [shadow_shift(128, np.random.default_rng(s), SOUTH_EAST_SUN, 10.0) for s in range(200)]
    assert sum(s is None for s in at_10m) > len(shifts) - len(cast)
    # unknown sun: any direction, at most about half the crop
    free = [shadow_shift(128, np.random.default_rng(s), None, None) for s in range(200)]
    assert all(s is not None and np.hypot(*s) <= 0.45 * 128 + 1e-6 for s in free)
    assert {np.sign(s[0]) for s in free if s} == {-1.0, 1.0}


def test_a_cloud_casts_its_shadow_by_the_shift():
    """One square cloud in the field: its shadow in the crop is the square moved by the shift
    (up and to the left for a south-east sun), whether the cloud is in the crop or not."""
    size, margin = 64, 48
    field = np.zeros((size + 2 * margin, size + 2 * margin), np.float32)
    field[margin + 40 : margin + 50, margin + 40 : margin + 50] = 1.0  # crop rows/cols 40..49
    shadow = _cast_shadow(field, margin, size, (-30.0, -20.0), np.random.default_rng(0))
    rows, cols = np.nonzero(shadow > 0.5)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (10, 19, 20, 29)
    field[:] = 0.0
    field[margin + 70 : margin + 80, margin + 70 : margin + 80] = 1.0  # below right, outside
    rows, cols = np.nonzero(
        _cast_shadow(field, margin, size, (-30.0, -20.0), np.random.default_rng(0)) > 0.5
    )
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (40, 49, 50, 59)
