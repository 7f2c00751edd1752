"""Random views of a reflectance tile for SSL pretraining (MoCo v2 views, Gbodjo et al. 2026).

Band-agnostic: every function takes a (C, H, W) float tensor with any number of bands and
treats the bands alike (no colour jitter, which only means something for RGB). Randomness
comes from torch's global RNG, or from a ``torch.Generator`` when one is passed, so views are
reproducible under ``torch.manual_seed`` (DataLoader workers get distinct seeds from torch).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cloudkit.errors import TileShapeError
from cloudkit.models.band_slots import drop_bands

#: the outer crop is this much larger than the view (Gbodjo et al. 2026: "a 1.2x larger crop")
OUTER_CROP_RATIO = 1.2
FLIP_PROBABILITY = 0.25
BLUR_PROBABILITY = 0.5
BLUR_KERNEL_SIZES = (3, 5, 7)
BLUR_SIGMA_RANGE = (0.1, 2.0)


class SslView:
    """One random view: outer crop, inner crop of ``size``, h/v flips, rot90, blur, clip.

    A class rather than a closure so DataLoader workers started by spawn can pickle it.
    """

    def __init__(self, size: int, *, any_bands: bool = False) -> None:
        if size < 1:
            raise TileShapeError(f"view size must be a positive number of pixels, got {size}")
        self.size = size
        self.any_bands = any_bands

    def __call__(self, image: Tensor, generator: torch.Generator | None = None) -> Tensor:
        g = generator
        outer = min(math.ceil(OUTER_CROP_RATIO * self.size), *image.shape[-2:])
        view = random_crop(random_crop(image, outer, g), self.size, g)
        if _chance(FLIP_PROBABILITY, g):
            view = view.flip(-1)
        if _chance(FLIP_PROBABILITY, g):
            view = view.flip(-2)
        view = torch.rot90(view, _randint(4, g), dims=(-2, -1))
        if _chance(BLUR_PROBABILITY, g):
            kernel_size = BLUR_KERNEL_SIZES[_randint(len(BLUR_KERNEL_SIZES), g)]
            low, high = BLUR_SIGMA_RANGE
            sigma = low + (high - low) * float(torch.rand((), generator=g))
            view = gaussian_blur(view, kernel_size, sigma)
        if self.any_bands:
            # each view its own realistic band subset (absent bands stay NaN through clamp)
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (), generator=g)))
            view = torch.from_numpy(drop_bands(view.numpy(), rng))
        # reflectance above 1 (specular, saturated) and below 0 (offset artefacts) is clipped
        return view.clamp(0.0, 1.0).contiguous()

    def __repr__(self) -> str:
        return f"SslView(size={self.size}, any_bands={self.any_bands})"


def ssl_view_transform(size: int, *, any_bands: bool = False) -> SslView:
    """The pretraining view transform: ``transform(image, generator=None) -> (C, size, size)``."""
    return SslView(size, any_bands=any_bands)


def random_crop(image: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """A ``size`` x ``size`` window of (C, H, W) ``image`` at a uniformly random position."""
    height, width = image.shape[-2:]
    if size > height or size > width:
        raise TileShapeError(
            f"cannot crop {size}x{size} views from {height}x{width} tiles; use a view size "
            f"<= {min(height, width)} or tiles of at least {size} px"
        )
    top = _randint(height - size + 1, generator)
    left = _randint(width - size + 1, generator)
    return image[..., top : top + size, left : left + size]


def gaussian_kernel1d(kernel_size: int, sigma: float) -> Tensor:
    """Normalised 1-D Gaussian weights of odd length ``kernel_size``."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"blur kernel size must be odd and positive, got {kernel_size}")
    x = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
    weights = torch.exp(-0.5 * (x / sigma) ** 2)
    return weights / weights.sum()


def gaussian_blur(image: Tensor, kernel_size: int, sigma: float) -> Tensor:
    """Blur each band of (C, H, W) ``image`` on its own (depthwise conv, reflect edges)."""
    channels = image.shape[0]
    k = gaussian_kernel1d(kernel_size, sigma).to(image)
    # one 2-D depthwise conv: on CPU far faster than two 1-D passes (measured ~4x at 224 px)
    kernel = (k[:, None] * k[None, :]).expand(channels, 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    # reflect padding needs pad < side; smaller views fall back to replicated edges
    mode = "reflect" if pad < min(image.shape[-2:]) else "replicate"
    x = F.pad(image.unsqueeze(0), (pad, pad, pad, pad), mode=mode)
    return F.conv2d(x, kernel, groups=channels).squeeze(0)


def _chance(p: float, generator: torch.Generator | None) -> bool:
    return bool(torch.rand((), generator=generator) < p)


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (), generator=generator))
