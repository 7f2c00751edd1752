"""What a reader hands to the tiler: a scene as a set of band files plus metadata.

Readers (``io/safe.py``, ``io/datasets.py``, ...) only *describe* a scene; no pixels are read
here. The tiler picks one file per band for the target grid (``io/grid.py``) and streams it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from cloudkit.geometry.sun import SunAngles

#: Sentinel-2's quantification value, in every product so far: reflectance = (DN + add_offset)
#: / 10000. The default where a product's metadata does not say.
SENTINEL2_QUANTIFICATION = 10000.0
#: cloudkit's label codes in the tile store (one scheme for every source).
LABEL_CLEAR = 0
LABEL_THICK_CLOUD = 1
LABEL_THIN_CLOUD = 2
LABEL_CLOUD_SHADOW = 3
LABEL_NODATA = 255
LABEL_CLASSES = {
    LABEL_CLEAR: "clear",
    LABEL_THICK_CLOUD: "thick cloud",
    LABEL_THIN_CLOUD: "thin cloud",
    LABEL_CLOUD_SHADOW: "cloud shadow",
    LABEL_NODATA: "no data",
}


@dataclass(frozen=True)
class BandSource:
    """One raster band on disk that holds a Sentinel-2 band (maybe one of several candidates)."""

    band: str  # ESA name, e.g. "B8A"
    path: Path
    index: int = 1  # 1-based band index inside the file
    nominal_resolution: int | None = None  # from the product layout (e.g. R20m); None if unknown


@dataclass(frozen=True)
class LabelSource:
    """A label raster and the lookup table mapping its codes to cloudkit's codes."""

    path: Path
    lut: np.ndarray  # uint8[256]: source code -> cloudkit label code
    kind: str  # "whus2", "cloudsen12-high", "cloudsen12-scribble", "scl", ...
    index: int = 1
    nominal_resolution: int | None = None  # e.g. 20 for SCL_20m; None if unknown


@dataclass
class Scene:
    """A product or dataset sample, described but not read."""

    scene_id: str  # unique within a store, e.g. the product name without .SAFE
    path: Path  # the product folder / sample file the user pointed at
    layout: (
        str  # "l1c-safe", "l2a-safe", "band-folder", "cloudsen12", "whus2", "sen12ms", "geotiff"
    )
    # candidate files per band, in ESA order of bands; several candidates when a product
    # carries a band at more than one resolution (L2A R10m/R20m/R60m)
    bands: dict[str, list[BandSource]]
    quantification: float = SENTINEL2_QUANTIFICATION
    # per band: reflectance = (DN + add_offset[band]) / quantification
    add_offset: dict[str, int] = field(default_factory=dict)
    # the metadata file quantification and add_offset were read from; None: the defaults
    radiometry_file: Path | None = None
    # candidate label rasters (several for L2A SCL_20m / SCL_60m); empty when unlabelled
    labels: list[LabelSource] = field(default_factory=list)
    processing_baseline: str | None = None
    product_type: str | None = None
    # files the product's own metadata lists but that are absent on disk, by band
    missing: dict[str, list[Path]] = field(default_factory=dict)
    split: str | None = None  # dataset split when the layout has one ("train", "test", ...)
    # the mean sun (and view) angles the product's metadata records; None: it does not
    sun: SunAngles | None = None
    # when it was acquired (UTC), where known: sun angles are computed from it otherwise
    acquired: datetime | None = None

    def offset_of(self, band: str) -> int:
        return int(self.add_offset.get(band, 0))
