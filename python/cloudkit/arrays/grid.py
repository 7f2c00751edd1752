"""A block of an array's DN through the model, the way `cloudkit predict` runs a scene.

The model reads a grid ``factor`` times coarser than the array's pixels when the array is
finer than the pixel size it works at (a 10 m array for a 20 m model, as `cloudkit predict`
reads a 10 m product at 20 m): the Rust cut averages the DN down, as it does for a product's
bands. Windows lie where `cloudkit predict` puts them on the whole array's grid, tile row by
tile row (`pipeline.windows`), are cut by the same kernel (`kernels.cut_stripe`), predicted in
batches (`predict.writer`) and blended (`predict.blend.RowBlender`); a block's pixels are
blended from every window covering them, so a block gets the very numbers of the whole.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cloudkit import kernels
from cloudkit.arrays.reading import WindowModel
from cloudkit.pipeline.windows import WindowGrid
from cloudkit.pipeline.writer import SceneTally
from cloudkit.predict.blend import RowBlender
from cloudkit.predict.model import ModelInfo
from cloudkit.predict.writer import NODATA, mask_classes, predict_windows


@dataclass(frozen=True)
class Windows:
    """How an array is cut: window edge and overlap on the model's grid, that grid's pixel
    in array pixels, windows per forward pass, kernel threads."""

    size: int
    overlap: int
    factor: int
    batch_size: int
    threads: int

    def model_shape(self, height: int, width: int) -> tuple[int, int]:
        """The model's grid over ``height`` x ``width`` array pixels."""
        return math.ceil(height / self.factor), math.ceil(width / self.factor)


@dataclass(frozen=True)
class Box:
    """Rows ``[y0, y1)`` and columns ``[x0, x1)`` of the array, in array pixels."""

    y0: int
    y1: int
    x0: int
    x1: int


def predict_box(
    model: WindowModel,
    bands: Sequence[str],
    block: np.ndarray,
    shifts: Sequence[int],
    windows: Windows,
    *,
    origin: tuple[int, int],
    core: Box,
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``(channels, h, w)`` (NaN where not valid) and validity ``(h, w)`` on
    the model's grid, of its pixels covering the array pixels ``core`` (`to_array_grid`
    takes them back), from ``block``: ``(C, bh, bw)`` DN of the array (``shape`` array
    pixels in all) from ``origin``, holding every window that covers ``core``."""
    k = windows.factor
    grid = WindowGrid.of(*windows.model_shape(*shape), windows.size, windows.overlap)
    top, bottom = core.y0 // k, math.ceil(core.y1 / k)
    left, right = core.x0 // k, math.ceil(core.x1 / k)
    rows = _covering(grid.rows, top, bottom, windows.size, grid.height)
    cols = _covering(grid.columns[0], left, right, windows.size, grid.width)
    # the windows covering the core, on the model's grid; the crop starts at a window origin,
    # so its own windows are those very windows
    y0, y1 = rows[0] * k - origin[0], min(rows[1] * k, shape[0]) - origin[0]
    x0, x1 = cols[0] * k - origin[1], min(cols[1] * k, shape[1]) - origin[1]
    if y0 < 0 or x0 < 0 or y1 > block.shape[1] or x1 > block.shape[2]:
        raise AssertionError(f"block at {origin} of {block.shape} misses the windows of {core}")
    probs, valid = predict_grid(model, bands, block[:, y0:y1, x0:x1], shifts, windows)
    inside = (slice(top - rows[0], bottom - rows[0]), slice(left - cols[0], right - cols[0]))
    return probs[(slice(None), *inside)], valid[inside]


def to_array_grid(values: np.ndarray, factor: int, height: int, width: int) -> np.ndarray:
    """``(..., h, w)`` on the model's grid -> ``(..., height, width)`` array pixels: each
    model pixel covers ``factor`` x ``factor`` of them (the last row and column may hang
    over the array's edge)."""
    if factor > 1:
        values = values.repeat(factor, axis=-2).repeat(factor, axis=-1)
    return values[..., :height, :width]


def _covering(origins: list[int], lo: int, hi: int, size: int, length: int) -> tuple[int, int]:
    """``[first window origin, end of the last window)`` of the windows covering
    ``[lo, hi)`` along an axis of ``length`` model pixels."""
    inside = [o for o in origins if o < hi and o + size > lo]
    return inside[0], min(inside[-1] + size, length)


def predict_grid(
    model: WindowModel,
    bands: Sequence[str],
    dn: np.ndarray,
    shifts: Sequence[int],
    windows: Windows,
) -> tuple[np.ndarray, np.ndarray]:
    """``(C, h, w)`` DN -> probabilities ``(channels, H, W)`` (NaN where not valid) and
    validity ``(H, W)`` on the model's grid (``windows.factor`` times coarser)."""
    k = windows.factor
    height, width = windows.model_shape(dn.shape[1], dn.shape[2])
    if k > 1 and dn.shape[1:] != (height * k, width * k):
        # the last model pixel of a row or column is the mean of what the array has there
        padded = np.zeros((dn.shape[0], height * k, width * k), dtype=np.uint16)
        padded[:, : dn.shape[1], : dn.shape[2]] = dn
        dn = padded
    grid = WindowGrid.of(height, width, windows.size, windows.overlap)
    channels = model.info.channels
    blender = RowBlender(height, width, windows.size, windows.overlap, channels)
    probs = np.full((channels, height, width), np.nan, dtype=np.float32)
    valid = np.zeros((height, width), dtype=bool)
    factors = [-k if k > 1 else 1] * dn.shape[0]
    tally = SceneTally()
    for row in grid.rows:
        stripes = []
        for band, factor in zip(dn, factors, strict=True):
            first, count = kernels.band_window(row, grid.row_height(row), factor, dn.shape[1])
            stripes.append(np.ascontiguousarray(band[first : first + count]))
        images, window_valid, _, valid_fraction, _ = kernels.cut_stripe(
            row, stripes, factors, height, width, windows.size, windows.overlap,
            [int(s) for s in shifts], threads=windows.threads,
        )  # fmt: skip
        keep = np.flatnonzero(valid_fraction > 0)
        window_probs = predict_windows(
            model,  # type: ignore[arg-type]  # any WindowModel, as for peers in predict
            bands,
            images,
            window_valid,
            keep,
            windows.batch_size,
            tally,
        )
        origins = [grid.columns[row][i] for i in keep]
        for done in blender.add_row(row, origins, window_probs, window_valid[keep]):
            end = done.row0 + done.valid.shape[0]
            probs[:, done.row0 : end] = done.probabilities
            valid[done.row0 : end] = done.valid
    return probs, valid


def classes_of(
    info: ModelInfo, probabilities: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Class codes ``(H, W)`` uint8 (NODATA where not valid) and one probability per class
    ``(classes, H, W)``, by the rule `cloudkit predict` writes its mask with."""
    if info.binary:
        positive = probabilities[0]
        classes = (positive > info.threshold).astype(np.uint8)
        per_class = np.stack([1.0 - positive, positive])
    else:
        classes = mask_classes(info.task, np.nan_to_num(probabilities, nan=0.0))
        per_class = probabilities
    classes[~valid] = NODATA
    return classes, per_class
