"""A peer model as teacher: its classes become a tile store's labels (`tile --labels-from`).

The teacher sees what the tiler makes of a scene, one tile row at a time: the row's stripe of
store values on the target grid (cut by the tiler's own Rust kernel, `cut_stripe`, and its
windows laid side by side again), as reflectance with NaN where a band has no data. It runs
over the whole stripe with its own windows (ukis-csmask: 256 px, overlapping and blended), so
a tile's labels see the ground left and right of the tile; above and below, the stripe is
the tile row. Only that stripe is held, never the scene. The label codes come out on the
target grid (label factor 1), 255 where a band the teacher reads has no data, and go to the
store's writer with the row.

Several teachers, named ``A+B`` (``ukis-csmask+dl-l8s2-uv``), vote: each says cloud (thick
or thin) or not at every pixel. Where they all agree the first one's label is kept (its clear,
cloud or shadow); where they disagree the pixel is left unlabelled (255), so a model learns
neither teacher's mistake there and no metric counts it. The first teacher's shadow is checked
against its own clouds, as with one teacher. Rules that pick a winner were left out on
purpose: each teacher fails on other ground (ukis-csmask missed most clouds of the T19UDP
preview at 160 m, DL-L8S2-UV half of an overcast eo-learn scene at 10 m: docs/models.md), and
no label here says which is right where.

The store records where the labels came from in each scene's ``label_kind``:
``teacher:NAME VERSION, LICENCE`` (several joined by `` + ``). Labels from s2cloudless are
CC BY-SA 4.0 like the model, and so is what is trained on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cloudkit import kernels
from cloudkit.data.reflectance import ValueScale
from cloudkit.errors import InvalidSceneError, OptionError
from cloudkit.io.grid import GridPlan
from cloudkit.io.level import processing_level, require_level
from cloudkit.io.scene import LABEL_NODATA, LABEL_THICK_CLOUD, LABEL_THIN_CLOUD
from cloudkit.peers.registry import Peer, get_peer
from cloudkit.peers.teacher_shadows import LabelShadowCheck
from cloudkit.pipeline.writer import SceneJob


class Teacher:
    """The peer called ``name`` (or the peers ``A+B+...``, voting), labelling the scenes a
    tile store is written from."""

    def __init__(self, name: str, *, threads: int) -> None:
        names = name.split("+")
        if len(set(names)) != len(names):
            raise OptionError(f"--labels-from {name}: a teacher named twice")
        self.peers = [get_peer(n, option="--labels-from") for n in names]
        self.threads = threads
        #: what the store records of these labels
        self.kind = " + ".join(peer.label_kind() for peer in self.peers)

    def bands_for(self, plan: GridPlan) -> list[tuple[tuple[str, ...], str]]:
        """(bands each teacher reads of the planned scene, its level); a one-line error
        naming what one needs when the scene, as tiled, lacks it or has no known level."""
        scene = plan.scene
        what = f"{scene.scene_id} (tiled bands {','.join(plan.bands)})"
        found = processing_level(scene)
        needs = []
        for peer in self.peers:
            option = f"--labels-from {peer.name}"
            level = require_level(found, scene.scene_id, option)
            bands = peer.bands_for(plan.bands, level, what=what)
            problem = peer.out_of_domain(plan.resolution)
            if problem is not None:  # its labels would be stored as truth, with no warning
                raise InvalidSceneError(
                    f"{scene.scene_id}: {option}: {problem}; tile at a finer --resolution "
                    "or label it with a teacher made for such pixels"
                )
            needs.append((bands, level))
        return needs

    def begin_scene(self, job: SceneJob) -> Labeller:
        needs = self.bands_for(job.plan)
        labellers = [
            SceneLabeller(
                peer, job, bands, [job.plan.bands.index(b) for b in bands], level, self.threads
            )  # fmt: skip
            for peer, (bands, level) in zip(self.peers, needs, strict=True)
        ]
        # the first teacher's shadow is checked against its clouds, as predict checks a model's
        codes = self.peers[0].codes
        if LabelShadowCheck.wanted(codes):
            labellers[0].shadow_check = LabelShadowCheck(job.plan, codes)
        return labellers[0] if len(labellers) == 1 else Vote(labellers)


class Labeller(Protocol):
    """One scene's labels, a tile row at a time: one teacher's, or several voting."""

    @property
    def shadow_check(self) -> LabelShadowCheck | None: ...

    def labels(self, row: int, bands: list[np.ndarray]) -> np.ndarray: ...

    def report(self) -> dict: ...


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

    def report(self) -> dict:
        return {}


@dataclass
class Vote:
    """Several teachers' labels of one scene: the first one's where all agree on cloud or
    not, unlabelled where they do not (module docstring)."""

    labellers: list[SceneLabeller]
    labelled: int = 0
    disputed: int = 0

    @property
    def shadow_check(self) -> LabelShadowCheck | None:
        return self.labellers[0].shadow_check

    def labels(self, row: int, bands: list[np.ndarray]) -> np.ndarray:
        first, *others = (labeller.labels(row, bands) for labeller in self.labellers)
        codes, disputed = vote(first, others)
        self.labelled += int((codes != LABEL_NODATA).sum()) + int(disputed.sum())
        self.disputed += int(disputed.sum())
        return codes

    def report(self) -> dict:
        """The share of the scene's labelled pixels the teachers disputed (tile rows overlap,
        so their shared rows count twice: a share, not a pixel count)."""
        share = self.disputed / self.labelled if self.labelled else 0.0
        return {"teachers": [lab.peer.name for lab in self.labellers], "disputed": share}


_CLOUD = np.zeros(256, bool)
_CLOUD[[LABEL_THICK_CLOUD, LABEL_THIN_CLOUD]] = True


def vote(first: np.ndarray, others: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(``first``'s codes, 255 where another teacher disagrees on cloud or not or has no
    data; where they disagreed). Codes in cloudkit's label codes."""
    codes = first.copy()
    cloud = _CLOUD[first]
    missing = first == LABEL_NODATA
    disputed = np.zeros(first.shape, bool)
    for other in others:
        missing |= other == LABEL_NODATA
        disputed |= _CLOUD[other] != cloud
    disputed &= ~missing
    codes[missing | disputed] = LABEL_NODATA
    return codes, disputed


def _stripe(windows: np.ndarray, columns: list[int], width: int) -> np.ndarray:
    """``(n, C, T, T)`` windows of a tile row at ``columns`` -> ``(C, T, width)``: where two
    overlap they hold the same pixels."""
    n, c, t, _ = windows.shape
    out = np.zeros((c, t, max(columns) + t), dtype=windows.dtype)
    for k, col in enumerate(columns):
        out[:, :, col : col + t] = windows[k]
    return out[:, :, :width]
