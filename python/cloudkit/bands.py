"""The one table of Sentinel-2 MSI bands: ESA name, native resolution, central wavelength.

Band order everywhere in cloudkit is ESA order (B01..B08, B8A, B09..B12); bands are named by
their ESA strings, never by bare indices.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Band:
    name: str
    resolution: int  # native ground sampling distance, metres
    wavelength_nm: float  # central wavelength (Sentinel-2A)
    band_id: int  # index used by the product metadata (`band_id` / `bandId` attributes)


BANDS: tuple[Band, ...] = (
    Band("B01", 60, 442.7, 0),
    Band("B02", 10, 492.4, 1),
    Band("B03", 10, 559.8, 2),
    Band("B04", 10, 664.6, 3),
    Band("B05", 20, 704.1, 4),
    Band("B06", 20, 740.5, 5),
    Band("B07", 20, 782.8, 6),
    Band("B08", 10, 832.8, 7),
    Band("B8A", 20, 864.7, 8),
    Band("B09", 60, 945.1, 9),
    Band("B10", 60, 1373.5, 10),
    Band("B11", 20, 1613.7, 11),
    Band("B12", 20, 2202.4, 12),
)

BY_NAME: dict[str, Band] = {b.name: b for b in BANDS}

#: All 13 L1C bands in ESA order.
L1C_BANDS: tuple[str, ...] = tuple(b.name for b in BANDS)
#: L2A products have no cirrus band B10.
L2A_BANDS: tuple[str, ...] = tuple(b.name for b in BANDS if b.name != "B10")


def band_by_id(band_id: int) -> Band:
    """The band a product's metadata means by ``band_id`` (0..12)."""
    for band in BANDS:
        if band.band_id == band_id:
            return band
    raise KeyError(f"no Sentinel-2 band has band_id {band_id}; expected 0..12")


def esa_order(names: list[str] | tuple[str, ...]) -> list[str]:
    """Sort band names into ESA order; unknown names raise KeyError."""
    for name in names:
        if name not in BY_NAME:
            raise KeyError(
                f"unknown Sentinel-2 band {name!r}; expected one of {', '.join(L1C_BANDS)}"
            )
    return sorted(names, key=lambda n: BY_NAME[n].band_id)
