"""Rust kernels of cloudkit (``rust/py``): tile-row cutting, Zarr tile writing, model input.

Private: import through ``cloudkit.kernels``. Every array argument must be C-contiguous
(``ValueError`` otherwise); results are new arrays. Heavy functions release the GIL and run on
a dedicated pool of ``threads`` workers (default: ``CLOUDKIT_NUM_THREADS``, else every core).

Factors relate a band's native grid to the target grid: ``k > 1`` the band is ``k`` times
coarser (nearest-neighbour upsampling), ``k < -1`` it is ``|k|`` times finer (block mean of
non-zero DNs; block mode for labels), ``1`` the same grid. A band must cover the whole target
grid; extra native rows/columns are ignored. DN 0 is no-data; label code 255 is no label.

Shape, factor and tiling problems raise :class:`cloudkit.errors.TileShapeError`, store
problems :class:`cloudkit.errors.StoreError`.
"""

import os
from typing import final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "TileWriter",
    "band_window",
    "cut_stripe",
    "tile_windows",
    "window_inputs",
]

def band_window(y0: int, rows: int, factor: int, native_height: int) -> tuple[int, int]:
    """Native ``(first_row, n_rows)`` a band supplies for target rows ``[y0, y0 + rows)``."""

def tile_windows(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Tile origins ``(row, col)``, row-major, ``tile - overlap`` apart; edge tiles are padded."""

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

    Rebasing by ``shifts`` (none: 0): DN 0 stays 0, other DNs become
    ``clip(DN + shift, 1, 65535)``. Returns images ``(n, C, T, T)`` (rebased, zero padded),
    valid ``(n, 1, T, T)``, labels ``(n, 1, T, T)`` (255 padding; ``None`` without
    ``label_factor``), valid fractions and cloud fractions (codes 1 and 2 over labelled pixels;
    NaN when none) of shape ``(n,)``.
    """

@final
class TileWriter:
    """Cuts a scene tile row by tile row into the Zarr v3 group at ``store_path``.

    The group's ``images`` (uint16, chunks ``(1, C, T, T)``), ``valid`` and, with
    ``label_factor``, ``labels`` (uint8, chunks ``(1, 1, T, T)``) arrays must exist and already
    hold the rows to write (``TileStore.begin_scene`` reserves them): the writer reads their
    shape once, when it opens, and never resizes them or writes metadata. Tiles are written as
    whole chunks from ``start_index`` on.
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

    @property
    def seconds(self) -> tuple[float, float]:
        """Seconds spent so far ``(cutting, storing)``: resampling the coarser bands,
        cutting tiles and counting valid pixels; zstd + CRC-32C and writing chunk files."""
