"""A peer model as teacher: its classes become a tile store's labels (`tile --labels-from`).

The teacher sees what the tiler makes of a scene, one tile row at a time: the row's stripe of
store values on the target grid (cut by the tiler's own Rust kernel, `cut_stripe`, and its
windows laid side by side again), as reflectance with NaN where a band has no data. It runs
over the whole stripe with its own windows (ukis-csmask: 256 px, overlapping and blended), so
a tile's labels see the ground left and right of the tile; above and below, the stripe is
the tile row. Only that stripe is held, never the scene. The label codes come out on the
target grid (label factor 1), 255 where a band the teacher reads has no data, and go to the
store's writer with the row.

The store records where the labels came from in each scene's ``label_kind``:
``teacher:NAME VERSION, LICENCE``. Labels from s2cloudless are CC BY-SA 4.0 like the model,
and so is what is trained on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudkit import kernels
from cloudkit.data.reflectance import ValueScale
from cloudkit.errors import InvalidSceneError
from cloudkit.io.grid import GridPlan
from cloudkit.io.level import processing_level, require_level
from cloudkit.io.scene import LABEL_NODATA
from cloudkit.peers.registry import Peer, get_peer
from cloudkit.peers.teacher_shadows import LabelShadowCheck
from cloudkit.pipeline.writer import SceneJob


class Teacher:
    """The peer called ``name``, labelling the scenes a tile store is written from."""

    def __init__(self, name: str, *, threads: int) -> None:
        self.peer = get_peer(name, option="--labels-from")
        self.threads = threads
        #: what the store records of these labels
        self.kind = self.peer.label_kind()

    def bands_for(self, plan: GridPlan) -> tuple[tuple[str, ...], str]:
        """(bands the teacher reads of the planned scene, its level); a one-line error
        naming what it needs when the scene, as tiled, lacks them or has no known level."""
        scene = plan.scene
        level = require_level(
            processing_level(scene), scene.scene_id, f"--labels-from {self.peer.name}"
        )
        what = f"{scene.scene_id} (tiled bands {','.join(plan.bands)})"
        bands = self.peer.bands_for(plan.bands, level, what=what)
        problem = self.peer.out_of_domain(plan.resolution)
        if problem is not None:  # its labels would be stored as truth, with no warning
            raise InvalidSceneError(
                f"{scene.scene_id}: --labels-from {self.peer.name}: {problem}; tile at a "
                "finer --resolution or label it with a teacher made for such pixels"
            )
        return bands, level

    def begin_scene(self, job: SceneJob) -> SceneLabeller:
        bands, level = self.bands_for(job.plan)
        index = [job.plan.bands.index(b) for b in bands]
        # its shadow is checked against its clouds, as predict checks a model's
        codes = self.peer.codes
        check = LabelShadowCheck(job.plan, codes) if LabelShadowCheck.wanted(codes) else None
        return SceneLabeller(self.peer, job, bands, index, level, self.threads, check)


@dataclass
class SceneLabeller:
    """Labels of one scene's tile rows (``index``: the teacher's bands among the plan's)."""

    peer: Peer
    job: SceneJob
    bands: tuple[str, ...]
    index: list[int]
    level: str
    threads: int
    shadow_check: LabelShadowCheck | None = None

    def labels(self, row: int, bands: list[np.ndarray]) -> np.ndarray:
        """uint8 ``(rows, width)`` label codes of the tile row at ``row`` on the target grid,
        from each band's native DN rows (the plan's bands)."""
        plan, windows = self.job.plan, self.job.windows
        images, valid, *_ = kernels.cut_stripe(
            row,
            [bands[i] for i in self.index],
            [plan.factors[i] for i in self.index],
            plan.height,
            plan.width,
            windows.size,
            windows.overlap,
            [self.job.dn_shift[i] for i in self.index],
            threads=self.threads,
        )
        rows = windows.row_height(row)
        values = _stripe(images, windows.columns[row], plan.width)
        ok = _stripe(valid, windows.columns[row], plan.width)
        refl = ValueScale.of_store_convention(len(self.index)).reflectance_or_nan(values, ok)
        probs = self.peer.probabilities(
            refl[None, :, :rows], self.bands, self.level, resolution=plan.resolution
        )
        codes = self.peer.label_codes(probs)[0]
        codes[ok[0, :rows] == 0] = LABEL_NODATA
        if self.shadow_check is not None:
            self.shadow_check.add(row, codes, probs[0])
        return np.ascontiguousarray(codes)


def _stripe(windows: np.ndarray, columns: list[int], width: int) -> np.ndarray:
    """``(n, C, T, T)`` windows of a tile row at ``columns`` -> ``(C, T, width)``: where two
    overlap they hold the same pixels."""
    n, c, t, _ = windows.shape
    out = np.zeros((c, t, max(columns) + t), dtype=windows.dtype)
    for k, col in enumerate(columns):
        out[:, :, col : col + t] = windows[k]
    return out[:, :, :width]
