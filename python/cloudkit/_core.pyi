"""Rust kernels of cloudkit (``rust/py``): resampling, reflectance, tiling, Zarr tile writing.

Private: import through the façade modules. Every array argument must be C-contiguous
(``ValueError`` otherwise); results are new arrays. Heavy functions release the GIL and run on
a dedicated pool of ``threads`` workers (default: ``CLOUDKIT_NUM_THREADS``, else every core).

Factors relate a band's native grid to the target grid: ``k > 1`` the band is ``k`` times
coarser (nearest-neighbour upsampling), ``k < -1`` it is ``|k|`` times finer (block mean of
non-zero DNs; block mode for labels), ``1`` the same grid. A band must cover the whole target
grid; extra native rows/columns are ignored. DN 0 is no-data; label code 255 is no label.

Shape, factor and tiling problems raise :class:`cloudkit.errors.TileShapeError`, an unusable
quantification :class:`cloudkit.errors.InvalidSceneError`, store problems
:class:`cloudkit.errors.StoreError`.
"""

import os
from typing import final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "TileWriter",
    "band_window",
    "cut_stripe",
    "cut_tiles",
    "downsample_mean",
    "downsample_mode",
    "reflectance_tiles",
    "scale_reflectance",
    "stack_bands",
    "tile_windows",
    "upsample_nearest",
    "window_inputs",
]

def upsample_nearest(
    a: NDArray[np.uint16] | NDArray[np.uint8], k: int, *, threads: int | None = None
) -> NDArray[np.uint16] | NDArray[np.uint8]:
    """Each pixel becomes a ``k`` x ``k`` block: ``(h, w) -> (h*k, w*k)``, same dtype."""

def downsample_mean(
    a: NDArray[np.uint16], d: int, *, threads: int | None = None
) -> NDArray[np.uint16]:
    """Mean of the non-zero DNs of each ``d`` x ``d`` block, rounded half up; all zero -> 0.

    ``(h, w) -> (h // d, w // d)``: trailing rows/columns that fill no block are dropped.
    """

def downsample_mode(
    a: NDArray[np.uint8], d: int, *, threads: int | None = None
) -> NDArray[np.uint8]:
    """Most frequent label code other than 255 per ``d`` x ``d`` block (ties: smallest code)."""

def band_window(y0: int, rows: int, factor: int, native_height: int) -> tuple[int, int]:
    """Native ``(first_row, n_rows)`` a band supplies for target rows ``[y0, y0 + rows)``."""

def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Tile origins ``(row, col)``, row-major, ``tile - overlap`` apart; edge tiles are padded."""

def stack_bands(
    bands: list[NDArray[np.uint16]],
    factors: list[int],
    height: int,
    width: int,
    shifts: list[int] | None = None,
    *,
    threads: int | None = None,
) -> NDArray[np.uint16]:
    """Resampled, rebased ``(bands, height, width)`` stack.

    Rebasing: ``0`` stays ``0``, other DNs become ``clip(DN + shift, 1, 65535)``.
    """

def scale_reflectance(
    stack: NDArray[np.uint16],
    quantification: float,
    offsets: list[float],
    *,
    threads: int | None = None,
) -> NDArray[np.float32]:
    """``(DN + offset) / quantification`` in float32, per band of a ``(C, H, W)`` stack.

    DN 0 (no data) becomes NaN.
    """

def cut_tiles(
    stack: NDArray[np.uint16], tile: int, overlap: int, *, threads: int | None = None
) -> tuple[NDArray[np.uint16], NDArray[np.uint8]]:
    """Zero-padded tiles ``(n, C, tile, tile)`` and masks ``(n, 1, tile, tile)`` in
    :func:`tile_windows` order; a pixel is valid (1) when every band is non-zero."""

def reflectance_tiles(
    bands: list[NDArray[np.uint16]],
    factors: list[int],
    height: int,
    width: int,
    quantification: float,
    offsets: list[float],
    tile: int,
    overlap: int,
    threads: int | None = None,
) -> NDArray[np.float32]:
    """Fused resample + stack + scale + tile: float32 ``(n, C, tile, tile)``.

    Equals ``scale_reflectance`` of ``cut_tiles(stack_bands(...))`` with NaN for no-data and
    padding, without building the full-scene stack.
    """

def window_inputs(
    values: NDArray[np.uint16],
    valid: NDArray[np.uint8],
    scale: list[float],
    offset: list[float],
    *,
    bf16: bool = False,
    threads: int | None = None,
) -> NDArray[np.float32] | NDArray[np.uint16]:
    """``(n, C, h, w)`` store values and ``(n, 1, h, w)`` validity to the network's input
    ``(n, h, w, C)`` (channels last): ``value * scale + offset`` in float32, 0 where the value
    is 0 or the pixel is not valid, exactly as ``data.reflectance.store_reflectance``; with
    ``bf16`` the bf16 bit patterns of those values (round to nearest even, as torch), to view
    as ``torch.bfloat16``."""

def cut_stripe(
    y0: int,
    bands: list[NDArray[np.uint16]],
    factors: list[int],
    height: int,
    width: int,
    tile: int,
    overlap: int,
    shifts: list[int] | None = None,
    labels: NDArray[np.uint8] | None = None,
    label_factor: int | None = None,
    *,
    threads: int | None = None,
) -> tuple[
    NDArray[np.uint16],
    NDArray[np.uint8],
    NDArray[np.uint8] | None,
    NDArray[np.float32],
    NDArray[np.float32],
]:
    """Every tile of the tile row at ``y0`` from native stripes read with :func:`band_window`.

    Returns images ``(n, C, T, T)`` (rebased, zero padded), valid ``(n, 1, T, T)``, labels
    ``(n, 1, T, T)`` (255 padding; ``None`` without ``label_factor``), valid fractions and
    cloud fractions (codes 1 and 2 over labelled pixels; NaN when none) of shape ``(n,)``.
    """

@final
class TileWriter:
    """Cuts a scene tile row by tile row into the Zarr v3 group at ``store_path``.

    The group's ``images`` (uint16, chunks ``(1, C, T, T)``), ``valid`` and, with
    ``label_factor``, ``labels`` (uint8, chunks ``(1, 1, T, T)``) arrays must exist and be
    large enough; tiles are written as whole chunks from ``start_index`` on.
    """

    def __new__(
        cls,
        store_path: str | os.PathLike[str],
        start_index: int,
        height: int,
        width: int,
        factors: list[int],
        shifts: list[int],
        tile_size: int,
        overlap: int,
        label_factor: int | None = None,
        skip_empty: bool = True,
        threads: int | None = None,
    ) -> TileWriter: ...
    def write_row(
        self,
        y0: int,
        bands: list[NDArray[np.uint16]],
        labels: NDArray[np.uint8] | None = None,
    ) -> list[tuple[int, int, int, float, float]]:
        """Writes the tile row at ``y0``; returns ``(index, row, col, valid_fraction,
        cloud_fraction)`` per written tile (tiles without valid pixels are skipped when
        ``skip_empty``)."""

    @property
    def next_index(self) -> int:
        """Index the next written tile gets."""
