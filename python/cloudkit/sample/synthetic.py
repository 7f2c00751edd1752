"""Write synthetic Sentinel-2 L1C ``.SAFE`` products with realistic naming, metadata and texture.

Used for the sample product that ships with cloudkit, for edge-case fixtures and for the
full-size (10980 x 10980) benchmark scene. The pixels are made up, but shaped like the real
thing: land cover patches, a lake, snow on the peaks, fractal cumulus with brighter cores and
their shadows cast along a sun azimuth, a cirrus veil (faint in the visible, plain in B10),
per-pixel sensor noise (so JPEG 2000 compresses about as well as on real scenes), a no-data
wedge outside the swath, and DN offset by +1000 as in processing baseline 04.00. Because the
scene is made, its classes are known exactly: ``labels=FOLDER`` writes them as a mask like
`cloudkit predict`'s (``SCENE_mask.tif``, 20 m), which `cloudkit tile --labels-from FOLDER`
stores as labels.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from cloudkit.bands import BANDS
from cloudkit.io.datasets import baseline_offset
from cloudkit.io.labels import CLASSES_TAG, NODATA_TAG

# Typical top-of-atmosphere reflectance per band (B01..B12, ESA order) of each surface.
_SPECTRA = {
    "water": (0.12, 0.10, 0.08, 0.06, 0.05, 0.04, 0.035, 0.03, 0.025, 0.01, 0.002, 0.01, 0.005),
    "vegetation": (0.11, 0.09, 0.08, 0.05, 0.10, 0.25, 0.30, 0.33, 0.34, 0.12, 0.004, 0.18, 0.09),
    "soil": (0.13, 0.12, 0.13, 0.15, 0.17, 0.19, 0.21, 0.22, 0.23, 0.09, 0.006, 0.30, 0.24),
    "snow": (0.8, 0.79, 0.78, 0.77, 0.76, 0.74, 0.72, 0.7, 0.68, 0.4, 0.005, 0.1, 0.06),
    "cloud": (0.45, 0.44, 0.43, 0.43, 0.45, 0.47, 0.48, 0.48, 0.48, 0.25, 0.03, 0.35, 0.25),
}
_CIRRUS_B10 = 0.06
#: opacity of the cirrus veil in every band but B10, where the cirrus field is 1
_CIRRUS_VEIL = 0.35
#: atmospheric path reflectance per band, which a shadow does not darken
_PATH = (0.09, 0.065, 0.04, 0.025, 0.02, 0.015, 0.012, 0.01, 0.01, 0.005, 0.0, 0.003, 0.002)
#: height of the cumulus whose shadows the products cast (metres): with the shadow's reach it
#: sets the sun zenith their metadata records
CUMULUS_HEIGHT_M = 1500.0
#: share of a band's surface signal a full shadow removes (the direct sun's)
_SHADOW_DEPTH = (0.5, 0.55, 0.62, 0.68, 0.7, 0.72, 0.74, 0.75, 0.75, 0.76, 0.0, 0.8, 0.8)


@dataclass(frozen=True)
class SyntheticProduct:
    path: Path
    tile_id: str
    size_10m: int
    baseline: str
    labels: Path | None = None  # the exact classes, when asked for


#: the classes of a synthetic mask, by code (cloudkit's label codes)
LABEL_CLASSES = ("clear", "thick cloud", "thin cloud", "cloud shadow")


def write_l1c_safe(
    dest: Path,
    *,
    size_10m: int = 768,
    seed: int = 0,
    baseline: str = "04.00",
    tile_id: str = "T31TCJ",
    sensing: str = "20230615T104031",
    driver: str = "JP2OpenJPEG",
    overwrite: bool = False,
    labels: Path | None = None,
) -> SyntheticProduct:
    """Write an L1C product into ``dest`` (a folder); returns where it is.

    ``size_10m`` must be a multiple of 6 so the 20 m and 60 m grids line up exactly.
    Files are written to a temporary folder and renamed into place, so an interrupted run
    never leaves a product that looks complete.
    """
    if size_10m % 6:
        raise ValueError(f"size_10m must be a multiple of 6, got {size_10m}")

    offset = baseline_offset(baseline)
    pb = baseline.replace(".", "")
    name = f"S2B_MSIL1C_{sensing}_N{pb}_R008_{tile_id}_{sensing[:8]}T131517.SAFE"
    final = Path(dest) / name
    mask = None if labels is None else Path(labels) / f"{name.removesuffix('.SAFE')}_mask.tif"
    if final.exists():
        if not overwrite and (mask is None or mask.exists()):
            return SyntheticProduct(final, tile_id, size_10m, baseline, mask)
        shutil.rmtree(final)
    tmp = Path(dest) / f".{name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    granule = f"L1C_{tile_id}_A032448_{sensing}"
    img_dir = tmp / "GRANULE" / granule / "IMG_DATA"
    img_dir.mkdir(parents=True)
    prefix = f"{tile_id}_{sensing}"
    ext = ".jp2" if driver == "JP2OpenJPEG" else ".tif"

    rng = np.random.default_rng(seed)
    scene = _Scene.generate(size_10m // 6, rng)
    crs = CRS.from_epsg(32631)
    x0, y0 = 300000.0, 5000040.0
    for band in BANDS:
        factor = band.resolution // 10
        n = size_10m // factor
        dn = scene.band_dn(band.band_id, factor, offset, rng)
        profile = {
            "driver": driver,
            "width": n,
            "height": n,
            "count": 1,
            "dtype": "uint16",
            "crs": crs,
            "transform": Affine(band.resolution, 0.0, x0, 0.0, -band.resolution, y0),
        }
        if driver == "JP2OpenJPEG":
            # lossless and tiled like the real products
            block = min(1024, n)
            profile.update(
                QUALITY=100, REVERSIBLE="YES", BLOCKXSIZE=block, BLOCKYSIZE=block, RESOLUTIONS=4
            )
        with rasterio.open(img_dir / f"{prefix}_{band.name}{ext}", "w", **profile) as dst:
            dst.write(dn, 1)
        del dn
    (tmp / "MTD_MSIL1C.xml").write_text(
        _mtd_xml(name, baseline, granule, prefix, offset), encoding="utf-8"
    )
    # the sun the shadows were cast with, where a real product keeps it
    (tmp / "GRANULE" / granule / "MTD_TL.xml").write_text(
        _tile_xml(*scene.sun_angles()), encoding="utf-8"
    )
    if mask is not None:
        _write_mask(mask, scene, crs, x0, y0)
    tmp.rename(final)
    return SyntheticProduct(final, tile_id, size_10m, baseline, mask)


def _write_mask(path: Path, scene: _Scene, crs, x0: float, y0: float) -> None:
    """The scene's exact classes at 20 m, tagged like a `cloudkit predict` mask."""
    codes = _repeat(scene.labels(), 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    profile = {
        "driver": "GTiff",
        "width": codes.shape[1],
        "height": codes.shape[0],
        "count": 1,
        "dtype": "uint8",
        "crs": crs,
        "transform": Affine(20.0, 0.0, x0, 0.0, -20.0, y0),
        "nodata": 255,
        "compress": "deflate",
    }
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(codes, 1)
        names = dict(enumerate(LABEL_CLASSES))
        dst.update_tags(**{CLASSES_TAG: json.dumps(names), NODATA_TAG: "255"})
    tmp.replace(path)


class _Scene:
    """Surface classes and cloud fields on the 60 m grid, refined per band.

    Surfaces: water in the low ground, vegetation or bare soil by moisture, snow on the
    highest ground. Thick cumulus, a thin cirrus veil (faint in the visible, plain in B10),
    and the cumulus' shadow cast along a sun azimuth, a few hundred metres away."""

    def __init__(
        self,
        classes: np.ndarray,
        cloud: np.ndarray,
        cirrus: np.ndarray,
        nodata: np.ndarray,
        shadow: np.ndarray,
        shadow_azimuth: float = 0.0,
        shadow_reach_m: float = 0.0,
    ):
        self.classes, self.cloud, self.cirrus, self.nodata = classes, cloud, cirrus, nodata
        self.shadow = shadow
        #: where the shadow went from the cloud: azimuth (degrees, clockwise from north)
        #: and distance, as cast (the pixel shift rounded)
        self.shadow_azimuth, self.shadow_reach_m = shadow_azimuth, shadow_reach_m

    def sun_angles(self) -> tuple[float, float]:
        """(azimuth, zenith) of a sun that casts these shadows from cumulus at
        ``CUMULUS_HEIGHT_M``: opposite the shadow, as high as the shadow's reach says."""
        zenith = math.degrees(math.atan(self.shadow_reach_m / CUMULUS_HEIGHT_M))
        return (self.shadow_azimuth + 180.0) % 360.0, zenith

    @classmethod
    def generate(cls, n60: int, rng: np.random.Generator) -> _Scene:
        relief = _fractal(n60, rng, octaves=6)
        moisture = _fractal(n60, rng, octaves=5)
        classes = np.where(moisture > 0.5, 1, 2).astype(np.uint8)  # vegetation / soil
        classes[relief < 0.22] = 0  # a lake in the low ground
        classes[relief > 0.8] = 3  # snow on the peaks
        clouds = _fractal(n60, rng, octaves=7)
        cloud = np.clip((clouds - 0.55) / 0.2, 0.0, 1.0).astype(
            np.float32
        )  # cumulus cores saturate
        cirrus = np.clip((_fractal(n60, rng, octaves=4) - 0.6) / 0.3, 0.0, 1.0).astype(np.float32)
        yy, xx = np.mgrid[0:n60, 0:n60]
        nodata = xx < (0.35 * n60 - 0.3 * yy)  # outside the swath, as at a tile's edge
        # the shadow: the cumulus shifted away from the sun (azimuth, and cloud height x
        # tan(zenith) of 0.6 to 1.3 km), darker where the cloud is thicker
        azimuth = rng.uniform(0, 2 * np.pi)
        offset = rng.uniform(10, 22)  # 60 m pixels
        dy, dx = int(round(offset * np.cos(azimuth))), int(round(offset * np.sin(azimuth)))
        shadow = np.zeros_like(cloud)
        ys, yd = _shifted(n60, dy)
        xs, xd = _shifted(n60, dx)
        shadow[yd, xd] = cloud[ys, xs]
        # rows run south, columns east
        shadow_azimuth = math.degrees(math.atan2(dx, -dy)) % 360.0
        reach = 60.0 * math.hypot(dx, dy)
        return cls(classes, cloud, cirrus, nodata, shadow, shadow_azimuth, reach)

    def labels(self) -> np.ndarray:
        """Exact classes on the 60 m grid, in cloudkit's codes (255 outside the swath): thick
        cloud where the cumulus is at least a quarter opaque, thin cloud where only the
        cirrus veil is plain, shadow where it is deep on open ground."""
        codes = np.zeros(self.cloud.shape, np.uint8)  # clear
        veil = _CIRRUS_VEIL * self.cirrus
        codes[(self.shadow >= 0.3) & (self.cloud < 0.05) & (veil < 0.05)] = 3
        codes[(veil >= 0.15) & (self.cloud < 0.25)] = 2
        codes[self.cloud >= 0.25] = 1
        codes[self.nodata] = 255
        return codes

    def band_dn(
        self, band_id: int, factor: int, offset: int, rng: np.random.Generator
    ) -> np.ndarray:
        """DN of one band at its native grid (``factor`` = pixel size / 10 m)."""
        spectra = np.array([_SPECTRA[s][band_id] for s in ("water", "vegetation", "soil", "snow")])
        up = 6 // factor
        surface = _repeat(spectra[self.classes].astype(np.float32), up)
        # in the shadow only the diffuse sky light is left (more of it in the blue)
        keep = 1.0 - _SHADOW_DEPTH[band_id] * _repeat(self.shadow, up)
        surface = _PATH[band_id] + (surface - _PATH[band_id]) * keep
        cloud = _repeat(self.cloud, up)
        refl = surface * (1 - cloud) + _SPECTRA["cloud"][band_id] * cloud
        veil = _CIRRUS_VEIL * _repeat(self.cirrus, up)
        refl = refl * (1 - veil) + _SPECTRA["cloud"][band_id] * veil
        if band_id == 10:  # cirrus band sees high ice clouds, not the surface
            refl = 0.002 + _CIRRUS_B10 * _repeat(self.cirrus, up) + 0.02 * cloud
        # sensor noise and sub-field texture; fine bands carry more detail
        refl += rng.normal(0.0, 0.004 * (1 + 2 / factor), size=refl.shape).astype(np.float32)
        dn = np.clip(np.rint(refl * 10000) - offset, 1, 65535).astype(np.uint16)
        dn[_repeat(self.nodata, up)] = 0
        return dn


def _shifted(n: int, d: int) -> tuple[slice, slice]:
    """(source, destination) slices of a shift by ``d`` pixels along an axis of ``n``."""
    d = max(-n, min(n, d))
    return (slice(0, n - d), slice(d, n)) if d >= 0 else (slice(-d, n), slice(0, n + d))


def _fractal(n: int, rng: np.random.Generator, *, octaves: int) -> np.ndarray:
    """Value noise in [0, 1]: octaves of random grids, bilinearly upsampled and summed."""
    total = np.zeros((n, n), dtype=np.float32)
    weight = 0.0
    for o in range(octaves):
        cells = 2 ** (o + 2)
        amp = 0.5**o
        total += amp * _bilinear(rng.random((cells + 1, cells + 1), dtype=np.float32), n)
        weight += amp
    total /= weight
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(hi - lo, 1e-6)


def _bilinear(grid: np.ndarray, n: int) -> np.ndarray:
    pos = np.linspace(0, grid.shape[0] - 1, n, dtype=np.float32)
    i = np.minimum(pos.astype(np.int64), grid.shape[0] - 2)
    f = (pos - i)[:, None]
    rows = grid[i] * (1 - f) + grid[i + 1] * f  # (n, cells+1)
    g = f.T
    return rows[:, i] * (1 - g) + rows[:, i + 1] * g


def _repeat(a: np.ndarray, k: int) -> np.ndarray:
    return a if k == 1 else np.repeat(np.repeat(a, k, axis=0), k, axis=1)


def _tile_xml(azimuth: float, zenith: float) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-1C_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-1C_Tile_Metadata.xsd">
  <n1:Geometric_Info>
    <Tile_Angles>
      <Mean_Sun_Angle>
        <ZENITH_ANGLE unit="deg">{zenith:.6f}</ZENITH_ANGLE>
        <AZIMUTH_ANGLE unit="deg">{azimuth:.6f}</AZIMUTH_ANGLE>
      </Mean_Sun_Angle>
    </Tile_Angles>
  </n1:Geometric_Info>
</n1:Level-1C_Tile_ID>
"""


def _mtd_xml(name: str, baseline: str, granule: str, prefix: str, offset: int) -> str:
    files = "\n".join(
        f"            <IMAGE_FILE>GRANULE/{granule}/IMG_DATA/{prefix}_{b.name}</IMAGE_FILE>"
        for b in BANDS
    )
    offsets = ""
    if offset:
        rows = "\n".join(
            f'        <RADIO_ADD_OFFSET band_id="{b.band_id}">{offset}</RADIO_ADD_OFFSET>'
            for b in BANDS
        )
        offsets = f"      <Radiometric_Offset_List>\n{rows}\n      </Radiometric_Offset_List>\n"
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_URI>{name}</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-1C</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI1C</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <Product_Organisation>
        <Granule_List>
          <Granule imageFormat="JPEG2000">
{files}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
{offsets}    </Product_Image_Characteristics>
  </n1:General_Info>
</n1:Level-1C_User_Product>
"""
