"""The augmentations of an SSL view: crop, flips and rotations, blur, clipping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloudkit.data import augment, ssl_view_transform
from cloudkit.data.augment import gaussian_blur, gaussian_kernel1d, random_crop
from cloudkit.errors import TileShapeError


def _dihedral(image: torch.Tensor) -> list[torch.Tensor]:
    rotations = [torch.rot90(image, k, dims=(-2, -1)) for k in range(4)]
    return rotations + [r.flip(-1) for r in rotations]  # the last four are mirrored


class TestAugment:
    @pytest.mark.parametrize("channels", [1, 4, 13])
    def test_view_shape_for_any_band_count(self, channels):
        view = ssl_view_transform(32)(torch.rand(channels, 64, 64))
        assert view.shape == (channels, 32, 32) and view.dtype == torch.float32

    def test_view_as_large_as_the_tile(self):
        assert ssl_view_transform(40)(torch.rand(3, 40, 40)).shape == (3, 40, 40)

    def test_view_larger_than_the_tile_is_refused(self):
        with pytest.raises(TileShapeError, match="cannot crop 48x48 views from 32x32 tiles"):
            ssl_view_transform(48)(torch.rand(3, 32, 32))

    def test_deterministic_under_manual_seed_and_generator(self):
        image, transform = torch.rand(4, 48, 48), ssl_view_transform(32)
        torch.manual_seed(3)
        first = [transform(image) for _ in range(4)]
        torch.manual_seed(3)
        again = [transform(image) for _ in range(4)]
        assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
        assert not torch.equal(first[0], first[1])
        g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        assert torch.equal(transform(image, generator=g1), transform(image, generator=g2))

    def test_values_are_clipped_to_reflectance_range(self):
        view = ssl_view_transform(16)(torch.rand(3, 24, 24) * 3 - 1)
        assert view.min() >= 0.0 and view.max() <= 1.0
        assert (view == 0.0).any() and (view == 1.0).any()

    def test_flips_and_rotations_really_happen(self, monkeypatch):
        monkeypatch.setattr(augment, "BLUR_PROBABILITY", 0.0)
        image = torch.rand(2, 8, 8)
        transform = ssl_view_transform(8)  # whole tile: the view is a dihedral transform
        torch.manual_seed(0)
        seen = []
        for _ in range(400):
            view = transform(image)
            (k,) = [k for k, d in enumerate(_dihedral(image)) if torch.equal(view, d)]
            seen.append(k)
        assert set(seen) == set(range(8))
        # mirrored iff exactly one of the two flips (p 0.25 each): 2 * 0.25 * 0.75
        assert np.mean(np.array(seen) >= 4) == pytest.approx(0.375, abs=0.07)

    def test_crop_is_a_window_of_the_input(self):
        image = torch.arange(2 * 20 * 20, dtype=torch.float32).reshape(2, 20, 20)
        crop = random_crop(image, 8)
        top, left = divmod(int(crop[0, 0, 0]), 20)
        assert torch.equal(crop, image[:, top : top + 8, left : left + 8])

    def test_blur_kernel_is_normalised_and_odd(self):
        kernel = gaussian_kernel1d(5, 1.0)
        assert kernel.sum().item() == pytest.approx(1.0)
        assert torch.equal(kernel, kernel.flip(0)) and kernel.argmax() == 2
        with pytest.raises(ValueError, match="odd"):
            gaussian_kernel1d(4, 1.0)

    @pytest.mark.parametrize("kernel_size", [3, 5, 7])
    def test_blur_keeps_the_mean_and_acts_per_band(self, kernel_size):
        torch.manual_seed(1)
        image = torch.rand(3, 32, 32)
        image[1] = 0.3  # a flat band stays flat: no mixing between bands
        blurred = gaussian_blur(image, kernel_size, 2.0)
        assert blurred.shape == image.shape
        assert blurred.mean(dim=(1, 2)) == pytest.approx(image.mean(dim=(1, 2)), abs=5e-3)
        torch.testing.assert_close(blurred[1], image[1])
        assert blurred[0].std() < image[0].std() / 2

    def test_blur_is_sometimes_applied_by_the_view(self, monkeypatch):
        monkeypatch.setattr(augment, "FLIP_PROBABILITY", 0.0)
        image = torch.rand(1, 16, 16)
        torch.manual_seed(0)
        views = [ssl_view_transform(16)(image) for _ in range(40)]
        blurred = [not any(torch.equal(v, d) for d in _dihedral(image)) for v in views]
        assert 0.3 < np.mean(blurred) < 0.7  # p = 0.5
