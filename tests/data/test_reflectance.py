"""`_core.window_inputs`, the CPU predictor's input kernel, against the one conversion of
`data.reflectance.store_reflectance` that training and evaluation use: equal to the bit, in
float32 and after torch's own rounding to bf16, for any store values, validity and per-band
scale and offset (generated: they stand for windows of a tile store)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudkit import _core
from cloudkit.data.reflectance import ValueScale, band_constants, store_reflectance


@st.composite
def windows(draw):
    n, bands = draw(st.integers(1, 3)), draw(st.integers(1, 13))
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 65536, size=(n, bands, h, w), dtype=np.uint16)
    values[rng.random(values.shape) < 0.1] = 0  # no data in single bands
    valid = (rng.random((n, 1, h, w)) > 0.2).astype(np.uint8)
    scale = draw(
        st.lists(st.floats(float(np.float32(1e-6)), 1.0, width=32), min_size=bands, max_size=bands)
    )
    offset = draw(st.lists(st.floats(-1.0, 1.0, width=32), min_size=bands, max_size=bands))
    return values, valid, scale, offset


def _reference(values, valid, scale, offset) -> torch.Tensor:
    return store_reflectance(
        torch.from_numpy(values),
        torch.from_numpy(valid),
        band_constants(scale),
        band_constants(offset),
    )


@given(windows())
@settings(max_examples=80, deadline=None)
def test_float32_equals_store_reflectance(case):
    values, valid, scale, offset = case
    nhwc = _core.window_inputs(values, valid, scale, offset)
    assert nhwc.dtype == np.float32 and nhwc.shape == (
        values.shape[0],
        *values.shape[2:],
        values.shape[1],
    )
    got = torch.from_numpy(nhwc).permute(0, 3, 1, 2)
    assert torch.equal(got, _reference(values, valid, scale, offset))


@given(windows())
@settings(max_examples=80, deadline=None)
def test_bf16_equals_torchs_rounding(case):
    values, valid, scale, offset = case
    bits = _core.window_inputs(values, valid, scale, offset, bf16=True)
    got = torch.from_numpy(bits).view(torch.bfloat16).permute(0, 3, 1, 2)
    expected = _reference(values, valid, scale, offset).to(torch.bfloat16)
    assert torch.equal(got.view(torch.int16), expected.view(torch.int16))  # bit for bit


def test_shape_errors_are_clear():
    values = np.ones((2, 3, 4, 4), dtype=np.uint16)
    with pytest.raises(ValueError, match="valid has shape"):
        _core.window_inputs(values, np.ones((2, 1, 4, 5), np.uint8), [1.0] * 3, [0.0] * 3)
    with pytest.raises(ValueError, match="one scale per band"):
        _core.window_inputs(values, np.ones((2, 1, 4, 4), np.uint8), [1.0] * 2, [0.0] * 3)


@given(windows())
@settings(max_examples=40, deadline=None)
def test_value_scale_reflectance_is_the_same_conversion(case):
    """The quicklook's path: chosen bands of pasted store values, no validity mask."""
    values, _, scale, offset = case
    image = values[0]
    bands = list(range(image.shape[0]))[::-1]
    chosen = ValueScale(tuple(np.take(scale, bands)), tuple(np.take(offset, bands)))
    got = chosen.reflectance(image[bands])
    every = np.ones((1, *image.shape[1:]), np.uint8)
    expected = _reference(image[bands], every, np.take(scale, bands), np.take(offset, bands))
    assert torch.equal(torch.from_numpy(got), expected)
