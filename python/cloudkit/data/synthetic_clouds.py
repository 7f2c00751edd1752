"""Synthetic clouds, thin clouds and cast shadows laid over real images, with exact labels.

Human cloud labels are scarce, and the ones at hand (Sen2Cor's SCL, a teacher model's
classes) are coarse where it matters most: cloud edges, thin cloud and shadows. Compositing
gives the model every pixel's true class for shapes, covers, thicknesses and shadow offsets
the real samples lack, at whatever resolution the crop is seen at.

A cloud field is fractal noise (power spectrum ``1/f^beta``) cut at the quantile of the cover
drawn, with soft edges; thick clouds are opaque where it is dense, thin clouds a smooth veil.
The shadow is the thick field shifted away from the sun by cloud height x tan(sun zenith), so
shadows can fall inside the crop from clouds outside it. Where the crop's scene's sun angles and
pixel size are known, the shift is the one the sun casts (a height drawn log-uniformly over
the 0.2 to 12 km the geometric shadow check searches): synthetic shadows then lie where that
check looks for a real cloud's, in the direction of the scene's own shadows, and a cloud too
high for its shadow to reach the crop casts none in it. Otherwise the direction is random and
the shift up to about half the crop.
Radiometry is per band, by ESA name:

- clouds replace the surface by ``alpha * cloud + (1 - alpha) * surface``; a cloud's
  spectrum is nearly flat in the visible and near infrared, lower in the water-vapour band
  B09 and the SWIR (B11, B12); the cirrus band B10 sees the cloud only (no surface signal);
  how veils differ from thick clouds is a style (:data:`VEIL_STYLES`): ``water`` draws them
  as thin water clouds, ``ice`` as cirrus, high ice cloud, bright at 1.38 um for its opacity
  (it sits above the water vapour that hides low clouds there) and darker in the SWIR (ice
  absorbs more than water), with the thick clouds low water clouds, faint at 1.38 um;
- a shadow removes the direct sun: ``path + (surface - path) * (1 - depth * (1 - diffuse))``
  where ``diffuse`` is the share of skylight (largest in the blue) and ``path`` the
  atmosphere's own reflectance, which top-of-atmosphere (L1C) images carry and L2A not.

Labels use the store's codes: thick cloud where the thick layer is at least a quarter opaque
(generous, as people draw masks: the human CloudSEN12 masks include faint cloud edges), thin
cloud where only the thin layer is, once plain to see (opacity 0.3; ``ice`` veils from 0.2),
cloud shadow where the shadow is at least 0.3 deep on what was clear ground and no cloud
veils it (opacity < 0.05). Where a layer is merely faint (0.1 up to those), the label is
no-data: the loss ignores what a person would hesitate on, rather than teach that a faint
veil is cloud, or clear. Elsewhere the real label is kept. Everything is drawn from the
``numpy.random.Generator`` passed in, so a seeded caller gets the same composite every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cloudkit.bands import L1C_BANDS
from cloudkit.geometry.shadows import MAX_HEIGHT_KM, MIN_HEIGHT_KM
from cloudkit.geometry.sun import SunAngles
from cloudkit.io.scene import (
    LABEL_CLEAR,
    LABEL_CLOUD_SHADOW,
    LABEL_NODATA,
    LABEL_THICK_CLOUD,
    LABEL_THIN_CLOUD,
)

#: Top-of-atmosphere path reflectance of a clear atmosphere, per band (B01..B12).
PATH_REFLECTANCE = dict(
    zip(
        L1C_BANDS,
        (0.09, 0.065, 0.04, 0.025, 0.02, 0.015, 0.012, 0.01, 0.01, 0.005, 0.0, 0.003, 0.002),
        strict=True,
    )
)
#: Share of diffuse skylight in the surface irradiance: what is left inside a shadow.
DIFFUSE_SHARE = dict(
    zip(
        L1C_BANDS,
        (0.45, 0.35, 0.27, 0.22, 0.2, 0.17, 0.15, 0.13, 0.13, 0.12, 1.0, 0.08, 0.07),
        strict=True,
    )
)
#: A thick water cloud's reflectance relative to its visible reflectance (B10: see below).
CLOUD_SPECTRUM = dict(
    zip(
        L1C_BANDS,
        (1.04, 1.02, 1.0, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93, 0.55, 0.0, 0.6, 0.4),
        strict=True,
    )
)
CIRRUS_BAND = "B10"

# label thresholds: thick cloud generous, as people draw masks (CloudSEN12's include faint
# edges); a thin veil only once it is plain to see. Between "faint" and these, no label: the
# loss ignores what even a person would hesitate on.
THICK_LABEL_ALPHA = 0.25
THIN_LABEL_ALPHA = 0.3
SHADOW_LABEL_DEPTH = 0.3
FAINT = 0.1
SHADOW_MAX_VEIL = 0.05
KINDS = ("cumulus", "cumulus", "cumulus", "stratus", "thin", "mixed")


@dataclass(frozen=True)
class VeilStyle:
    """How thin clouds are drawn and labelled."""

    kinds: tuple[str, ...]  # the cloud fields, equally likely
    max_alpha: float  # a veil's peak opacity is drawn up to this
    label_alpha: float  # thin cloud from this opacity
    ice: bool  # veils are ice cloud: darker in the SWIR
    #: B10 reflectance per unit opacity of the thick and thin layers: (low, high) of a draw
    thick_cirrus: tuple[float, float]
    thin_cirrus: tuple[float, float]


VEIL_STYLES = {
    # thin water clouds: the thick clouds' spectrum, one field in six, labelled once plain to see
    "water": VeilStyle(
        kinds=KINDS,
        max_alpha=0.55,
        label_alpha=THIN_LABEL_ALPHA,
        ice=False,
        thick_cirrus=(0.005, 0.08),
        thin_cirrus=(0.005, 0.08),
    ),
    # cirrus over low water clouds: two fields in seven, labelled once visible
    "ice": VeilStyle(
        kinds=("cumulus", "cumulus", "cumulus", "stratus", "thin", "thin", "mixed"),
        max_alpha=0.7,
        label_alpha=0.2,
        ice=True,
        thick_cirrus=(0.003, 0.04),
        thin_cirrus=(0.06, 0.2),
    ),
}


def composite(
    image: np.ndarray,
    labels: np.ndarray,
    bands: Sequence[str],
    *,
    toa: bool,
    rng: np.random.Generator,
    sun: SunAngles | None = None,
    resolution: float | None = None,
    veils: str = "water",
) -> tuple[np.ndarray, np.ndarray]:
    """Clouds and shadows over ``image`` (C, S, S) reflectance in ``bands`` order (NaN
    channels stay NaN); ``labels`` (S, S) store codes. ``toa``: the image is top-of-
    atmosphere (L1C), so shadows keep the path reflectance. ``sun`` and ``resolution`` (metres
    per pixel of the crop as seen): the shadows' shift follows them. ``veils``: a key of
    :data:`VEIL_STYLES`. Returns new arrays."""
    style = VEIL_STYLES[veils]
    size = image.shape[-1]
    if image.shape[-2] != size or labels.shape != image.shape[-2:]:
        raise ValueError(f"composite needs square (C, S, S) crops, got {image.shape}")
    shift = shadow_shift(size, rng, sun, resolution)
    # the field holds every cloud whose shadow may fall into the crop
    margin = max(size // 2, int(np.ceil(np.abs(shift).max())) + 8) if shift else size // 2
    field = size + 2 * margin
    kind = style.kinds[rng.integers(len(style.kinds))]
    thick = np.zeros((field, field), np.float32)
    thin = np.zeros((field, field), np.float32)
    if kind in ("cumulus", "stratus", "mixed"):
        cover = rng.uniform(0.4, 0.95) if kind == "stratus" else rng.uniform(0.05, 0.6)
        density = _soft_cover(_cloud_noise(rng, field), cover, rng.uniform(0.05, 0.6))
        thick = 1.0 - np.exp(-density * rng.uniform(1.5, 4.0))
    if kind in ("thin", "mixed"):
        haze = _soft_cover(_cloud_noise(rng, field, smooth=True), rng.uniform(0.2, 0.9), 1.0)
        thin = np.clip(haze / rng.uniform(0.3, 1.5), 0.0, 1.0) * rng.uniform(0.15, style.max_alpha)

    shadow = np.zeros((size, size), np.float32)
    if shift is not None and thick.max() > 0 and rng.random() < 0.85:
        shadow = _cast_shadow(thick, margin, size, shift, rng)
    inner = slice(margin, margin + size)
    thick, thin = thick[inner, inner], thin[inner, inner]

    out = image.astype(np.float32, copy=True)
    on_clear = shadow * (labels == LABEL_CLEAR)
    depth = rng.uniform(0.55, 0.95)
    for c, band in enumerate(bands):
        path = PATH_REFLECTANCE[band] if toa else 0.0
        keep = 1.0 - depth * (1.0 - DIFFUSE_SHARE[band]) * on_clear
        out[c] = path + (out[c] - path) * keep

    texture = 1.0 + 0.18 * _fractal(rng, size, rng.uniform(1.6, 2.6))
    brightness = rng.uniform(0.25, 0.85)
    thick_refl = _cloud_reflectance(bands, rng, brightness, texture, style.thick_cirrus)
    out = out * (1.0 - thick) + thick_refl * thick
    if thin.max() > 0:
        brightness, flat = rng.uniform(0.25, 0.6), np.ones_like(texture)
        thin_refl = _cloud_reflectance(bands, rng, brightness, flat, style.thin_cirrus, style.ice)
        out = out * (1.0 - thin) + thin_refl * thin

    new = labels.copy()
    faint = (thick >= FAINT) | (thin >= FAINT) | (on_clear >= FAINT)
    new[faint] = LABEL_NODATA
    # a shadow under even a faint veil may be no darker than the ground around it
    unveiled = (thick < SHADOW_MAX_VEIL) & (thin < SHADOW_MAX_VEIL)
    new[(on_clear >= SHADOW_LABEL_DEPTH) & unveiled] = LABEL_CLOUD_SHADOW
    new[(thin >= style.label_alpha) & (thick < THICK_LABEL_ALPHA)] = LABEL_THIN_CLOUD
    new[thick >= THICK_LABEL_ALPHA] = LABEL_THICK_CLOUD
    return out, new


#: Snow's reflectance relative to its visible reflectance: bright to the near infrared, dark
#: in the SWIR (ice absorbs there, which is how multispectral maskers tell it from cloud).
SNOW_SPECTRUM = dict(
    zip(
        L1C_BANDS,
        (1.0, 1.0, 0.99, 0.97, 0.95, 0.92, 0.9, 0.86, 0.85, 0.6, 0.0, 0.12, 0.08),
        strict=True,
    )
)


def snow(
    image: np.ndarray, labels: np.ndarray, bands: Sequence[str], *, rng: np.random.Generator
) -> np.ndarray:
    """Snow-covered mountains over the clear ground of ``image`` (C, S, S): a bright surface
    that is *not* cloud. Labels are unchanged (snow is clear sky).

    A fractal terrain is lit by a random sun (hillshade), so snow carries what tells it from
    cloud in true colour alone: sharp ridges, shaded slopes that turn blue-grey under the sky
    light, and snow-free rock and valleys with sharp edges, where clouds are soft and smooth.
    Snow lies above a random snow line and less on steep slopes; elsewhere the real ground
    shows through."""
    size = image.shape[-1]
    coarse = max(16, size // int(rng.choice([2, 4, 8])))
    height = ndimage.zoom(_fractal(rng, coarse, rng.uniform(2.4, 3.2)), size / coarse, order=3)
    height = height[:size, :size] * rng.uniform(1.0, 4.0)  # relief, in pixel units
    gy, gx = np.gradient(height)
    azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(15), np.radians(60))
    slope = np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)
    shade = np.sin(elevation) * np.cos(slope) + np.cos(elevation) * np.sin(slope) * np.cos(
        azimuth - aspect
    )
    shade = np.clip(shade / max(np.sin(elevation), 1e-3), 0.15, 1.3)
    line = np.quantile(height, 1.0 - rng.uniform(0.4, 0.95))
    cover = (height > line) & (slope < np.radians(rng.uniform(50, 75)))
    cover = ndimage.binary_opening(cover, iterations=1).astype(np.float32)
    cover = cover * (labels == LABEL_CLEAR)
    brightness = rng.uniform(0.35, 0.9)
    # shaded snow is lit by the blue sky only
    blue_cast = 1.0 + rng.uniform(0.1, 0.3) * (1.0 - np.minimum(shade, 1.0))
    out = image.astype(np.float32, copy=True)
    for c, band in enumerate(bands):
        if band == CIRRUS_BAND:
            continue  # the surface is invisible at 1.38 um
        ratio = SNOW_SPECTRUM[band] * (1.0 + rng.normal(0.0, 0.03))
        tint = blue_cast if band in ("B01", "B02") else 1.0
        out[c] = out[c] * (1.0 - cover) + brightness * ratio * shade * tint * cover
    return out


def _fractal(rng: np.random.Generator, size: int, beta: float) -> np.ndarray:
    """Zero-mean, unit-variance noise with power spectrum 1 / f^beta (size x size)."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / (
        f ** (beta / 2)
    )
    spectrum[0, 0] = 0.0
    noise = np.real(np.fft.ifft2(spectrum))
    return ((noise - noise.mean()) / (noise.std() + 1e-8)).astype(np.float32)


def _cloud_noise(rng: np.random.Generator, field: int, *, smooth: bool = False) -> np.ndarray:
    """Fractal noise drawn at a coarser scale and zoomed: cloud cells of random size."""
    zoom = rng.uniform(1.0, 6.0) * (2.0 if smooth else 1.0)
    coarse = max(8, int(np.ceil(field / zoom)))
    beta = rng.uniform(2.5, 3.5) if smooth else rng.uniform(2.0, 3.2)
    noise = ndimage.zoom(_fractal(rng, coarse, beta), field / coarse, order=1)
    return noise[:field, :field]


def _soft_cover(noise: np.ndarray, cover: float, softness: float) -> np.ndarray:
    """How far ``noise`` rises above the level that leaves ``cover`` of the field covered."""
    level = np.quantile(noise, 1.0 - cover)
    return np.clip((noise - level) / softness, 0.0, None).astype(np.float32)


def shadow_shift(
    size: int, rng: np.random.Generator, sun: SunAngles | None, resolution: float | None
) -> tuple[float, float] | None:
    """(rows, columns) from a cloud to its shadow in a crop of ``size`` pixels; None when the
    shadow falls more than a crop away (no cloud of the field casts it into the crop)."""
    if sun is None or resolution is None:
        offset = rng.uniform(0.1, 0.9) * size / 2
        azimuth = rng.uniform(0.0, 2.0 * np.pi)
        return offset * np.sin(azimuth), offset * np.cos(azimuth)
    east, north = sun.shadow_offset()  # metres per metre of height
    height = np.exp(rng.uniform(np.log(MIN_HEIGHT_KM), np.log(MAX_HEIGHT_KM))) * 1000.0
    rows, cols = -north * height / resolution, east * height / resolution
    return None if max(abs(rows), abs(cols)) > size else (rows, cols)


def _cast_shadow(
    thick: np.ndarray, margin: int, size: int, shift: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    dy, dx = int(round(shift[0])), int(round(shift[1]))
    blurred = ndimage.gaussian_filter(thick, rng.uniform(0.3, 2.0))
    window = blurred[margin - dy : margin - dy + size, margin - dx : margin - dx + size]
    return np.clip(window * rng.uniform(1.0, 1.6), 0.0, 1.0).astype(np.float32)


def _cloud_reflectance(
    bands: Sequence[str],
    rng: np.random.Generator,
    brightness: float,
    texture: np.ndarray,
    cirrus_range: tuple[float, float],
    ice: bool = False,
) -> np.ndarray:
    """(C, S, S) reflectance of a cloud layer: a perturbed spectrum times a texture; its B10
    reflectance per unit opacity drawn in ``cirrus_range``, its SWIR lower for ``ice``."""
    swir = {
        "B11": rng.uniform(0.7, 1.2),
        "B12": rng.uniform(0.6, 1.2),
        "B09": rng.uniform(0.8, 1.2),
    }
    if ice:  # ice absorbs more than water in the SWIR
        swir["B11"] *= rng.uniform(0.4, 0.8)
        swir["B12"] *= rng.uniform(0.3, 0.7)
    cirrus = rng.uniform(*cirrus_range)
    layers = []
    for band in bands:
        if band == CIRRUS_BAND:
            # the cirrus band is absorbed by water vapour below the cloud: its signal is the
            # cloud's own and depends on the cloud's height, not its visible brightness
            layers.append(cirrus * texture)
            continue
        ratio = CLOUD_SPECTRUM[band] * swir.get(band, 1.0) * (1.0 + rng.normal(0.0, 0.03))
        layers.append(brightness * ratio * texture)
    return np.stack(layers).astype(np.float32)
