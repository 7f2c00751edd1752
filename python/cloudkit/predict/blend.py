"""Blend overlapping window predictions of one tile row at a time into finished scene rows.

Windows sit ``tile - overlap`` apart (the tile store's layout, `kernels.tile_windows`), so two
neighbours share a band of exactly ``overlap`` pixels. Across that band each window's weight
ramps linearly: one fades out as the other fades in, the two weights sum to one, and a pixel
moves smoothly from one window's prediction to the other's, with no seam. Pixels near a
window's border, where the network sees the least context, count the least. At the scene's
own border only one window covers a pixel and the normalised blend is simply its prediction.

Only ``tile`` rows of the scene are held: after tile row ``y0`` is added, rows up to the next
tile row's origin can no longer change and are handed out.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np


def blend_weights(tile: int, overlap: int) -> np.ndarray:
    """``(tile, tile)`` float32 weights: 1 inside, linear ramps over ``overlap`` at each side."""
    if overlap < 0 or 2 * overlap > tile:
        raise ValueError(f"overlap {overlap} must be in 0..tile/2 for tile {tile}")
    i = np.arange(tile, dtype=np.float64) + 0.5
    ramp = np.minimum(1.0, np.minimum(i, tile - i) / overlap) if overlap else np.ones(tile)
    return np.outer(ramp, ramp).astype(np.float32)


def window_origins(length: int, size: int, overlap: int) -> list[int]:
    """Window origins along an axis of ``length`` >= ``size``: evenly spread, neighbours
    sharing at least ``overlap`` pixels, the last one flush with the end (for a network that
    takes windows of one size over an array that is not cut into tiles: the peers)."""
    if length <= size:
        return [0]
    count = -(-(length - overlap) // (size - overlap))
    return [int(v) for v in np.linspace(0, length - size, count).round()]


@dataclass
class BlendedRows:
    """Finished rows ``[row0, row0 + rows)`` of the scene, every column."""

    row0: int
    probabilities: np.ndarray  # float32 (K, rows, width), NaN where not valid
    valid: np.ndarray  # bool (rows, width): every band has data
    pasted: np.ndarray | None  # (P, rows, width) copy of per-pixel extras (e.g. RGB DN)


class RowBlender:
    """Accumulate weighted window probabilities of successive tile rows.

    ``channels``: probability channels per window; ``pasted``: extra per-pixel channels that
    are the same in every window covering a pixel (copied, not blended; 0 to skip).
    """

    def __init__(
        self,
        height: int,
        width: int,
        tile: int,
        overlap: int,
        channels: int,
        *,
        pasted: int = 0,
        pasted_dtype=np.uint16,
    ) -> None:
        self.height, self.width = height, width
        self.tile, self.overlap, self.stride = tile, overlap, tile - overlap
        self._weights = blend_weights(tile, overlap)
        padded = width + tile  # the last window may hang over the right edge
        self._sum = np.zeros((channels, tile, padded), dtype=np.float32)
        self._weight = np.zeros((tile, padded), dtype=np.float32)
        self._valid = np.zeros((tile, padded), dtype=bool)
        self._pasted = np.zeros((pasted, tile, padded), dtype=pasted_dtype) if pasted else None
        self._row0 = 0  # scene row of the buffers' first row
        self._expected_y0 = 0

    def add_row(
        self,
        y0: int,
        cols: list[int],
        probabilities: np.ndarray,
        valid: np.ndarray,
        pasted: np.ndarray | None = None,
    ) -> Iterator[BlendedRows]:
        """Add the windows of the tile row at ``y0`` and yield the rows that are now final.

        ``cols``: each window's column origin; ``probabilities`` ``(n, K, T, T)``; ``valid``
        ``(n, 1, T, T)``; ``pasted`` ``(n, P, T, T)``. Windows without any valid pixel may be
        left out: their pixels are no data. Tile rows must come in order, none skipped.
        """
        if y0 != self._expected_y0:
            raise ValueError(f"tile row {y0} out of order; expected {self._expected_y0}")
        t, w = self.tile, self._weights
        for k, col in enumerate(cols):
            self._sum[:, :, col : col + t] += probabilities[k] * w
            self._weight[:, col : col + t] += w
            self._valid[:, col : col + t] |= valid[k, 0] != 0
            if self._pasted is not None:
                self._pasted[:, :, col : col + t] = cast(np.ndarray, pasted)[k]
        last = y0 + t >= self.height
        done = self.height - y0 if last else self.stride
        yield self._finished(min(done, self.height - y0))
        self._shift(done)
        self._expected_y0 = y0 + self.stride

    def _finished(self, rows: int) -> BlendedRows:
        w = self.width
        weight = self._weight[:rows, :w]
        valid = self._valid[:rows, :w] & (weight > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            probabilities = self._sum[:, :rows, :w] / weight
        probabilities[:, ~valid] = np.nan
        pasted = self._pasted[:, :rows, :w].copy() if self._pasted is not None else None
        return BlendedRows(self._row0, probabilities, valid.copy(), pasted)

    def _shift(self, rows: int) -> None:
        """Drop the first ``rows`` buffer rows (finished); the rest move to the top."""
        keep = self.tile - rows
        for buffer in (self._sum, self._weight, self._valid, self._pasted):
            if buffer is None:
                continue
            view = buffer[..., :, :]
            if keep > 0:
                view[..., :keep, :] = view[..., rows:, :]
            view[..., max(keep, 0) :, :] = 0
        self._row0 += rows
