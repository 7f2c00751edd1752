"""Plain numpy versions of the Rust kernels: the reference tests compare against, exactly,
and the baseline the kernel benchmark measures (the obvious numpy way, whole-scene arrays)."""

from __future__ import annotations

import numpy as np


def upsample_nearest(a: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def downsample_mean(a: np.ndarray, d: int) -> np.ndarray:
    """Mean of the non-zero DN of each d x d block, rounded half up; all-zero blocks give 0."""
    h, w = a.shape[0] // d, a.shape[1] // d
    blocks = a[: h * d, : w * d].reshape(h, d, w, d).astype(np.uint64)
    total = blocks.sum(axis=(1, 3))
    count = (blocks != 0).sum(axis=(1, 3))
    out = np.where(count > 0, (total + count // 2) // np.maximum(count, 1), 0)
    return out.astype(a.dtype)


def downsample_mode(a: np.ndarray, d: int) -> np.ndarray:
    """Most frequent label code (255 = no data excluded) of each block; ties -> smallest code."""
    h, w = a.shape[0] // d, a.shape[1] // d
    blocks = a[: h * d, : w * d].reshape(h, d, w, d).transpose(0, 2, 1, 3).reshape(h, w, d * d)
    codes = np.unique(blocks[blocks != 255])  # ascending: argmax picks the smallest on ties
    if codes.size == 0:
        return np.full((h, w), 255, np.uint8)
    counts = np.stack([(blocks == c).sum(axis=-1) for c in codes], axis=-1)
    return np.where(counts.max(axis=-1) > 0, codes[counts.argmax(axis=-1)], 255).astype(np.uint8)


def rebase(a: np.ndarray, shift: int) -> np.ndarray:
    """Add ``shift`` to non-zero DN, clamped to 1..65535; no-data (0) stays 0."""
    return np.where(a == 0, 0, np.clip(a.astype(np.int64) + shift, 1, 65535)).astype(np.uint16)


def resample(a: np.ndarray, factor: int) -> np.ndarray:
    if factor > 1:
        return upsample_nearest(a, factor)
    if factor < -1:
        return downsample_mean(a, -factor)
    return a


def stack_bands(bands, factors, height, width, shifts=None) -> np.ndarray:
    shifts = shifts if shifts is not None else [0] * len(bands)
    return np.stack(
        [
            rebase(resample(b, f)[:height, :width], s)
            for b, f, s in zip(bands, factors, shifts, strict=True)
        ]
    )


def scale_reflectance(stack: np.ndarray, quantification: float, offsets) -> np.ndarray:
    off = np.asarray(offsets, dtype=np.float32)[:, None, None]
    refl = (stack.astype(np.float32) + off) / np.float32(quantification)
    refl[stack == 0] = np.nan
    return refl


def tile_origins(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    stride = tile - overlap

    def count(n: int) -> int:
        return 1 if n <= tile else 1 + -(-(n - tile) // stride)

    return [(r * stride, c * stride) for r in range(count(height)) for c in range(count(width))]


def cut_tiles(stack: np.ndarray, tile: int, overlap: int, fill=0) -> np.ndarray:
    c, h, w = stack.shape
    origins = tile_origins(h, w, tile, overlap)
    ph = max(r for r, _ in origins) + tile
    pw = max(col for _, col in origins) + tile
    padded = np.full((c, ph, pw), fill, dtype=stack.dtype)
    padded[:, :h, :w] = stack
    if overlap == 0:  # one reshape instead of a Python loop
        nr, nc = ph // tile, pw // tile
        t = padded.reshape(c, nr, tile, nc, tile).transpose(1, 3, 0, 2, 4)
        return np.ascontiguousarray(t).reshape(nr * nc, c, tile, tile)
    return np.stack([padded[:, r : r + tile, col : col + tile] for r, col in origins])


def cut_tiles_with_valid(stack: np.ndarray, tile: int, overlap: int):
    """Tiles of a DN stack and their validity (every band non-zero; padding invalid)."""
    images = cut_tiles(stack, tile, overlap)
    return images, (images != 0).all(axis=1, keepdims=True).astype(np.uint8)


def reflectance_tiles(
    bands, factors, height, width, quantification, offsets, tile, overlap
) -> np.ndarray:
    stack = stack_bands(bands, factors, height, width)
    refl = scale_reflectance(stack, quantification, offsets)
    del stack
    return cut_tiles(refl, tile, overlap, fill=np.nan)
