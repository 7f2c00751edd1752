"""Label fractions and train/val splits stratified on the cloudiness bins (Gbodjo et al. 2026).

A tile's bin is ``int(percent cloud) // 10`` (0..9, see :func:`cloudkit.data.tiles.cloud_bins_of`);
tiles without labels have bin -1, which is kept as a stratum of its own. Both functions are
pure numpy and depend only on their arguments and ``seed``: the same call gives the same
indices on every machine.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["stratified_fraction", "stratified_split"]


def _round_half_up(x: float) -> int:
    # numpy/python round half to even: 2.5 -> 2; a count of samples rounds half up
    return int(math.floor(x + 0.5))


def _strata(bins: np.ndarray) -> list[np.ndarray]:
    """Positions of each distinct bin value, in ascending bin order."""
    return [np.flatnonzero(bins == b) for b in np.unique(bins)]


def stratified_fraction(bins: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """Indices (sorted, int64) of ``fraction`` of the samples whose bins are ``bins``.

    Each bin keeps ``round(n_bin * fraction)`` of its samples (half rounds up) and at least one,
    so every cloudiness that exists stays represented: the proportions of the bins match those
    of ``bins`` within rounding. ``fraction`` is in (0, 1]; 1 keeps every index.
    """
    bins = np.asarray(bins).reshape(-1)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for members in _strata(bins):
        take = min(len(members), max(1, _round_half_up(len(members) * fraction)))
        chosen.append(rng.permutation(members)[:take])
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def stratified_split(
    indices: np.ndarray, bins: np.ndarray, val_fraction: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (train, val), each sorted, disjoint, together all of ``indices``.

    ``bins`` holds the bins of the whole dataset (``bins[indices]`` are those of the indices, as
    :func:`stratified_fraction` returns them). Each bin gives ``round(n_bin * val_fraction)`` of
    its indices to val, but keeps at least one for training; when that leaves val empty (tiny
    sets) one index of the largest bin goes to val, so both parts are non-empty whenever
    ``len(indices) >= 2``. ``val_fraction`` is in [0, 1); 0 gives an empty val set.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    bins = np.asarray(bins).reshape(-1)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if len(np.unique(indices)) != len(indices):
        raise ValueError("indices must be distinct")
    rng = np.random.default_rng(seed)
    own = bins[indices]
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for positions in _strata(own):
        members = rng.permutation(indices[positions])
        take = min(len(members) - 1, _round_half_up(len(members) * val_fraction))
        val.append(members[:take])
        train.append(members[take:])
    val_idx = np.concatenate(val) if val else np.zeros(0, dtype=np.int64)
    train_idx = np.concatenate(train) if train else np.zeros(0, dtype=np.int64)
    if val_fraction > 0 and len(val_idx) == 0 and len(indices) >= 2:
        largest = max(range(len(train)), key=lambda k: len(train[k]))
        val_idx = train[largest][:1]
        train[largest] = train[largest][1:]
        train_idx = np.concatenate(train)
    return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)
