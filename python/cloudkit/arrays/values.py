"""An array's numbers to what the scene pipeline cuts windows from: DN per band plus the shift
that brings them to the tile store's values (`io/store/`), as a product's bands are.

Two kinds of input, told apart by dtype:

- floating point: reflectance, 0-1 (what a product's DN mean once its offset and
  quantification are applied); NaN is no data. It becomes the store's value directly
  (``reflectance * 10000 + 1000``, rounded), which is exact for reflectance made from DN;
- integers: Sentinel-2 DN as a product's files hold them; 0 is no data, as in the products.
  Their radiometric offset must be given (``dn_offset``: BOA_ADD_OFFSET / RADIO_ADD_OFFSET,
  -1000 for processing baseline 04.00 and later, 0 before), or reflectance would be off by 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

from cloudkit.bands import BY_NAME, L1C_BANDS
from cloudkit.errors import BandMismatchError, InvalidSceneError, OptionError
from cloudkit.io.store import QUANTIFICATION, STORE_ADD_OFFSET, dn_shift_for

#: the largest radiometric offset read: as `pipeline.writer.MAX_OFFSET` for products
MAX_OFFSET = 2000
_DN_MAX = 65535
#: the highest reflectance a Sentinel-2 product can hold (DN 65535, no offset): floats above
#: it are not reflectance, most often DN as floats (CloudSEN12's GeoTIFFs hold those)
MAX_REFLECTANCE = _DN_MAX / QUANTIFICATION


@dataclass(frozen=True)
class Pixels:
    """How the numbers of an array are read."""

    reflectance: bool  # floating point reflectance; else integer DN
    shifts: tuple[int, ...]  # per band: added to every non-zero DN (the Rust cut rebases)
    nodata: float | None  # one more value meaning no data (besides NaN, or DN 0)


def band_names(bands: Sequence[str] | None, count: int) -> tuple[str, ...]:
    """ESA names of the ``count`` bands of an array, checked; upper case is the ESA form."""
    if bands is None or isinstance(bands, str):
        raise BandMismatchError(
            f"the array has {count} bands: name them in order, e.g. bands=('B02', 'B03', "
            "'B04', ...) (an xarray DataArray may name them in its 'band' coordinate)"
        )
    names = tuple(str(b).strip().upper() for b in bands)
    unknown = [b for b in names if b not in BY_NAME]
    if unknown:
        raise BandMismatchError(
            f"unknown Sentinel-2 band(s) {', '.join(map(repr, unknown))}; expected names of "
            f"{', '.join(L1C_BANDS)}"
        )
    twice = sorted({b for b in names if names.count(b) > 1})
    if twice:
        raise BandMismatchError(f"bands name {', '.join(twice)} twice; each band once")
    if len(names) != count:
        raise BandMismatchError(
            f"the array has {count} band(s) along its band axis but bands names {len(names)} "
            f"({', '.join(names)}); give one name per band, or check band_axis"
        )
    return names


def pixels_of(
    dtype: np.dtype, count: int, *, dn_offset: int | Sequence[int] | None, nodata: float | None
) -> Pixels:
    """What the array's dtype says its numbers are, with the shifts its bands need."""
    if nodata is not None and not math.isfinite(float(nodata)):
        raise OptionError(f"nodata={nodata}: NaN is always no data; give a finite value or None")
    if np.issubdtype(dtype, np.floating):
        if dn_offset is not None:
            raise OptionError(
                f"dn_offset={dn_offset} goes with integer DN; a {dtype} array is read as "
                "reflectance, its offset applied already"
            )
        return Pixels(True, (0,) * count, nodata)
    if not np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_):
        raise InvalidSceneError(
            f"an array of {dtype}: expected reflectance (float, 0-1) or Sentinel-2 DN (integers, "
            "e.g. uint16)"
        )
    if dn_offset is None:
        raise OptionError(
            f"a {dtype} array is read as Sentinel-2 DN: pass dn_offset, the product's "
            "BOA_ADD_OFFSET or RADIO_ADD_OFFSET (-1000 for processing baseline 04.00 and "
            "later, 0 before), or pass reflectance as floats"
        )
    if np.ndim(dn_offset) == 0:
        offsets = [int(cast(int, dn_offset))] * count
    else:
        offsets = [int(o) for o in cast(Sequence[int], dn_offset)]
    if len(offsets) != count or any(abs(o) > MAX_OFFSET for o in offsets):
        raise OptionError(
            f"dn_offset={dn_offset}: expected one offset, or one per band ({count}), each "
            f"within +-{MAX_OFFSET} (Sentinel-2 products hold 0 or -1000)"
        )
    return Pixels(False, dn_shift_for(offsets), nodata)


def to_dn(block: np.ndarray, pixels: Pixels) -> np.ndarray:
    """``(C, H, W)`` pixels -> C-contiguous uint16 DN, 0 where there is no data (for
    reflectance: the store's values, whose shift is 0)."""
    if pixels.reflectance:
        dn = np.empty(block.shape, dtype=np.uint16)
        for band, out in zip(block, dn, strict=True):  # one band at a time: float64 is big
            values = np.asarray(band, dtype=np.float64)
            missing = ~np.isfinite(values)
            if pixels.nodata is not None:
                missing |= values == pixels.nodata
            _require_reflectance(values, missing)
            # the store's rounding of reflectance: value = reflectance * 10000 - STORE_ADD_OFFSET
            stored = np.rint(np.where(missing, 0.0, values) * QUANTIFICATION) - STORE_ADD_OFFSET
            out[...] = np.clip(stored, 1, _DN_MAX)
            out[missing] = 0
        return dn
    if block.dtype != np.uint16 and block.size:
        low, high = int(block.min()), int(block.max())
        if low < 0 or high > _DN_MAX:
            raise InvalidSceneError(
                f"DN from {low} to {high}: Sentinel-2 DN lie in 0..{_DN_MAX}; pass reflectance "
                "as floats instead"
            )
    dn = np.array(block, dtype=np.uint16, order="C")
    if pixels.nodata is not None:
        dn[np.asarray(block) == pixels.nodata] = 0
    return dn


def _require_reflectance(values: np.ndarray, missing: np.ndarray) -> None:
    """InvalidSceneError for floats no product's reflectance reaches: clipped, they would
    become a mask of bright cloud everywhere instead of an error."""
    high = float(np.max(values, where=~missing, initial=-np.inf))
    if high > MAX_REFLECTANCE:
        raise InvalidSceneError(
            f"floats up to {high:g}: read as reflectance (0-1), and Sentinel-2 reflectance "
            f"never exceeds {MAX_REFLECTANCE:g}; DN held as floats are reflectance x 10000: "
            "divide them by 10000, or pass integer DN with dn_offset"
        )


def require_some_valid(classes: np.ndarray, nodata: int) -> None:
    """InvalidSceneError when a mask holds no class at all (no pixel had every band)."""
    if not (classes != nodata).any():
        raise InvalidSceneError(
            "the array holds no valid pixel: every pixel is NaN or no data (DN 0, or nodata) "
            "in at least one band; there is nothing to mask"
        )
