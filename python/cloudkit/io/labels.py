"""Lookup tables from each source's label codes to cloudkit's codes (see ``io/scene.py``).

Every table is ``uint8[256]`` and maps any code its source does not define to no-data, so a
stray value can never be counted as clear sky.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cloudkit.errors import InvalidSceneError
from cloudkit.io.scene import (
    LABEL_CLEAR,
    LABEL_CLOUD_SHADOW,
    LABEL_NODATA,
    LABEL_THICK_CLOUD,
    LABEL_THIN_CLOUD,
    LabelSource,
)


def make_lut(mapping: dict[int, int]) -> np.ndarray:
    """A uint8[256] table: ``mapping`` where given, no-data elsewhere."""
    lut = np.full(256, LABEL_NODATA, dtype=np.uint8)
    for code, label in mapping.items():
        lut[code] = label
    lut.setflags(write=False)  # shared by every LabelSource; nobody may edit it in place
    return lut


#: Sen2Cor scene classification (SCL). Medium and high cloud probability both count as thick
#: cloud; dark areas, vegetation, soil, water, unclassified and snow are "not cloud" = clear.
SCL_LUT = make_lut(
    {
        0: LABEL_NODATA,  # no data
        1: LABEL_NODATA,  # saturated or defective
        2: LABEL_CLEAR,  # dark area pixels
        3: LABEL_CLOUD_SHADOW,
        4: LABEL_CLEAR,  # vegetation
        5: LABEL_CLEAR,  # bare soils
        6: LABEL_CLEAR,  # water
        7: LABEL_CLEAR,  # unclassified
        8: LABEL_THICK_CLOUD,  # cloud, medium probability
        9: LABEL_THICK_CLOUD,  # cloud, high probability
        10: LABEL_THIN_CLOUD,  # thin cirrus
        11: LABEL_CLEAR,  # snow or ice
    }
)

#: WHUS2-CD+ masks: 255 cloud, 128 clear, 0 no data.
WHUS2_LUT = make_lut({255: LABEL_THICK_CLOUD, 128: LABEL_CLEAR, 0: LABEL_NODATA})

#: CloudSEN12 manual labels already use cloudkit's four classes; in scribble labels every
#: other value is an unlabelled pixel, i.e. no data.
CLOUDSEN12_LUT = make_lut(
    {
        0: LABEL_CLEAR,
        1: LABEL_THICK_CLOUD,
        2: LABEL_THIN_CLOUD,
        3: LABEL_CLOUD_SHADOW,
    }
)


# --- masks written by cloudkit (`predict`), as labels ---------------------------------------

#: GeoTIFF tags of a cloudkit mask: its class names by code (JSON), and its no-data code
CLASSES_TAG = "CLOUDKIT_CLASSES"
NODATA_TAG = "CLOUDKIT_NODATA"
#: class names a mask may hold -> cloudkit label code; a binary mask's "cloud" counts as thick
#: cloud, and names that mix classes ("no shadow", "cloud or shadow") cannot be labels
_NAME_CODES = {
    "clear": LABEL_CLEAR,
    "thick cloud": LABEL_THICK_CLOUD,
    "thin cloud": LABEL_THIN_CLOUD,
    "cloud shadow": LABEL_CLOUD_SHADOW,
    "cloud": LABEL_THICK_CLOUD,
}
MASK_KIND = "mask"


def mask_label_source(path: Path, what: str) -> LabelSource:
    """The classes of a cloudkit mask (``SCENE_mask.tif`` as `cloudkit predict` writes it) as
    a scene's labels; a one-line error, naming ``path`` and ``what`` asked for it, when it is
    missing, untagged or holds classes that are not cloudkit's."""
    import rasterio

    if not path.is_file():
        raise InvalidSceneError(f"{path}: missing; {what} reads each scene's SCENE_mask.tif")
    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
    except rasterio.errors.RasterioIOError as err:
        raise InvalidSceneError(f"{path}: not a readable GeoTIFF ({err})") from None
    try:
        names = {int(code): str(name) for code, name in json.loads(tags[CLASSES_TAG]).items()}
        nodata = int(tags.get(NODATA_TAG, LABEL_NODATA))
    except (KeyError, ValueError, TypeError, AttributeError):
        raise InvalidSceneError(
            f"{path}: no readable {CLASSES_TAG} tag naming its classes; {what} takes masks "
            "written by `cloudkit predict`"
        ) from None
    unknown = sorted(n for n in names.values() if n not in _NAME_CODES)
    if unknown:
        raise InvalidSceneError(
            f"{path}: classes {', '.join(map(repr, unknown))} cannot be labels (expected "
            f"{', '.join(_NAME_CODES)}); use a mask of a cloud or multi model"
        )
    mapping = {code: _NAME_CODES[name] for code, name in names.items() if 0 <= code < 256}
    mapping[nodata] = LABEL_NODATA
    return LabelSource(path, make_lut(mapping), kind=f"{MASK_KIND}:{path.name}")
