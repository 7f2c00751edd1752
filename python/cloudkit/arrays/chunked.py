"""One mask function for every kind of array: a numpy array is one block, a dask array is
masked block by block (``dask.array.map_overlap``), each block read with a margin of one
window on each side, which holds every window covering it (`grid.predict_box`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import numpy as np

from cloudkit.arrays.grid import Box, Windows, classes_of, predict_box, to_array_grid
from cloudkit.arrays.reading import WindowModel
from cloudkit.arrays.values import Pixels, to_dn
from cloudkit.predict.writer import NODATA

if TYPE_CHECKING:
    import dask.array

#: ``(classes (h, w) uint8, per_class (K, h, w) float32)`` of the array pixels ``core``, on
#: the model's grid, and ``missing`` ``(H, W)`` bool, on the array's: its pixels of ``core``
#: with no data in some band
Masker = Callable[[np.ndarray, tuple[int, int], Box], tuple[np.ndarray, np.ndarray, np.ndarray]]


def masker(
    model: WindowModel,
    bands: Sequence[str],
    pixels: Pixels,
    windows: Windows,
    shape: tuple[int, int],
) -> Masker:
    """The function that masks the array pixels ``core`` from a block of the array's bands
    (``(C, bh, bw)``, ordered as ``bands``, read from ``origin``), on the model's grid."""

    def mask(
        block: np.ndarray, origin: tuple[int, int], core: Box
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dn = to_dn(block, pixels)
        probs, valid = predict_box(
            model, bands, dn, pixels.shifts, windows, origin=origin, core=core, shape=shape
        )
        y0, x0 = core.y0 - origin[0], core.x0 - origin[1]
        missing = np.zeros((core.y1 - core.y0, core.x1 - core.x0), dtype=bool)
        for band in dn[:, y0 : y0 + missing.shape[0], x0 : x0 + missing.shape[1]]:
            missing |= band == 0  # a band at a time: a scene's (C, H, W) bools are big
        return (*classes_of(model.info, probs, valid), missing)

    return mask


def mask_numpy(mask: Masker, array: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(C, H, W)``: the whole array as one block; classes and probabilities on the model's
    grid (`grid.to_array_grid` takes them to the array's, `blank_missing` then blanks its
    pixels without data), and which array pixels have no data."""
    height, width = array.shape[1:]
    return mask(array, (0, 0), Box(0, height, 0, width))


def mask_dask(
    mask: Masker, array: dask.array.Array, windows: Windows, classes: int, *, with_probs: bool
) -> tuple[dask.array.Array, dask.array.Array | None]:
    """``(C, H, W)`` dask array -> lazy class codes ``(H, W)`` and, ``with_probs``, one
    probability per class ``(classes, H, W)``; each output chunk is masked from its input
    chunk and a margin."""
    import dask.array as da

    k = windows.factor
    margin = windows.size * k  # one window: every window covering a chunk starts within it
    ys = _chunks(array.chunks[1], k, margin)
    xs = _chunks(array.chunks[2], k, margin)
    array = array.rechunk(((array.shape[0],), ys, xs))  # type: ignore[no-untyped-call]
    # a lone chunk along an axis has no neighbour to borrow from
    depth = {0: 0, 1: margin if len(ys) > 1 else 0, 2: margin if len(xs) > 1 else 0}
    starts_y, starts_x = [0, *accumulate(ys)], [0, *accumulate(xs)]
    out = classes + 1 if with_probs else 1

    def block_mask(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None  # dask passes it to a function that names it
        _, iy, ix = block_info[0]["chunk-location"]
        core = Box(starts_y[iy], starts_y[iy + 1], starts_x[ix], starts_x[ix + 1])
        origin = (max(0, core.y0 - depth[1]), max(0, core.x0 - depth[2]))
        codes, per_class, missing = mask(block, origin, core)
        shape = (core.y1 - core.y0, core.x1 - core.x0)
        codes = blank_missing(to_array_grid(codes, k, *shape), missing)
        if not with_probs:
            return codes[None]
        per_class = blank_missing(to_array_grid(per_class.astype(np.float32), k, *shape), missing)
        return np.concatenate([per_class, codes[None].astype(np.float32)])

    stacked = da.map_overlap(  # type: ignore[no-untyped-call]
        block_mask,
        array,
        depth=depth,
        boundary="none",
        trim=False,
        allow_rechunk=False,
        chunks=((out,), ys, xs),
        dtype=np.float32 if with_probs else np.uint8,
        meta=np.empty((0, 0, 0), dtype=np.float32 if with_probs else np.uint8),
    )
    if not with_probs:
        return stacked[0], None
    return stacked[-1].astype(np.uint8), stacked[:-1]


def blank_missing(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Class codes ``(H, W)`` (NODATA) or probabilities ``(K, H, W)`` (NaN) on the array's
    grid, blanked in place where the array has no data. A model pixel averages the array
    pixels it covers that have data, so without this a pixel with no data in a finer array
    would take the class of its neighbours."""
    if missing.any():  # a scene's probabilities are large: no pass for nothing
        values[..., missing] = NODATA if values.dtype == np.uint8 else np.nan
    return values


def _chunks(sizes: Sequence[int], factor: int, margin: int) -> tuple[int, ...]:
    """Chunks along an axis: whole model pixels (multiples of ``factor``), each at least
    ``margin`` (a block's margin must come from its neighbour alone)."""
    total = sum(sizes)
    size = max(margin, math.ceil(max(sizes) / factor) * factor)
    chunks = [size] * (total // size)
    rest = total - sum(chunks)
    if rest and chunks and rest < margin:
        chunks[-1] += rest
    elif rest:
        chunks.append(rest)
    return tuple(chunks)
