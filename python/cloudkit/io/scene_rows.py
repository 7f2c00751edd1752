"""The native rows every chosen file of a planned scene supplies for a range of target rows.

`cloudkit tile` and `cloudkit predict` both walk a scene tile row by tile row; this is the one
place that turns a grid plan into decoding lanes (a DN check per band file, the label LUT for
the label file) and asks each lane for exactly the native rows a target row range needs.
"""

from __future__ import annotations

import numpy as np

from cloudkit import kernels
from cloudkit.errors import InvalidSceneError
from cloudkit.io.band_stream import BandStream, RasterBand
from cloudkit.io.grid import GridPlan


class SceneRows:
    """Decode a planned scene ahead of a caller that asks for increasing target row ranges.

    Use as a context manager (it owns the decoding threads of a :class:`BandStream`).
    """

    def __init__(self, plan: GridPlan, *, workers: int, with_labels: bool = False) -> None:
        if with_labels and plan.label is None:
            raise ValueError(f"{plan.scene.scene_id}: the plan has no label file")
        lanes = [
            RasterBand(src.path, src.index, as_dn(src.path), level=plan.levels[i])
            for i, src in enumerate(plan.sources)
        ]
        self.factors = list(plan.factors)
        if with_labels:
            # a plan with a label file has its factor (plan_grid)
            assert plan.label is not None and plan.label_factor is not None
            lanes.append(RasterBand(plan.label.path, plan.label.index, through_lut(plan.label.lut)))
            self.factors.append(plan.label_factor)
        self.with_labels = with_labels
        self._count = len(plan.sources)
        self._stream = BandStream(lanes, workers=workers)

    def __enter__(self) -> SceneRows:
        self._stream.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.__exit__(*exc)

    def read(self, y0: int, rows: int) -> tuple[list[np.ndarray], np.ndarray | None]:
        """(per band native DN rows, native label rows or None) for target rows [y0, y0+rows)."""
        arrays = []
        for i, factor in enumerate(self.factors):
            native_rows = self._stream.shape(i)[0]
            arrays.append(self._stream.rows(i, *kernels.band_window(y0, rows, factor, native_rows)))
        labels = arrays[self._count] if self.with_labels else None
        return arrays[: self._count], labels


def as_dn(path):
    """A lane conversion that checks a band holds unsigned 16-bit DN (converting lossless
    integer types)."""

    def convert(data: np.ndarray) -> np.ndarray:
        if data.dtype == np.uint16:
            return data
        if (
            np.issubdtype(data.dtype, np.integer)
            and data.min(initial=0) >= 0
            and data.max(initial=0) <= 65535
        ):
            return data.astype(np.uint16)
        raise InvalidSceneError(
            f"{path}: holds {data.dtype} values, expected 16-bit unsigned digital numbers"
        )

    return convert


def through_lut(lut: np.ndarray):
    """A lane conversion mapping a label raster's codes to cloudkit's codes (codes beyond 255
    become no-data)."""

    def convert(data: np.ndarray) -> np.ndarray:
        if data.dtype != np.uint8:
            data = np.where((data >= 0) & (data <= 255), data, 255).astype(np.uint8)
        return lut[data]

    return convert
