"""`cloudkit evaluate --shadows geometric`: the predict-time shadow check on scored tiles.

Each tile is checked on its own, with its scene's sun angles from the store's ``scenes/``
table (``sun_azimuth``, ``sun_zenith``; stores tiled before cloudkit recorded them, or scenes
without angles, get the direction estimated) and the scene's latitude. A tile is a small
scene: a cloud just beyond its edge is unseen, so shadow near its up-sun edges stays (as at
a scene's edge). The figures then show what the check changes against the labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from affine import Affine

from cloudkit.errors import OptionError
from cloudkit.geometry.shadows import ClassCodes, check_shadows
from cloudkit.geometry.sun import SunAngles
from cloudkit.io.store import StoreReader
from cloudkit.io.sun_metadata import scene_place


def require_checkable(classes, what: str) -> None:
    """A one-line OptionError unless the model's classes include cloud and cloud shadow."""
    codes = ClassCodes.of(classes)
    if codes.shadow is None or not codes.cloud:
        raise OptionError(
            f"--shadows geometric: {what} predicts {', '.join(classes)}; the check needs "
            "cloud and cloud shadow (task multi). Drop --shadows or use --shadows model"
        )


@dataclass
class StoreSuns:
    """Per committed scene of a store: its sun angles (None: unknown) and latitude."""

    resolution: float
    tile_scene: np.ndarray
    suns: list[SunAngles | None]
    latitudes: list[float | None]

    @classmethod
    def of(cls, reader: StoreReader) -> StoreSuns:
        n = reader.num_scenes
        azimuth = _column(reader, "sun_azimuth", n)
        zenith = _column(reader, "sun_zenith", n)
        sources = _column(reader, "sun_source", n)
        suns, latitudes = [], []
        crs: np.ndarray | list = reader.scenes("crs") if n else []
        transform: np.ndarray | list = reader.scenes("transform") if n else []
        shape: np.ndarray | list = reader.scenes("shape") if n else []
        for s in range(n):
            az, zen = float(azimuth[s]), float(zenith[s])
            known = math.isfinite(az) and math.isfinite(zen)
            source = str(sources[s]) if sources is not None else "the store's scenes/ table"
            suns.append(SunAngles(az, zen, source or "the store") if known else None)
            place = _place(crs[s], transform[s], shape[s])
            latitudes.append(place[0] if place else None)
        return cls(reader.resolution, reader.index("tile_scene"), suns, latitudes)

    def of_tile(self, row: int) -> tuple[SunAngles | None, float | None]:
        s = int(self.tile_scene[row])
        return self.suns[s], self.latitudes[s]


def _column(reader: StoreReader, name: str, n: int):
    try:
        return reader.scenes(name)
    except KeyError:  # a store tiled before cloudkit recorded the sun
        return np.full(n, np.nan) if name != "sun_source" else None


def _place(crs_wkt, transform, shape) -> tuple[float, float] | None:
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        crs = CRS.from_wkt(str(crs_wkt))
    except CRSError:
        return None
    a, b, c, d, e, f = (float(v) for v in transform)
    return scene_place(crs, Affine(a, b, c, d, e, f), int(shape[0]), int(shape[1]))


@dataclass
class TileChecker:
    """Checks the tiles of a batch and adds up what it removed."""

    classes: tuple[str, ...]
    shadow_pixels: int = 0
    removed: int = 0
    suns: dict = field(default_factory=dict)

    def check(
        self,
        predicted: np.ndarray,
        probabilities: np.ndarray,
        valid: np.ndarray,
        store: StoreSuns,
        row: int,
    ) -> np.ndarray:
        """(H, W) classes of one tile -> after the check; ``probabilities`` (K, H, W)."""
        sun, latitude = store.of_tile(row)
        out, report = check_shadows(
            predicted.astype(np.uint8),
            np.where(valid, probabilities, np.nan),
            self.classes,
            resolution=store.resolution,
            sun=sun,
            valid=valid,
            rule="multi",
            latitude=latitude,
        )
        self.shadow_pixels += int(report.get("shadow_pixels", 0))
        self.removed += int(report.get("removed_pixels", 0))
        source = (report.get("sun") or {}).get("source", "estimated")
        self.suns[source] = self.suns.get(source, 0) + 1
        return out

    def report(self) -> dict:
        return {
            "method": "geometric",
            "per": "tile",
            "shadow_pixels": self.shadow_pixels,
            "removed_pixels": self.removed,
            "removed_percent": round(100.0 * self.removed / self.shadow_pixels, 2)
            if self.shadow_pixels
            else 0.0,
            "tiles_by_sun_source": self.suns,
        }
