"""Synthetic clouds and shadows: exact labels that match what was painted."""

from __future__ import annotations

import numpy as np
import pytest

from cloudkit.bands import L1C_BANDS, L2A_BANDS
from cloudkit.data.synthetic_clouds import PATH_REFLECTANCE, composite
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
