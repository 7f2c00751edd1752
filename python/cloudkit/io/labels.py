"""Lookup tables from each source's label codes to cloudkit's codes (see ``io/scene.py``).

Every table is ``uint8[256]`` and maps any code its source does not define to no-data, so a
stray value can never be counted as clear sky.
"""

from __future__ import annotations

import numpy as np

from cloudkit.io.scene import (
    LABEL_CLEAR,
    LABEL_CLOUD_SHADOW,
    LABEL_NODATA,
    LABEL_THICK_CLOUD,
    LABEL_THIN_CLOUD,
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
