"""The geometric shadow check: a cloud-shadow pixel stays only where a cloud casts it.

A cloud shadow is not a kind of surface but the place where a cloud stops the sun: it lies
``h * tan(sun zenith)`` from its cloud, away from the sun (`cloudkit.geometry.sun`). After a scene's
mask is complete, this module (after Fmask's object matching, Zhu & Woodcock 2012, and its
parallax correction, Frantz et al. 2018; our own code):

1. labels the cloud objects (8-connected) on a grid of at most ``MATCH_GRID`` pixels a side;
2. projects each object away from the sun for heights of 0.2 to 12 km and takes the height
   whose projection lands on the most shadow probability, counting only the pixels it lands
   on that are seen (in the data, not under a cloud); an object whose best projection
   averages less than ``MATCH_SCORE`` casts no shadow the model saw;
3. paints each matched object's projection over ``1 +- HEIGHT_SPREAD`` of its height (a cloud
   is thick, its shadow longer than its base's) and widens it by ``MARGIN_M`` for edges and
   the view angle's parallax left after correction;
4. keeps an unexplained shadow patch when, for some height, most of it could be cast from
   outside the scene or the swath (a cloud there is unseen, not absent);
5. gives every other shadow pixel the most likely of the other classes.

Without angles (no metadata, no time), the direction is estimated from the mask: the azimuth
whose projections match best, and the summary says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from scipy import ndimage

from cloudkit.geometry.sun import SunAngles

#: class names of cloud shadow and of cloud, as the models and peers name them
SHADOW_NAMES = ("cloud shadow", "shadow")
CLOUD_NAMES = ("cloud", "thick cloud", "thin cloud")
#: the heights (km) a cloud's shadow is searched over
MIN_HEIGHT_KM, MAX_HEIGHT_KM = 0.2, 12.0
#: without angles: the shadow distances (km, height x tan(zenith)) searched, and the azimuths
MIN_REACH_KM, MAX_REACH_KM = 0.1, 15.0
AZIMUTH_STEP = 5
#: the matching grid's longest side, in pixels (a full scene at 60 m)
MATCH_GRID = 2048
#: an object's best projection must average this shadow probability over its seen pixels...
MATCH_SCORE = 0.2
#: ...with at least this share of them seen
SEEN_SHARE = 0.25
#: the spread of heights painted around an object's matched one, and the margin after it
HEIGHT_SPREAD = 0.15
MARGIN_M = 300.0
#: a patch with no cloud to cast it stays when this share of it could be cast from outside,
#: by a cloud no higher than this quantile of the scene's matched clouds
EDGE_SHARE = 0.5
EDGE_QUANTILE = 0.75
#: pixels of an object (or shadow patch) the matching looks at, at most
SAMPLES = 400
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class CoarseMasks:
    """A mask on the matching grid: per pixel, the share of cloud, whether any pixel is
    shadow, the mean shadow probability and whether any pixel has data."""

    cloud: np.ndarray  # bool
    shadow: np.ndarray  # bool
    score: np.ndarray  # float32 0..1
    valid: np.ndarray  # bool
    resolution: float  # metres


@dataclass
class Decision:
    """Where shadow may stay, on the matching grid (``factor`` pixels of the mask a side)."""

    keep: np.ndarray  # bool: explained by a cloud, or castable from outside
    near_edge: np.ndarray  # bool: kept only for that
    factor: int
    report: dict = field(default_factory=dict)


def grid_factor(height: int, width: int) -> int:
    """The block edge of the matching grid for a mask of ``height`` x ``width``."""
    return max(1, math.ceil(max(height, width) / MATCH_GRID))


class CoarseAccumulator:
    """Sums a mask's rows into the matching grid as they stream past (a scene is never
    held whole)."""

    def __init__(self, height: int, width: int, resolution: float) -> None:
        self.factor = f = grid_factor(height, width)
        self.height, self.width, self.resolution = height, width, resolution
        shape = (-(-height // f), -(-width // f))
        self._cloud = np.zeros(shape, np.float32)
        self._shadow = np.zeros(shape, np.float32)
        self._score = np.zeros(shape, np.float32)
        self._valid = np.zeros(shape, np.float32)

    def add(
        self, row0: int, cloud: np.ndarray, shadow: np.ndarray, score: np.ndarray, valid: np.ndarray
    ) -> None:
        """Rows ``row0..`` of the mask: bool cloud, shadow, valid and float shadow probability."""
        rows = (row0 + np.arange(cloud.shape[0])) // self.factor
        for acc, values in (
            (self._cloud, cloud & valid),
            (self._shadow, shadow & valid),
            (self._score, np.where(valid, np.nan_to_num(score, nan=0.0), 0.0)),
            (self._valid, valid),
        ):
            np.add.at(acc, rows, self._column_sums(values))

    def _column_sums(self, values: np.ndarray) -> np.ndarray:
        f, wc = self.factor, self._valid.shape[1]
        values = values.astype(np.float32, copy=False)
        if wc * f != values.shape[1]:
            values = np.pad(values, ((0, 0), (0, wc * f - values.shape[1])))
        return values.reshape(values.shape[0], wc, f).sum(axis=2)

    def masks(self) -> CoarseMasks:
        count = np.maximum(self._valid, 1.0)
        return CoarseMasks(
            cloud=self._cloud / count >= 0.5,
            shadow=self._shadow > 0,
            score=(self._score / count).astype(np.float32),
            valid=self._valid > 0,
            resolution=self.resolution * self.factor,
        )


def decide(
    masks: CoarseMasks, sun: SunAngles | None, factor: int = 1, latitude: float | None = None
) -> Decision:
    """Where the mask's shadow is explained by its clouds (or may come from outside).
    ``latitude`` (degrees) narrows the directions tried when ``sun`` is None."""
    everywhere = np.ones(masks.shadow.shape, bool)
    nowhere = np.zeros(masks.shadow.shape, bool)
    if not masks.shadow.any():
        report: dict[str, Any] = {
            "sun": sun.as_dict() if sun else None,
            "note": "no shadow to check",
        }
        return Decision(everywhere, nowhere, factor, report)
    labels, n = ndimage.label(masks.cloud, structure=_EIGHT)
    if sun is not None:
        east, north = sun.shadow_offset()
        per_km = 1000.0 / masks.resolution
        step = (-north * per_km, east * per_km)  # (rows, columns) per km of height
        heights = _heights(MIN_HEIGHT_KM, MAX_HEIGHT_KM, step)
        geometry = {"sun": sun.as_dict()}
    else:
        step, heights, geometry = _estimate_direction(masks, labels, n, latitude)
    best, scores = _match(masks, labels, n, step, heights) if step is not None else (None, None)
    matched = np.flatnonzero(scores >= MATCH_SCORE) + 1 if scores is not None else np.array([], int)
    explained = _paint(masks, labels, matched, best, step, heights) if len(matched) else nowhere
    margin = max(1.0, MARGIN_M / masks.resolution)
    if explained.any():
        explained = ndimage.distance_transform_edt(~explained) <= margin
    # clouds beyond the edge are taken to be as high as most of the scene's own (a stray
    # match at the top of the range would let every shadow of a small scene stay)
    edge_top = (
        float(np.quantile(heights[best[matched - 1]], EDGE_QUANTILE)) * (1 + HEIGHT_SPREAD)
        if len(matched)
        else float(heights[-1])
        if heights is not None
        else MAX_HEIGHT_KM
    )
    loose = masks.shadow & ~explained
    near_edge = _castable_from_outside(masks, loose, step, heights, edge_top)
    report = {
        **geometry,
        "grid_m": round(masks.resolution, 3),
        "cloud_objects": int(n),
        "matched_objects": len(matched),
    }
    if len(matched) and heights is not None:
        h = heights[best[matched - 1]]
        unit = "km" if sun is not None else "km x tan(sun zenith)"
        report["cloud_height"] = {
            "unit": unit,
            "median": round(float(np.median(h)), 3),
            "min": round(float(h.min()), 3),
            "max": round(float(h.max()), 3),
        }
    return Decision(explained | near_edge, near_edge & ~explained, factor, report)


def _heights(low: float, high: float, step: tuple[float, float]) -> np.ndarray:
    """Heights from ``low`` to ``high`` km whose projections move by at most about a pixel
    (at most 300 of them)."""
    per_km = math.hypot(*step)
    count = int(min(300, max(2, math.ceil((high - low) * per_km) + 1)))
    return np.linspace(low, high, count)


def _samples(labels: np.ndarray, n: int, per_object: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat pixel index, label) of up to ``per_object`` random pixels of every object."""
    flat = np.flatnonzero(labels)
    lab = labels.ravel()[flat]
    order = np.random.default_rng(0).permutation(len(flat))
    flat, lab = flat[order], lab[order]
    order = np.argsort(lab, kind="stable")
    flat, lab = flat[order], lab[order]
    starts = np.searchsorted(lab, np.arange(1, n + 1))
    rank = np.arange(len(lab)) - starts[lab - 1]
    take = rank < per_object
    return flat[take], lab[take]


def _match(
    masks: CoarseMasks,
    labels: np.ndarray,
    n: int,
    step: tuple[float, float],
    heights: np.ndarray,
    per_object: int = SAMPLES,
) -> tuple[np.ndarray, np.ndarray]:
    """Per object (label 1..n): the index of its best height and that height's score (the
    mean shadow probability of the seen pixels its projection lands on; -1: never seen)."""
    flat, lab = _samples(labels, n, per_object)
    sums, seen = _project_scores(masks, flat, lab, n, step, heights)
    total = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(seen >= np.maximum(1.0, SEEN_SHARE * total), sums / seen, -1.0)
    best = np.argmax(mean, axis=0) if len(heights) else np.zeros(n, int)
    return best, mean[best, np.arange(n)] if n else np.zeros(0)


def _project_scores(masks, flat, lab, n, step, heights) -> tuple[np.ndarray, np.ndarray]:
    """(heights, n) sums of shadow probability and counts of seen landings per object."""
    h, w = masks.valid.shape
    seen_ground = (masks.valid & ~masks.cloud).ravel()
    score = masks.score.ravel()
    rows, cols = np.divmod(flat, w)
    sums = np.zeros((len(heights), n), np.float64)
    seen = np.zeros((len(heights), n), np.float64)
    for i, height in enumerate(heights):
        r = np.rint(rows + height * step[0]).astype(np.int64)
        c = np.rint(cols + height * step[1]).astype(np.int64)
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        target = r[inside] * w + c[inside]
        ok = seen_ground[target]
        hit, where = lab[inside][ok], target[ok]
        sums[i] = np.bincount(hit, weights=score[where], minlength=n + 1)[1:]
        seen[i] = np.bincount(hit, minlength=n + 1)[1:]
    return sums, seen


def _paint(masks, labels, matched, best, step, heights) -> np.ndarray:
    """Every pixel of the matched objects projected over their heights' spread."""
    h, w = labels.shape
    out = np.zeros(h * w, bool)
    height_of = np.zeros(labels.max() + 1)
    height_of[matched] = heights[best[matched - 1]]
    flat = np.flatnonzero(np.isin(labels, matched))
    rows, cols = np.divmod(flat, w)
    obj_height = height_of[labels.ravel()[flat]]
    span = 2 * HEIGHT_SPREAD * float(obj_height.max()) * math.hypot(*step)
    for k in np.linspace(-HEIGHT_SPREAD, HEIGHT_SPREAD, int(min(25, max(3, span + 1)))):
        d = obj_height * (1 + k)
        r = np.rint(rows + d * step[0]).astype(np.int64)
        c = np.rint(cols + d * step[1]).astype(np.int64)
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        out[r[inside] * w + c[inside]] = True
    return out.reshape(h, w)


def _castable_from_outside(masks, loose, step, heights, top) -> np.ndarray:
    """The patches of ``loose`` shadow that, at some height up to ``top``, lie mostly where a
    cloud outside the scene or the swath would cast them."""
    out = np.zeros(loose.shape, bool)
    if step is None or not loose.any():
        return out
    patches, n = ndimage.label(loose, structure=_EIGHT)
    flat, lab = _samples(patches, n, SAMPLES)
    h, w = loose.shape
    rows, cols = np.divmod(flat, w)
    total = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    castable = np.zeros(n, bool)
    valid = masks.valid.ravel()
    for height in heights[heights <= top]:
        r = np.rint(rows - height * step[0]).astype(np.int64)
        c = np.rint(cols - height * step[1]).astype(np.int64)
        unseen = ~((r >= 0) & (r < h) & (c >= 0) & (c < w))
        unseen[~unseen] = ~valid[r[~unseen] * w + c[~unseen]]
        share = np.bincount(lab[unseen], minlength=n + 1)[1:] / total
        castable |= share >= EDGE_SHARE
    return np.isin(patches, np.flatnonzero(castable) + 1)


def sun_azimuths(latitude: float | None) -> list[int]:
    """The sun azimuths (degrees) a Sentinel-2 scene at ``latitude`` may have. It passes in
    the late morning, so the sun stands east of or near the meridian: towards the equator
    outside the tropics, anywhere but the west inside them."""
    if latitude is None or not math.isfinite(latitude):
        return list(range(0, 360, AZIMUTH_STEP))
    if latitude > 23.5:
        low, high = 80, 200
    elif latitude < -23.5:
        low, high = -20, 100
    else:
        low, high = -20, 200
    return [a % 360 for a in range(low, high + 1, AZIMUTH_STEP)]


def _estimate_direction(masks: CoarseMasks, labels: np.ndarray, n: int, latitude=None):
    """(step per km of reach, reaches, report) of the azimuth whose projections match the
    mask's shadow best; (None, None, report) when the mask cannot tell (no cloud)."""
    report: dict = {"sun": {"source": "estimated"}}
    if n == 0:
        report["sun"]["note"] = "no cloud to estimate the shadow direction from"
        return None, None, report
    per_km = 1000.0 / masks.resolution
    reach = _heights(MIN_REACH_KM, MAX_REACH_KM, (per_km, 0.0))
    reach = reach[:: max(1, len(reach) // 120)]
    flat, lab = _samples(labels, n, 60)
    total = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    weight = np.sqrt(total)
    fits = []
    suns = sun_azimuths(latitude)
    for sun_azimuth in suns:
        a = math.radians(sun_azimuth + 180)
        step = (-math.cos(a) * per_km, math.sin(a) * per_km)
        sums, seen = _project_scores(masks, flat, lab, n, step, reach)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(seen >= np.maximum(1.0, SEEN_SHARE * total), sums / seen, 0.0)
        fits.append(float((mean.max(axis=0) * weight).sum() / weight.sum()))
    fits_arr = np.asarray(fits)
    best = int(np.argmax(fits_arr))
    a = math.radians(suns[best] + 180)
    report["sun"].update(
        {
            "azimuth": float(suns[best]),
            "zenith": None,
            "azimuths_tried": f"{suns[0]}-{suns[-1]}",
            "fit": round(float(fits_arr[best]), 4),
            "fit_median": round(float(np.median(fits_arr)), 4),
        }
    )
    step = (-math.cos(a) * per_km, math.sin(a) * per_km)
    return step, _heights(MIN_REACH_KM, MAX_REACH_KM, step), report


# --------------------------------------------------------------------------------------------
# applying a decision to mask rows


@dataclass
class ClassCodes:
    """Which class codes of a model's mask are shadow and cloud."""

    shadow: int | None
    cloud: tuple[int, ...]

    @classmethod
    def of(cls, classes) -> ClassCodes:
        names = [str(c).strip().lower() for c in classes]
        shadow = next((i for i, c in enumerate(names) if c in SHADOW_NAMES), None)
        return cls(shadow, tuple(i for i, c in enumerate(names) if c in CLOUD_NAMES))


def fallback_classes(
    probabilities: np.ndarray, shadow: int, rule: str = "argmax", cloud: tuple[int, ...] = ()
) -> np.ndarray:
    """(K, H, W) probabilities -> uint8 (H, W): the likeliest class other than ``shadow``,
    where a cloud class (``cloud``) needs its classes' summed probability above one half, as
    cloudkit's own rule decides cloud: a dark pixel a model was unsure of is no cloud for
    being unexplained shadow. ``rule`` "multi": cloudkit's 4-class rule, under which a pixel
    it called shadow was not cloud, so the other class is clear."""
    if rule == "multi":
        return np.zeros(probabilities.shape[1:], np.uint8)
    p = np.nan_to_num(probabilities, nan=0.0)
    others = p.copy()
    others[shadow] = -1.0
    choice = np.argmax(others, axis=0).astype(np.uint8)
    if cloud:
        doubtful = np.isin(choice, cloud) & (p[list(cloud)].sum(axis=0) <= 0.5)
        if doubtful.any():
            others[list(cloud)] = -1.0
            choice[doubtful] = np.argmax(others, axis=0).astype(np.uint8)[doubtful]
    return choice


def keep_rows(
    decision: Decision, row0: int, rows: int, width: int, col0: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(keep, near_edge) bool (rows, width) of the mask's block at ``row0``, ``col0``."""
    f = decision.factor
    r = (row0 + np.arange(rows)) // f
    c = (col0 + np.arange(width)) // f
    return decision.keep[np.ix_(r, c)], decision.near_edge[np.ix_(r, c)]


class Tally:
    """What the check did to a mask, counted as its rows are rewritten."""

    def __init__(self, classes) -> None:
        self.classes = tuple(classes)
        self.before = 0
        self.near_edge = 0
        self.to = np.zeros(len(self.classes), np.int64)

    def apply(
        self,
        decision: Decision,
        codes: ClassCodes,
        row0: int,
        classes: np.ndarray,
        fallback: np.ndarray,
        col0: int = 0,
        valid: np.ndarray | None = None,
    ) -> np.ndarray:
        """A block of the mask (rows from ``row0``, columns from ``col0``) with unexplained
        shadow given the fallback classes; pixels not ``valid`` are left as they are."""
        shadow = classes == codes.shadow
        if valid is not None:
            shadow &= valid
        if not shadow.any():
            return classes
        rows_cols = cast(tuple[int, int], classes.shape)  # a block of the mask: 2-D
        keep, edge = keep_rows(decision, row0, *rows_cols, col0=col0)
        gone = shadow & ~keep
        self.before += int(shadow.sum())
        self.near_edge += int((shadow & edge).sum())
        if gone.any():
            out = classes.copy()
            out[gone] = fallback[gone]
            self.to += np.bincount(out[gone], minlength=len(self.classes))[: len(self.classes)]
            return out
        return classes

    def report(self) -> dict:
        removed = int(self.to.sum())
        return {
            "shadow_pixels": self.before,
            "removed_pixels": removed,
            "removed_percent": round(100.0 * removed / self.before, 2) if self.before else 0.0,
            "kept_near_edge_pixels": self.near_edge,
            "removed_to": {
                name: int(n) for name, n in zip(self.classes, self.to, strict=True) if n
            },
            "why": "no cloud in the scene casts them (heights 0.2-12 km) and they cannot "
            "be cast from outside the scene or the swath",
        }


def check_shadows(
    classes: np.ndarray,
    probabilities: np.ndarray,
    class_names,
    *,
    resolution: float,
    sun: SunAngles | None,
    valid: np.ndarray | None = None,
    rule: str = "argmax",
    latitude: float | None = None,
) -> tuple[np.ndarray, dict]:
    """The check on a whole mask in memory: ``classes`` (H, W) codes, ``probabilities``
    (K, H, W) of ``class_names`` -> (checked codes, report). The streaming form is
    `cloudkit.predict.shadow_pass`."""
    codes = ClassCodes.of(class_names)
    if codes.shadow is None:
        return classes, {"method": "geometric", "note": "the model has no shadow class"}
    height, width = classes.shape
    if valid is None:
        valid = np.isfinite(probabilities).all(axis=0)
    acc = CoarseAccumulator(height, width, resolution)
    acc.add(
        0,
        np.isin(classes, codes.cloud),
        classes == codes.shadow,
        probabilities[codes.shadow],
        valid,
    )
    decision = decide(acc.masks(), sun, acc.factor, latitude)
    tally = Tally(class_names)
    fallback = fallback_classes(probabilities, codes.shadow, rule, codes.cloud)
    out = tally.apply(decision, codes, 0, classes, fallback, valid=valid)
    return out, {"method": "geometric", **decision.report, **tally.report()}
