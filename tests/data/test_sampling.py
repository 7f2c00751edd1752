"""Label fractions and train/val splits stratified on the cloudiness bins (Gbodjo et al. 2026)."""

from __future__ import annotations

import numpy as np
import pytest

from cloudkit.data.sampling import stratified_fraction, stratified_split


def _counts(bins: np.ndarray, indices: np.ndarray) -> dict[int, int]:
    values, counts = np.unique(bins[indices], return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


class TestStratifiedFraction:
    def test_hand_example(self):
        bins = np.array([0] * 80 + [5] * 20)
        chosen = stratified_fraction(bins, 0.25, seed=0)
        assert _counts(bins, chosen) == {0: 20, 5: 5}

    def test_proportions_follow_the_bins_within_rounding(self):
        rng = np.random.default_rng(3)
        bins = rng.integers(-1, 10, size=997)
        for fraction in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0):
            chosen = stratified_fraction(bins, fraction, seed=1)
            counts = _counts(bins, chosen)
            for b, n in _counts(bins, np.arange(len(bins))).items():
                assert abs(counts[b] - n * fraction) <= 1  # at least 1 per bin, else rounding
                assert counts[b] >= 1

    def test_indices_are_sorted_distinct_and_in_range(self):
        bins = np.repeat(np.arange(10), 7)
        chosen = stratified_fraction(bins, 0.3, seed=5)
        assert chosen.dtype == np.int64
        assert np.all(np.diff(chosen) > 0)
        assert chosen.min() >= 0 and chosen.max() < len(bins)

    def test_full_fraction_keeps_everything(self):
        bins = np.array([3, 3, -1, 9])
        assert stratified_fraction(bins, 1.0, seed=0).tolist() == [0, 1, 2, 3]

    def test_unknown_bin_is_its_own_stratum(self):
        bins = np.array([-1] * 10 + [0] * 10)
        assert _counts(bins, stratified_fraction(bins, 0.1, seed=0)) == {-1: 1, 0: 1}

    def test_seed(self):
        bins = np.repeat(np.arange(10), 50)
        a = stratified_fraction(bins, 0.2, seed=7)
        assert np.array_equal(a, stratified_fraction(bins, 0.2, seed=7))
        assert not np.array_equal(a, stratified_fraction(bins, 0.2, seed=8))

    @pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
    def test_bad_fraction(self, fraction):
        with pytest.raises(ValueError, match="fraction"):
            stratified_fraction(np.zeros(4, dtype=int), fraction, seed=0)


class TestStratifiedSplit:
    def test_disjoint_complete_and_stratified(self):
        bins = np.array([0] * 80 + [5] * 20 + [9] * 50)
        subset = stratified_fraction(bins, 0.5, seed=0)  # 40, 10, 25
        train, val = stratified_split(subset, bins, 0.2, seed=0)
        assert not set(train) & set(val)
        assert sorted([*train, *val]) == subset.tolist()
        assert _counts(bins, val) == {0: 8, 5: 2, 9: 5}
        assert _counts(bins, train) == {0: 32, 5: 8, 9: 20}

    def test_seed(self):
        bins = np.repeat(np.arange(5), 40)
        idx = np.arange(len(bins))
        a = stratified_split(idx, bins, 0.25, seed=1)
        b = stratified_split(idx, bins, 0.25, seed=1)
        c = stratified_split(idx, bins, 0.25, seed=2)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert not np.array_equal(a[1], c[1])

    def test_tiny_sets_keep_both_sides(self):
        bins = np.array([0, 1, 2])  # one tile per bin: rounding gives val nothing
        train, val = stratified_split(np.arange(3), bins, 0.2, seed=0)
        assert len(val) == 1 and len(train) == 2

    def test_bad_val_fraction(self):
        with pytest.raises(ValueError, match="val_fraction"):
            stratified_split(np.arange(3), np.zeros(3, dtype=int), 1.0, seed=0)
