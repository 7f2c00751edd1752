"""The geometric shadow check (`cloudkit.geometry.shadows`) on a teacher's labels (`tile --labels-from`).

A teacher labels a scene one tile row at a time and its labels go into the scene's scratch
store with the row. Its rows are summed into the check's coarse grid on the way, and each
pixel's next likeliest label kept in an anonymous temporary file; when the scene is written,
the check decides where shadow is explained and the scratch store's label tiles are
rewritten there, before the scene is committed. Labels in cloudkit's codes throughout.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import cast

import numpy as np
import zarr

from cloudkit.geometry.shadows import (
    ClassCodes,
    CoarseAccumulator,
    Decision,
    Tally,
    decide,
    fallback_classes,
)
from cloudkit.io.grid import GridPlan
from cloudkit.io.scene import LABEL_CLASSES, LABEL_CLOUD_SHADOW, LABEL_NODATA
from cloudkit.io.store import TileRecord, TileStore
from cloudkit.io.sun_metadata import plan_sun

#: the label codes' names, in code order (clear, thick cloud, thin cloud, cloud shadow)
_NAMES = tuple(LABEL_CLASSES[code] for code in range(4))


class LabelShadowCheck:
    """The check of one scene's teacher labels; ``codes``: the teacher's label code of each
    of its classes (its probabilities' order)."""

    def __init__(self, plan: GridPlan, codes: Sequence[int]) -> None:
        self.codes = np.asarray(codes, np.uint8)
        self._shadow = list(codes).index(LABEL_CLOUD_SHADOW)
        self._classes = ClassCodes.of(_NAMES)
        self.sun, self.latitude = plan_sun(plan)
        self.height, self.width = plan.height, plan.width
        self._acc = CoarseAccumulator(plan.height, plan.width, plan.resolution)
        # closed by close(), when the scene is committed or dropped
        self._file = tempfile.TemporaryFile(prefix="cloudkit-fallback-")  # noqa: SIM115
        self._fallback: np.memmap | None = np.memmap(
            self._file, np.uint8, "w+", shape=(self.height, self.width)
        )
        self._next_row = 0
        self._tally = Tally(_NAMES)
        self._decision: Decision | None = None

    @classmethod
    def wanted(cls, codes: Sequence[int]) -> bool:
        """Only a teacher with a shadow class has shadow to check."""
        return LABEL_CLOUD_SHADOW in codes

    def add(self, row0: int, labels: np.ndarray, probabilities: np.ndarray) -> None:
        """Label rows ``row0..`` (codes, 255 no data) and the teacher's (K, rows, width)
        probabilities; rows already added (the overlap of tile rows) are skipped."""
        skip = max(0, self._next_row - row0)
        if skip >= labels.shape[0]:
            return
        labels, probabilities = labels[skip:], probabilities[:, skip:]
        row0 += skip
        valid = labels != LABEL_NODATA
        self._acc.add(
            row0,
            np.isin(labels, self._classes.cloud),
            labels == LABEL_CLOUD_SHADOW,
            probabilities[self._shadow],
            valid,
        )
        cloud = tuple(i for i, code in enumerate(self.codes) if code in self._classes.cloud)
        other = fallback_classes(probabilities, self._shadow, cloud=cloud)
        assert self._fallback is not None  # until close()
        self._fallback[row0 : row0 + labels.shape[0]] = self.codes[other]
        self._next_row = row0 + labels.shape[0]

    def rewrite(self, scratch: TileStore, tiles: Sequence[TileRecord]) -> list[TileRecord]:
        """Check the scene's label tiles in ``scratch``; the tile records, their cloud
        fractions brought up to date."""
        self._decision = decide(self._acc.masks(), self.sun, self._acc.factor, self.latitude)
        # the scratch store is local (staged there for s3:// too) and has its codecs on disk
        labels = zarr.open_array(str(cast(Path, scratch.path) / "labels"), mode="r+")
        assert self._fallback is not None  # until close()
        out = []
        for tile in tiles:
            stored = cast(np.ndarray, labels[tile.index, 0])
            rows = min(stored.shape[0], self.height - tile.row)
            cols = min(stored.shape[1], self.width - tile.col)
            inside = stored[:rows, :cols]
            fallback = np.asarray(
                self._fallback[tile.row : tile.row + rows, tile.col : tile.col + cols]
            )
            checked = self._tally.apply(
                self._decision, self._classes, tile.row, inside, fallback, col0=tile.col
            )
            if checked is inside:
                out.append(tile)
                continue
            stored = stored.copy()
            stored[:rows, :cols] = checked
            labels[tile.index, 0] = stored
            out.append(replace(tile, cloud_fraction=_cloud_fraction(stored)))
        return out

    def report(self) -> dict:
        decision = self._decision.report if self._decision is not None else {}
        return {"method": "geometric", **decision, **self._tally.report()}

    def close(self) -> None:
        self._fallback = None
        self._file.close()


def _cloud_fraction(labels: np.ndarray) -> float:
    """The tile writer's figure: cloud (thick or thin) among the labelled pixels."""
    labelled = labels != LABEL_NODATA
    n = int(labelled.sum())
    return float(np.isin(labels, (1, 2)).sum()) / n if n else float("nan")
