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

With ``--scl-labels`` on L2A products, Sen2Cor's scene classification votes first: its label
(clear, thick cloud, thin cirrus, cloud shadow) is kept where the teachers agree with it on
cloud or not, and none where any of them does not. The same rule, for the same reason: SCL
calls bright desert and snow cloud where ukis-csmask does not, ukis-csmask calls the Sahara's
bright sand cloud where SCL does not (docs/models.md). SCL's shadow is kept as Sen2Cor drew
it; the teachers' shadow is not checked, as none of it is stored.

The store records where the labels came from in each scene's ``label_kind``:
``teacher:NAME VERSION, LICENCE`` (several joined by `` + ``, after the SCL's own kind when it
votes). Labels from s2cloudless are CC BY-SA 4.0 like the model, and so is what is trained on
them.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        """The scene's labeller: the teachers', or the scene's own labels (its plan's label
        file: SCL) voting first with them."""
        needs = self.bands_for(job.plan)
        labellers = [
            SceneLabeller(
                peer, job, bands, [job.plan.bands.index(b) for b in bands], level, self.threads
            )  # fmt: skip
            for peer, (bands, level) in zip(self.peers, needs, strict=True)
        ]
        if job.plan.label is not None:
            return Vote([SclLabels(job), *labellers])  # SCL's shadow stays Sen2Cor's
        # the first teacher's shadow is checked against its clouds, as predict checks a model's
        codes = self.peers[0].codes
        if LabelShadowCheck.wanted(codes):
            labellers[0].shadow_check = LabelShadowCheck(job.plan, codes)
        return labellers[0] if len(labellers) == 1 else Vote(labellers)

    def kind_with(self, plan: GridPlan) -> str:
        """What the store records of a scene's labels: the scene's own kind first when they
        vote."""
        return self.kind if plan.label is None else f"{plan.label.kind} + {self.kind}"


class Labeller(Protocol):
    """One scene's labels, a tile row at a time: one teacher's, the scene's own, or several
    voting. ``native``: the scene's own label rows as the pipeline reads them (from
    ``kernels.band_window``'s first row), when its plan has a label file."""

    @property
    def name(self) -> str: ...

    @property
    def shadow_check(self) -> LabelShadowCheck | None: ...

    def labels(
        self, row: int, bands: list[np.ndarray], native: np.ndarray | None = None
    ) -> np.ndarray: ...

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

    @property
    def name(self) -> str:
        return self.peer.name

    def labels(
        self, row: int, bands: list[np.ndarray], native: np.ndarray | None = None
    ) -> np.ndarray:
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
class SclLabels:
    """The scene's SCL (its plan's label file, `tile --scl-labels`) on the target grid,
    nearest, as the Rust writer resamples labels; an SCL finer than the grid is refused when
    the scene is planned."""

    job: SceneJob
    shadow_check: LabelShadowCheck | None = None
    name: str = "scl"

    def labels(
        self, row: int, bands: list[np.ndarray], native: np.ndarray | None = None
    ) -> np.ndarray:
        plan = self.job.plan
        assert native is not None and plan.label_factor is not None, "the plan has a label file"
        return labels_on_grid(
            native, row, self.job.windows.row_height(row), plan.width, plan.label_factor
        )

    def report(self) -> dict:
        return {}


def labels_on_grid(native: np.ndarray, y0: int, rows: int, width: int, factor: int) -> np.ndarray:
    """Label codes of target rows ``[y0, y0 + rows)`` from native rows starting at
    ``band_window``'s first row, each target pixel the native pixel it lies in (``factor``: 1,
    or k > 1 target pixels per native one); 255 past the native raster."""
    if factor < -1 or factor == 0:
        raise ValueError(f"labels at factor {factor}: only the same grid or a coarser one")
    k = max(factor, 1)
    first, _ = kernels.band_window(y0, rows, k, y0 // k + native.shape[0])
    ys = np.arange(y0, y0 + rows) // k - first
    xs = np.arange(width) // k
    out = np.full((rows, width), LABEL_NODATA, np.uint8)
    inside_y, inside_x = ys < native.shape[0], xs < native.shape[1]
    out[np.ix_(inside_y, inside_x)] = native[np.ix_(ys[inside_y], xs[inside_x])]
    return out


@dataclass
class Vote:
    """Several teachers' labels of one scene: the first one's where all agree on cloud or
    not, unlabelled where they do not (module docstring)."""

    labellers: Sequence[Labeller]
    labelled: int = 0
    disputed: int = 0
    name: str = "vote"

    @property
    def shadow_check(self) -> LabelShadowCheck | None:
        return self.labellers[0].shadow_check

    def labels(
        self, row: int, bands: list[np.ndarray], native: np.ndarray | None = None
    ) -> np.ndarray:
        first, *others = (labeller.labels(row, bands, native) for labeller in self.labellers)
        codes, disputed = vote(first, others)
        self.labelled += int((codes != LABEL_NODATA).sum()) + int(disputed.sum())
        self.disputed += int(disputed.sum())
        return codes

    def report(self) -> dict:
        """The share of the scene's labelled pixels the teachers disputed (tile rows overlap,
        so their shared rows count twice: a share, not a pixel count)."""
        share = self.disputed / self.labelled if self.labelled else 0.0
        return {"teachers": [lab.name for lab in self.labellers], "disputed": share}


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
