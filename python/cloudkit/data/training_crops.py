"""Training crops for fine-tuning: a random window of a labelled tile with random flips (the
paper's crops), and for a model meant to work anywhere also turned by multiples of 90 degrees,
seen at other resolutions, with synthetic clouds, shadows and surfaces, and a realistic band
subset.

Every random draw comes from torch's global generator (seeded per item by
:class:`~cloudkit.train.loader.SeededViews`, so a run is the same on every resume), the
augmentations' through one ``numpy.random.Generator`` per item drawn from it.

- ``resolutions=(lo, hi)``: the crop is seen at a resolution drawn log-uniformly in
  [lo, hi] metres: a window of ``crop * r / store resolution`` pixels resampled to ``crop``
  (bilinear for reflectance, nearest for labels and validity), bounded by the tile. Labels at
  60 m then teach a model what a cloud looks like at 20 m, and 10 m crops what it looks like
  at 30 m.
- ``synthetic=p``: with probability ``p`` the crop gets synthetic clouds, thin clouds and cast
  shadows (`synthetic_clouds.composite`, exact labels), the shadows cast as the sun of the
  tile's scene casts them where its store recorded it, the thin clouds in the style ``veils``
  (`synthetic_clouds.VEIL_STYLES`); before that, a crop without cloud labels gets with
  probability ``p / 2`` another surface brightness and colour (so bright soils are not taken
  for haze) and with ``p / 7`` snow (so bright is not always cloud), and an L2A crop with
  probability ``p / 2`` the atmosphere's path reflectance (so the model sees
  top-of-atmosphere and surface reflectance alike).
- ``any_bands``: the crop keeps a random realistic band subset (`band_slots.drop_bands`).

Validation sees none of this: :class:`WholeTiles` gives its tiles whole and unchanged.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from cloudkit.data.augment import random_crop
from cloudkit.data.synthetic_clouds import PATH_REFLECTANCE, composite, snow
from cloudkit.data.tiles import TileDataset
from cloudkit.geometry.sun import MAX_SUN_ZENITH, SunAngles
from cloudkit.io.scene import LABEL_THICK_CLOUD, LABEL_THIN_CLOUD
from cloudkit.models.band_slots import drop_bands

FLIP_PROBABILITY = 0.5
#: surface brightness factor range of the surface jitter, and the spread of colour per band
SURFACE_GAIN = (0.7, 4.0)
SURFACE_COLOUR_SIGMA = 0.15


class WholeTiles(Dataset):
    """Validation items: whole tiles of ``indices``, unchanged."""

    def __init__(self, tiles: TileDataset, indices: np.ndarray) -> None:
        self.tiles = tiles
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = self.tiles[int(self.indices[i])]
        return {"image": item["image"], "valid": item["valid"], "labels": item["labels"]}


class TrainingCrops(Dataset):
    """Items ``{"image", "valid", "labels"}`` of ``crop`` x ``crop`` px from ``tiles`` at
    ``indices`` (see the module docstring for the options)."""

    def __init__(
        self,
        tiles: TileDataset,
        indices: np.ndarray,
        crop: int,
        *,
        resolutions: tuple[float, float] | None = None,
        synthetic: float = 0.0,
        sun_cast: bool = True,
        veils: str = "water",
    ) -> None:
        self.tiles = tiles
        self.indices = np.asarray(indices, dtype=np.int64)
        self.crop = crop
        self.resolutions = resolutions
        self.synthetic = synthetic
        self.sun_cast = sun_cast
        self.veils = veils

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = self.tiles[int(self.indices[i])]
        c = item["image"].shape[0]
        if self._plain:
            # the paper's crops: a random window and flips, nothing else
            stack = torch.cat([item["image"], item["valid"].float(), item["labels"].float()])
            stack = random_crop(stack, self.crop)
        else:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
            image, valid, labels, seen = self._window(item, rng)
            image, labels = self._augment(image, labels, item, seen, rng)
            stack = torch.cat([image, valid.float(), labels.float()])
            stack = torch.rot90(stack, int(rng.integers(4)), dims=(-2, -1))
        if float(torch.rand(())) < FLIP_PROBABILITY:
            stack = stack.flip(-1)
        if float(torch.rand(())) < FLIP_PROBABILITY:
            stack = stack.flip(-2)
        return {
            "image": stack[:c].contiguous(),
            "valid": stack[c : c + 1] > 0.5,
            "labels": stack[c + 1 :].round().to(torch.uint8),
        }

    @property
    def _plain(self) -> bool:
        return self.resolutions is None and self.synthetic == 0 and not self.tiles.any_bands

    def _window(self, item: dict, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor, float]:
        """(image, valid, labels, metres per pixel as seen) of a random window."""
        image, valid, labels = item["image"], item["valid"], item["labels"]
        tile = image.shape[-1]
        if self.resolutions is None:
            c = image.shape[0]
            stack = torch.cat([image, valid.float(), labels.float()])
            stack = random_crop(stack, self.crop, _torch_generator(rng))
            mask = stack[c + 1 :].round().to(torch.uint8)
            return stack[:c], stack[c : c + 1] > 0.5, mask, float(item["resolution"])
        lo, hi = self.resolutions
        seen = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        size = int(round(self.crop * seen / float(item["resolution"])))
        size = min(max(size, 8), tile)
        top, left = rng.integers(tile - size + 1), rng.integers(tile - size + 1)
        box = (slice(None), slice(top, top + size), slice(left, left + size))
        out = (self.crop, self.crop)
        image = F.interpolate(image[box][None], size=out, mode="bilinear", align_corners=False)[0]
        valid = F.interpolate(valid[box][None].float(), size=out, mode="nearest")[0] > 0.5
        labels = F.interpolate(labels[box][None].float(), size=out, mode="nearest")[0]
        seen_exactly = float(item["resolution"]) * size / self.crop  # the window is whole pixels
        return image, valid, labels.round().to(torch.uint8), seen_exactly

    def _augment(
        self, image: Tensor, labels: Tensor, item: dict, seen: float, rng: np.random.Generator
    ) -> tuple[Tensor, Tensor]:
        bands = self.tiles.bands
        x, y = image.numpy().copy(), labels[0].numpy().copy()
        toa = bool(item["toa"])
        p = self.synthetic
        cloud_free = not np.isin(y, (LABEL_THICK_CLOUD, LABEL_THIN_CLOUD)).any()
        if cloud_free and rng.random() < p / 2:
            x = _surface_jitter(x, bands, toa, rng)
        if (y == 0).mean() > 0.5 and rng.random() < p / 7:
            x = snow(x, y, bands, rng=rng)
        if not toa and rng.random() < p / 2:
            x = x + np.array([PATH_REFLECTANCE[b] for b in bands], np.float32)[:, None, None]
            toa = True
        if rng.random() < p:
            sun = _sun(item) if self.sun_cast else None
            x, y = composite(
                x, y, bands, toa=toa, rng=rng, sun=sun, resolution=seen, veils=self.veils
            )
        if self.tiles.any_bands:
            x = drop_bands(x, rng)
        return torch.from_numpy(x), torch.from_numpy(y[None].astype(np.uint8))


def _surface_jitter(
    x: np.ndarray, bands: tuple[str, ...], toa: bool, rng: np.random.Generator
) -> np.ndarray:
    """Another surface brightness and colour (the atmosphere's path term kept on L1C)."""
    path = np.array([PATH_REFLECTANCE[b] if toa else 0.0 for b in bands], np.float32)[:, None, None]
    low, high = SURFACE_GAIN
    gain = math.exp(rng.uniform(math.log(low), math.log(high)))
    colour = np.exp(rng.normal(0.0, SURFACE_COLOUR_SIGMA, len(bands))).astype(np.float32)
    return (path + (x - path) * (gain * colour)[:, None, None]).astype(np.float32)


def _sun(item: dict) -> SunAngles | None:
    """The tile's scene's sun as its store recorded it; None when it did not."""
    azimuth, zenith = item.get("sun", (math.nan, math.nan))
    if not (0.0 <= azimuth <= 360.0 and 0.0 <= zenith <= MAX_SUN_ZENITH):  # NaN: unknown
        return None
    return SunAngles(azimuth, zenith, source="tile store")


def _torch_generator(rng: np.random.Generator) -> torch.Generator:
    return torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
