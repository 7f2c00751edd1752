"""Blending of overlapping window predictions (`cloudkit.predict.blend`), on generated windows
that stand for a network's output: a smooth field seen through windows, optionally with a
per-window bias (what a network's border effects look like)."""

from __future__ import annotations

import numpy as np
import pytest

from cloudkit import _core
from cloudkit.predict.blend import RowBlender, blend_weights


def _windows(height, width, tile, overlap):
    rows: dict[int, list[int]] = {}
    for r, c in _core.tile_windows(height, width, tile, overlap):
        rows.setdefault(r, []).append(c)
    return rows


def _blend(field, tile, overlap, *, bias=None, drop=()):
    """Blend windows cut from ``field`` (K, H, W); ``bias(r, c)`` is added per window and
    windows in ``drop`` (origins) are left out as if they held no valid pixel."""
    k, h, w = field.shape
    padded = np.zeros((k, h + tile, w + tile), dtype=np.float32)
    padded[:, :h, :w] = field
    blender = RowBlender(h, w, tile, overlap, k, pasted=1)
    out = np.full((k, h, w), -1.0, dtype=np.float32)
    valid_out = np.zeros((h, w), dtype=bool)
    pasted_out = np.zeros((1, h, w), dtype=np.uint16)
    next_row = 0
    for r, cols in _windows(h, w, tile, overlap).items():
        kept = [c for c in cols if (r, c) not in drop]
        probs = np.stack([padded[:, r : r + tile, c : c + tile] for c in kept]) if kept else None
        if probs is None:
            probs = np.zeros((0, k, tile, tile), dtype=np.float32)
        if bias is not None:
            probs = probs + np.array([bias(r, c) for c in kept], dtype=np.float32).reshape(
                -1, 1, 1, 1
            )
        valid = np.ones((len(kept), 1, tile, tile), dtype=np.uint8)
        pasted = np.full((len(kept), 1, tile, tile), 7, dtype=np.uint16)
        for rows in blender.add_row(r, kept, probs, valid, pasted):
            assert rows.row0 == next_row  # each scene row once, in order
            n = rows.probabilities.shape[1]
            out[:, rows.row0 : rows.row0 + n] = rows.probabilities
            valid_out[rows.row0 : rows.row0 + n] = rows.valid
            pasted_out[:, rows.row0 : rows.row0 + n] = rows.pasted
            next_row += n
    assert next_row == h
    return out, valid_out, pasted_out


def test_weights_fade_in_as_the_neighbour_fades_out():
    tile, overlap = 48, 12
    ramp = blend_weights(tile, overlap)[tile // 2] / blend_weights(tile, overlap)[tile // 2].max()
    stride = tile - overlap
    np.testing.assert_allclose(ramp[stride:] + ramp[:overlap], 1.0, atol=1e-6)
    assert (blend_weights(tile, overlap) > 0).all()
    assert (blend_weights(tile, 0) == 1).all()
    with pytest.raises(ValueError):
        blend_weights(tile, tile // 2 + 1)


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap"), [(100, 130, 32, 8), (64, 64, 32, 0), (31, 200, 32, 16)]
)
def test_a_field_seen_through_windows_is_rebuilt_exactly(h, w, tile, overlap):
    rng = np.random.default_rng(0)
    field = rng.random((2, h, w), dtype=np.float32)
    out, valid, pasted = _blend(field, tile, overlap)
    np.testing.assert_allclose(out, field, rtol=1e-5, atol=1e-6)
    assert valid.all()
    assert (pasted == 7).all()


def test_window_biases_blend_without_a_jump():
    """Each window adds its own constant (a network's border effects differ per window):
    the blend must change gradually across every overlap, never jump at a window edge."""
    h = w = 200
    tile, overlap = 48, 16
    field = np.zeros((1, h, w), dtype=np.float32)
    rng = np.random.default_rng(1)
    biases = {}

    def bias(r, c):
        return biases.setdefault((r, c), float(rng.uniform(0, 1)))

    out, _, _ = _blend(field, tile, overlap, bias=bias)
    step = np.abs(np.diff(out[0], axis=1)).max()
    # biases differ by up to 1 between neighbours; spread over 16 columns a step is <= 1/16
    assert step <= 1.0 / overlap + 1e-5
    # the same windows cut hard (no overlap) do jump by the bias difference
    hard, _, _ = _blend(field, tile, 0, bias=bias)
    assert np.abs(np.diff(hard[0], axis=1)).max() > 4 * step


def test_dropped_windows_leave_no_data():
    h, w, tile, overlap = 64, 96, 32, 8
    field = np.full((1, h, w), 0.25, dtype=np.float32)
    dropped = (0, 0)
    out, valid, _ = _blend(field, tile, overlap, drop={dropped})
    # pixels only the dropped window covers have no prediction
    stride = tile - overlap
    assert not valid[:stride, :stride].any()
    assert np.isnan(out[0, :stride, :stride]).all()
    # where a neighbour covers them too, its prediction stands alone
    np.testing.assert_allclose(out[0][valid], 0.25, rtol=1e-6)
    assert valid[stride:].all()


def test_rows_out_of_order_are_refused():
    blender = RowBlender(100, 100, 32, 8, 1)
    with pytest.raises(ValueError, match="out of order"):
        list(
            blender.add_row(
                24, [], np.zeros((0, 1, 32, 32), np.float32), np.zeros((0, 1, 32, 32), np.uint8)
            )
        )
