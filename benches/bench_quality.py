"""The quality table: a cloudkit model beside trivial baselines and the peer models.

Two kinds of sets, all real Sentinel-2 pixels from ``../shared/data`` (see its README):

- **human labels** (CloudSEN12 patches, true colour only, L1C, 10 m): ``cloudsen12-hq`` (six
  densely labelled 509 px patches: two places, one of them snow) and ``cloudsen12-scribble``
  (ten sparsely labelled patches of two places). Scored: F1 and IoU of cloud (thick + thin),
  of cloud shadow, and the mean IoU of the four classes. These labels are never used to train.
- **algorithm references** on multispectral data, where the peers can run too: T29UNU (L2A,
  60 m, 11 bands) against Sen2Cor's SCL; the T19UDP preview (L1C, 160 m, 13 bands) and the
  s2cloudless 1.2.2 test arrays (L1C, 13 bands) against s2cloudless's own mask; the Sahara
  tile (L2A, 100 m, bright desert) against its SCL; three synthetic L1C products
  (`cloudkit.sample.synthetic`, 20 m) against their exact classes, shadows cast with the sun their
  metadata records. Scored: agreement (F1) on cloud, and on shadow (F1, precision) where the
  reference has a shadow class; everywhere, the share of pixels called shadow. A reference
  is an algorithm, not the truth.

Methods: the model (``--model``: a `cloudkit finetune` checkpoint or a shipped model name),
the all-clear and all-cloud masks, the best single-band brightness threshold (band and
threshold chosen on T29UNU's SCL, then applied unchanged everywhere), ukis-csmask,
s2cloudless and dl-l8s2-uv where their bands are present (``pip install 'cloudkit[peers]'``);
and, as an upper bound no real threshold reaches, the best threshold chosen on each scored
set itself (the oracle). The model and ukis-csmask are run with the geometric shadow check
(`cloudkit.geometry.shadows`, predict's default: each sample's sun from its metadata, computed from
its acquisition time, or estimated) and without it ("no shadow check").

    python benches/bench_quality.py [--model default] [--json out.json]

prints markdown tables (the README's quality table), the run's wall time and peak RSS (its
process's VmHWM: peak_memory.py), and writes every figure to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import hwm_mb  # noqa: E402

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
CLASSES = ("clear", "thick cloud", "thin cloud", "cloud shadow")
CLEAR, THICK, THIN, SHADOW, NODATA = 0, 1, 2, 3, 255
RGB = ("B02", "B03", "B04")
L1C = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
T29UNU_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12")


@dataclass
class Sample:
    """One image: reflectance (C, H, W) of ``bands`` (NaN = no data), labels in cloudkit
    codes (255 = unlabelled), its processing level and pixel size."""

    name: str
    refl: np.ndarray
    bands: tuple[str, ...]
    labels: np.ndarray
    level: str
    resolution: float | None  # metres; None where the source does not say
    #: the sun angles the shadow check uses (None: it estimates the direction) and the
    #: latitude that narrows that estimate (None: not georeferenced)
    sun: object = None
    latitude: float | None = None


@dataclass
class Scored:
    name: str
    kind: str  # "human" or "reference"
    reference: str
    samples: list[Sample] = field(default_factory=list)
    #: what of it the default model trained on (recipes/default_model.py); None: nothing
    trained_on: str | None = None


# --------------------------------------------------------------------------------------------
# the sets


def cloudsen12_reflectance(image: Path) -> np.ndarray:
    """A CloudSEN12 ``S2L1C.tif`` as reflectance (3, H, W) of B02 B03 B04, NaN where no data.
    The file holds B04, B03, B02 as float32 DN = reflectance x 10000 (no offset)."""
    with rasterio.open(image) as src:
        dn = src.read().astype(np.float32)
        nodata = src.nodata
    refl = dn[::-1] / 10000.0  # B04 B03 B02 -> B02 B03 B04
    refl[:, (dn <= -1e30).any(axis=0) if nodata is None else (dn == nodata).any(axis=0)] = np.nan
    return refl


def cloudsen12(kind: str) -> list[Sample]:
    """The CloudSEN12 patches with ``manual_hq`` (dense) or ``manual_sc`` (scribble) labels."""
    out = []
    root = DATA / "cloudsen12-figures"
    for label_path in sorted(root.glob(f"**/manual_{kind}.tif")):
        folder = label_path.parent
        refl = cloudsen12_reflectance(folder / "S2L1C.tif")
        with rasterio.open(label_path) as src:
            raw = src.read(1)
        labels = np.full(raw.shape, NODATA, np.uint8)
        # ROI_2507's scribbles: 1/2 thick (border/centre), 3/4 thin, 5/6 shadow
        mapping = (
            {0: CLEAR, 1: THICK, 2: THICK, 3: THIN, 4: THIN, 5: SHADOW, 6: SHADOW}
            if "ROI_2507" in str(folder)
            else {0: CLEAR, 1: THICK, 2: THIN, 3: SHADOW}
        )
        for code, target in mapping.items():
            labels[raw == code] = target
        name = str(folder.relative_to(root))
        # the patches carry no time: the check estimates the shadow direction
        latitude = _latitude(folder / "S2L1C.tif")
        out.append(Sample(name, refl, RGB, labels, "L1C", 10.0, latitude=latitude))
    return out


def _latitude(path: Path) -> float | None:
    from cloudkit.io.sun_metadata import scene_place

    with rasterio.open(path) as src:
        place = scene_place(src.crs, src.transform, src.height, src.width)
    return place[0] if place else None


def _computed_sun(path: Path, when: str):
    """The sun at ``path``'s centre at the UTC time ``when`` (a Sentinel-2 name's)."""
    from cloudkit.geometry.sun import SunAngles, solar_position
    from cloudkit.io.sun_metadata import scene_place, time_in_name

    with rasterio.open(path) as src:
        place = scene_place(src.crs, src.transform, src.height, src.width)
    azimuth, zenith = solar_position(time_in_name(when), *place)
    return SunAngles(azimuth, zenith, f"computed for {when}"), place[0]


def _scl_codes(scl: np.ndarray) -> np.ndarray:
    lut = np.full(256, NODATA, np.uint8)
    lut[[2, 4, 5, 6, 7, 11]] = CLEAR
    lut[[8, 9]] = THICK
    lut[10] = THIN
    lut[3] = SHADOW
    return lut[scl]


def t29unu() -> list[Sample]:
    (safe,) = (DATA / "safe").glob("*_T29UNU_*.SAFE")
    (folder,) = safe.glob("GRANULE/*/IMG_DATA/R60m")
    dn = np.stack([_read(next(folder.glob(f"*_{b}_60m.jp2"))) for b in T29UNU_BANDS])
    refl = (dn.astype(np.float32) - 1000.0) / 10000.0  # baseline 04.00: BOA_ADD_OFFSET -1000
    refl[:, (dn == 0).any(axis=0)] = np.nan
    labels = _scl_codes(_read(next(folder.glob("*_SCL_60m.jp2"))))
    from cloudkit.io.sun_metadata import safe_angles

    latitude = _latitude(next(folder.glob("*_B02_60m.jp2")))
    sample = Sample("T29UNU", refl, T29UNU_BANDS, labels, "L2A", 60.0, safe_angles(safe), latitude)
    return [sample]


def t19udp() -> list[Sample]:
    dn = _read(DATA / "derived" / "S2A_MSIL1C_20170729_T19UDP_preview_13band.tif", band=None)
    refl = dn.astype(np.float32) / 10000.0  # baseline 02.05: no offset
    refl[:, (dn == 0).any(axis=0)] = np.nan
    mask = np.load(DATA / "derived" / "T19UDP_preview_s2cloudless_mask_thr0.4.npz")
    cloud = mask[mask.files[0]].astype(bool)
    labels = np.where(cloud, THICK, CLEAR).astype(np.uint8)
    labels[np.isnan(refl).any(axis=0)] = NODATA
    sun, latitude = _computed_sun(
        DATA / "derived" / "S2A_MSIL1C_20170729_T19UDP_preview_13band.tif",
        "S2A_MSIL1C_20170729T153601_N0205_R111_T19UDP",
    )
    return [Sample("T19UDP preview", refl, L1C, labels, "L1C", 160.0, sun, latitude)]


def s2cloudless_arrays() -> list[Sample]:
    arrays = np.load(DATA / "s2cloudless-1.2.2" / "input_arrays.npz")
    refl = np.moveaxis(arrays["s2_im"][0], -1, 0).astype(np.float32)
    labels = np.where(arrays["cl_mask"][0] > 0, THICK, CLEAR).astype(np.uint8)
    return [Sample("s2cloudless arrays", refl, L1C, labels, "L1C", None)]


def sahara() -> list[Sample]:
    folder = DATA / "cogs-l2a" / "S2A_29RKH_20200219_0_L2A"
    bands = tuple(b for b in L1C if b != "B10")
    shape = (1098, 1098)  # the 100 m grid of B02
    dn = np.stack([_read(folder / f"{b}.tif", shape=shape) for b in bands])
    refl = dn.astype(np.float32) / 10000.0  # baseline 02.14: no offset
    refl[:, (dn == 0).any(axis=0)] = np.nan
    labels = _scl_codes(_read(folder / "SCL.tif", shape=shape))
    from cloudkit.io.datasets import read_band_folder

    sun = read_band_folder(folder).sun  # the STAC item's
    latitude = _latitude(folder / "B02.tif")
    return [Sample("Sahara 29RKH", refl, bands, labels, "L2A", 100.0, sun, latitude)]


def synthetic() -> list[Sample]:
    """Three synthetic L1C products (cloudkit.sample.synthetic) at 20 m with their exact classes; the
    sun their shadows were cast with is in each product's MTD_TL.xml. Made in a temporary
    folder from fixed seeds."""
    import tempfile

    from cloudkit.io.safe import read_safe
    from cloudkit.sample.synthetic import write_l1c_safe

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (11, 12, 13):
            folder = Path(tmp) / str(seed)  # the products share a name: one folder each
            product = write_l1c_safe(folder, size_10m=1152, seed=seed, labels=folder)
            folder = next(product.path.glob("GRANULE/*/IMG_DATA"))
            dn = np.stack(
                [
                    _read(next(folder.glob(f"*_{b}.jp2")), shape=(576, 576), average=True)
                    for b in L1C
                ]
            ).astype(np.float32)
            refl = (dn - 1000.0) / 10000.0  # baseline 04.00
            refl[:, (dn == 0).any(axis=0)] = np.nan
            labels = _read(product.labels, shape=(576, 576))
            sun = read_safe(product.path).sun
            latitude = _latitude(next(folder.glob("*_B02.jp2")))
            out.append(Sample(f"synthetic {seed}", refl, L1C, labels, "L1C", 20.0, sun, latitude))
    return out


def scored_sets() -> list[Scored]:
    ukis = "its image, with ukis-csmask's classes as labels"
    scl = "its image, with these SCL labels"
    return [
        Scored("CloudSEN12 dense (6 patches)", "human", "human", cloudsen12("hq")),
        Scored("CloudSEN12 scribbles (10 patches)", "human", "human", cloudsen12("sc")),
        Scored("T29UNU L2A 60 m", "reference", "Sen2Cor SCL", t29unu(), scl),
        Scored("T19UDP L1C 160 m", "reference", "s2cloudless", t19udp(), ukis),
        Scored("s2cloudless test arrays L1C", "reference", "s2cloudless", s2cloudless_arrays()),
        Scored("Sahara L2A 100 m", "reference", "Sen2Cor SCL", sahara(), scl),
        Scored("synthetic L1C 20 m (3 products)", "reference", "exact classes", synthetic()),
    ]


def _read(
    path: Path, band: int | None = 1, shape: tuple[int, int] | None = None, average: bool = False
) -> np.ndarray:
    with rasterio.open(path) as src:
        if shape is None:
            return src.read(band)
        how = Resampling.average if average and src.height > shape[0] else Resampling.nearest
        return src.read(band, out_shape=shape, resampling=how)


# --------------------------------------------------------------------------------------------
# the methods: each maps a sample to cloudkit codes, or None where it cannot run

Method = Callable[[Sample], "np.ndarray | None"]


def all_clear(sample: Sample) -> np.ndarray:
    return np.zeros(sample.labels.shape, np.uint8)


def all_cloud(sample: Sample) -> np.ndarray:
    return np.full(sample.labels.shape, THICK, np.uint8)


def fit_threshold(samples: Sequence[Sample]) -> tuple[str, float]:
    """The visible band and threshold whose ``band > threshold`` best matches the samples'
    cloud labels (F1)."""
    best = ("B02", 0.0, -1.0)
    for band in RGB:
        values, cloud = [], []
        for s in samples:
            keep = (s.labels != NODATA) & np.isfinite(s.refl).all(axis=0)
            values.append(s.refl[s.bands.index(band)][keep])
            cloud.append(np.isin(s.labels[keep], (THICK, THIN)))
        v, c = np.concatenate(values), np.concatenate(cloud)
        for t in np.arange(0.05, 0.6, 0.01):
            f1 = _f1(v > t, c)
            if f1 > best[2]:
                best = (band, float(t), f1)
    return best[0], best[1]


def threshold_method(band: str, threshold: float) -> Method:
    def run(sample: Sample) -> np.ndarray | None:
        if band not in sample.bands:
            return None
        return np.where(sample.refl[sample.bands.index(band)] > threshold, THICK, CLEAR).astype(
            np.uint8
        )

    return run


def model_method(
    model: str,
    device: str,
    coarsen: Callable[[np.ndarray, int], np.ndarray] | None = None,
    *,
    shadows: str = "geometric",
) -> tuple[Method, str]:
    """A cloudkit model run as `cloudkit predict` runs it: store values of the sample's bands,
    area-averaged to the model's pixel size when the sample is finer (as predict reads finer
    products with ``--decode full``; ``coarsen`` does it otherwise), the predictor's
    conversion, its probabilities, the shadow check (``shadows`` "geometric", as predict's
    default; "model": none); the classes brought back to the labels' grid by nearest
    neighbour."""
    import torch

    from cloudkit.models.zoo import load_predictor
    from cloudkit.predict.writer import mask_classes

    predictor = load_predictor(model, device=device)
    info = predictor.info

    def run(sample: Sample) -> np.ndarray | None:
        bands = _model_bands(predictor, sample)
        if bands is None:
            return None
        refl = sample.refl[[sample.bands.index(b) for b in bands]]
        factor = _coarsening(sample.resolution, info.resolution)
        if factor > 1:
            refl = (coarsen or _block_mean)(refl, factor)
        valid = np.isfinite(refl).all(axis=0)
        values = np.clip(np.round(np.nan_to_num(refl) * 10000.0) + 1000.0, 1, 65535)
        values = np.where(valid, values, 0).astype(np.uint16)
        with torch.inference_mode():
            x = predictor.inputs(values[None], valid[None, None].astype(np.uint8), bands)
            probs = predictor.probabilities(x)[0]
        if info.binary:
            codes = np.where(probs[0] > info.threshold, THICK, CLEAR).astype(np.uint8)
        else:
            classes = mask_classes(info.task, probs)
            if shadows == "geometric":
                classes = _checked(
                    sample, classes, probs, valid, info.classes, factor, info.task, who="cloudkit"
                )
            codes = _task_codes(info.task)[classes]
        if factor > 1:
            codes = _nearest_up(codes, factor, sample.labels.shape)
        return codes

    path = Path(model)
    return run, f"{path.parent.name}/{path.name}" if path.is_file() else model


def _checked(
    sample, classes, probs, valid, names, factor=1, task="argmax", *, who: str
) -> np.ndarray:
    """``classes`` after the geometric shadow check, with the sample's sun and place."""
    from cloudkit.geometry.shadows import check_shadows

    probs = np.where(valid, probs, np.nan)
    out, report = check_shadows(
        classes,
        probs,
        names,
        resolution=(sample.resolution or 10.0) * factor,
        sun=sample.sun,
        valid=valid,
        rule="multi" if task == "multi" else "argmax",
        latitude=sample.latitude,
    )
    SHADOW_REPORTS.setdefault(sample.name, {})[who] = report
    return out


#: what the check did, per sample and method
SHADOW_REPORTS: dict[str, dict[str, dict]] = {}


def _coarsening(sample: float | None, model: float | None) -> int:
    """The integer factor predict would area-average a sample by (1: read as it is)."""
    if sample is None or model is None or model <= sample:
        return 1
    return max(1, round(model / sample))


def _block_mean(refl: np.ndarray, k: int) -> np.ndarray:
    """(C, H, W) -> (C, ceil(H/k), ceil(W/k)): the mean of each block's valid pixels (NaN
    where it has none), edge blocks included."""
    c, h, w = refl.shape
    hp, wp = -(-h // k) * k, -(-w // k) * k
    padded = np.full((c, hp, wp), np.nan, np.float32)
    padded[:, :h, :w] = refl
    blocks = padded.reshape(c, hp // k, k, wp // k, k)
    count = np.isfinite(blocks).sum(axis=(2, 4))
    total = np.nansum(blocks, axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).astype(np.float32)


def _nearest_up(codes: np.ndarray, k: int, shape: tuple[int, int]) -> np.ndarray:
    return np.repeat(np.repeat(codes, k, axis=0), k, axis=1)[: shape[0], : shape[1]]


def _model_bands(predictor, sample: Sample) -> tuple[str, ...] | None:
    from cloudkit.errors import BandMismatchError
    from cloudkit.models.band_slots import SLOTS, check_any_band_input

    info = predictor.info
    if info.any_bands:
        chosen = tuple(b for b in SLOTS if b in sample.bands)
        try:
            check_any_band_input(chosen, what=sample.name)
        except BandMismatchError:
            return None
        return chosen
    return info.bands if set(info.bands) <= set(sample.bands) else None


def _task_codes(task: str) -> np.ndarray:
    """Class index of a task -> cloudkit code (cloud: clear/cloud; multi: the four codes)."""
    return {
        "multi": np.array([CLEAR, THICK, THIN, SHADOW], np.uint8),
        "cloud": np.array([CLEAR, THICK], np.uint8),
        "shadow": np.array([CLEAR, SHADOW], np.uint8),
        "joint": np.array([CLEAR, THICK], np.uint8),
    }[task]


def peer_method(name: str, *, shadows: str = "geometric") -> Method | None:
    """A peer on the sample's reflectance; ``shadows`` as for :func:`model_method`."""
    from cloudkit.errors import BandMismatchError
    from cloudkit.peers.registry import PEERS

    peer = PEERS[name]()
    if not peer.installed():
        return None

    def run(sample: Sample) -> np.ndarray | None:
        try:
            bands = peer.bands_for(sample.bands, sample.level)
        except BandMismatchError:
            return None
        idx = [sample.bands.index(b) for b in bands]
        probs = peer.probabilities(
            sample.refl[idx][None], bands, sample.level, resolution=sample.resolution
        )[0]
        classes = probs.argmax(axis=0).astype(np.uint8)
        if shadows == "geometric" and any("shadow" in c for c in peer.card.classes):
            valid = np.isfinite(sample.refl[idx]).all(axis=0)
            classes = _checked(sample, classes, probs, valid, peer.card.classes, who=name)
        return np.asarray(peer.codes, np.uint8)[classes]

    return run


# --------------------------------------------------------------------------------------------
# scores


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = float(np.sum(pred & truth))
    den = float(np.sum(pred) + np.sum(truth))
    return 2 * tp / den if den else 0.0


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = float(np.sum(pred | truth))
    return float(np.sum(pred & truth)) / union if union else 0.0


def score(scored: Scored, method: Method) -> dict | None:
    preds, truths = [], []
    for sample in scored.samples:
        pred = method(sample)
        if pred is None:
            return None
        keep = (sample.labels != NODATA) & np.isfinite(sample.refl).all(axis=0)
        preds.append(pred[keep])
        truths.append(sample.labels[keep])
    pred, truth = np.concatenate(preds), np.concatenate(truths)
    cloud_p, cloud_t = np.isin(pred, (THICK, THIN)), np.isin(truth, (THICK, THIN))
    out = {
        "pixels": int(truth.size),
        "cloud_f1": _f1(cloud_p, cloud_t),
        "cloud_iou": _iou(cloud_p, cloud_t),
        # share of the scored pixels called shadow: where the reference has no shadow class,
        # all of it is shadow no one vouches for
        "shadow_share": float(np.mean(pred == SHADOW)),
    }
    if (truth == SHADOW).any():
        out["shadow_f1"] = _f1(pred == SHADOW, truth == SHADOW)
        out["shadow_iou"] = _iou(pred == SHADOW, truth == SHADOW)
        called = float(np.sum(pred == SHADOW))
        out["shadow_precision"] = (
            float(np.sum((pred == SHADOW) & (truth == SHADOW))) / called if called else 0.0
        )
    if scored.kind == "human":
        ious = [_iou(pred == c, truth == c) for c in (CLEAR, THICK, THIN, SHADOW)]
        out["class_iou"] = dict(zip(CLASSES, ious, strict=True))
        out["mean_iou"] = float(np.mean(ious))
    return out


def markdown(results: dict, sets: list[Scored], methods: list[str]) -> str:
    lines = []
    for scored in sets:
        row = results[scored.name]
        head = f"**{scored.name}** (vs {scored.reference})"
        if scored.trained_on:
            head += f"; the default model trained on {scored.trained_on}"
        cols = ["cloud F1", "cloud IoU", "shadow F1", "shadow IoU", "shadow precision"]
        keys = ["cloud_f1", "cloud_iou", "shadow_f1", "shadow_iou", "shadow_precision"]
        cols.append("called shadow")
        keys.append("shadow_share")
        if scored.kind == "human":
            cols.append("mean IoU (4 classes)")
            keys.append("mean_iou")
        lines += [head, "", "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for name in methods:
            figures = row.get(name)
            if figures is None:
                continue
            cells = [
                (f"{100 * figures[k]:.1f} %" if k == "shadow_share" else f"{figures[k]:.3f}")
                if k in figures
                else "–"
                for k in keys
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="checkpoint or shipped model name")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--no-peers", action="store_true", help="skip ukis-csmask, s2cloudless, dl-l8s2-uv"
    )
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"the real samples are not at {DATA}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    sets = scored_sets()
    t29 = next(s for s in sets if s.name.startswith("T29UNU"))
    band, threshold = fit_threshold(t29.samples)
    run_model, model_name = model_method(args.model, args.device)
    run_raw, _ = model_method(args.model, args.device, shadows="model")
    methods: dict[str, Method] = {
        f"cloudkit ({model_name})": run_model,
        f"cloudkit ({model_name}), no shadow check": run_raw,
        f"brightness {band} > {threshold:.2f}": threshold_method(band, threshold),
        "all clear": all_clear,
        "all cloud": all_cloud,
    }
    if not args.no_peers:
        for peer in ("ukis-csmask", "s2cloudless", "dl-l8s2-uv"):
            method = peer_method(peer)
            if method is not None:
                methods[peer] = method
            raw = peer_method(peer, shadows="model") if peer == "ukis-csmask" else None
            if raw is not None:  # the others have no shadow class: nothing to check
                methods[f"{peer}, no shadow check"] = raw
    # an upper bound for any one-band threshold: the best on the scored set itself
    oracle_name = "brightness, best on this set (oracle)"
    results: dict[str, dict] = {}
    oracles = []
    for scored in sets:
        results[scored.name] = {}
        oracle = fit_threshold(scored.samples)
        oracles.append(f"{scored.name}: {oracle[0]} > {oracle[1]:.2f}")
        for name, method in {**methods, oracle_name: threshold_method(*oracle)}.items():
            figures = score(scored, method)
            if figures is not None:
                results[scored.name][name] = figures
    print(markdown(results, sets, [*methods, oracle_name]))
    print(
        f"threshold chosen on T29UNU's SCL: {band} > {threshold:.2f}; oracles: "
        + "; ".join(oracles)
    )
    print(f"({time.perf_counter() - started:.0f} s, peak RSS {hwm_mb():.0f} MB)")
    for name, reports in SHADOW_REPORTS.items():
        for who, report in reports.items():
            if not report.get("shadow_pixels"):
                continue
            sun = report.get("sun") or {}
            print(
                f"shadow check, {who} on {name}: sun {sun.get('source')} azimuth "
                f"{sun.get('azimuth')}, removed {report['removed_percent']:.1f} % of "
                f"{report['shadow_pixels']} shadow pixels"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"model": args.model, "results": results, "shadow_check": SHADOW_REPORTS},
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
