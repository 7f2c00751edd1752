"""Peer cloud maskers run on cloudkit's own inputs: ukis-csmask, s2cloudless, dl-l8s2-uv.

Both ship their trained models inside their PyPI wheels and run offline (``pip install
'cloudkit[peers]'``). cloudkit hands them reflectance it prepared itself (each product's own
offsets applied, no-data known), so they are scored (`eval/peer.py`), used as teachers
(`teacher.py`) and run over whole scenes (`predictor.py`) exactly like a cloudkit model.

- ``ukis-csmask`` 1.0.0, Apache-2.0, DLR: U-Nets (EfficientNet-B4) for 4 bands (B02 B03 B04
  B08) or 6 (+ B11 B12), one pair for L1C and one for L2A; classes clear, cloud, cloud shadow;
  256 px windows; made for about 30 m.
- ``s2cloudless`` 1.7.3, CC BY-SA 4.0, Sinergise: a LightGBM pixel classifier of cloud
  probability from ten L1C bands (B01 B02 B04 B05 B08 B8A B09 B10 B11 B12); no shadow class.
  Its output, and so labels and weights made from it, carry its share-alike licence.
- ``dl-l8s2-uv`` (commit 05c91ab), MIT, Universidad de Valencia: two small Keras U-Nets
  trained on the human-labelled Landsat-8 Biome set, B02 B03 B04 B08 (+ B11 B12), L1C; cloud
  probability, no shadow; rebuilt in torch from their HDF5 files read in place
  (`dl_l8s2_uv.py`; h5py, no TensorFlow); made for 30 m.

A peer answers in cloudkit's label codes: :meth:`Peer.probabilities` returns one channel per
entry of :attr:`Peer.codes` (for ukis-csmask clear, thick cloud, cloud shadow: it has no thin
cloud class; for s2cloudless clear and cloud), and :meth:`Peer.label_codes` turns them into
codes by the peer's own rule.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from cloudkit.errors import BandMismatchError, MissingDependencyError, OptionError
from cloudkit.io.level import L1C, LEVELS
from cloudkit.io.scene import (
    LABEL_CLASSES,
    LABEL_CLEAR,
    LABEL_CLOUD_SHADOW,
    LABEL_THICK_CLOUD,
    LABEL_THIN_CLOUD,
)
from cloudkit.models.card import ModelCard, Score
from cloudkit.peers import dl_l8s2_uv
from cloudkit.predict.blend import blend_weights, window_origins

EXTRA = "pip install 'cloudkit[peers]'"
#: how much coarser than a peer was made for its pixels may be before its classes are
#: unreliable (the rule of predict/writer.py's COARSEST for the default model)
COARSEST = 8
# what the cards' scores were measured on (`cloudkit evaluate --reference PEER`): real scenes
# of ../shared/data, with other algorithms' masks as labels, not human ones
_T29UNU = "T29UNU (L2A) at 60 m, 2.0 M pixels"
_T19UDP = "the T19UDP (L1C) preview at 160 m, 0.35 M pixels"


class Peer:
    """A peer model: pick its bands for a product, then probabilities of reflectance windows."""

    name: str
    #: import name and distribution name of its package
    package: str
    distribution: str
    card: ModelCard
    #: cloudkit label code of each output channel
    codes: tuple[int, ...]
    #: label codes the peer does not tell apart from one it predicts: what it calls them
    calls: dict[int, int]
    #: window edge and overlap to run it on: what it was made for
    window: int
    overlap: int
    #: a two-class peer's rule: its positive class where the probability exceeds this
    threshold: float = 0.5
    #: the pixel size in metres it must be read at least as coarse as (predict); None: any
    works_at: float | None = None
    #: the pixel size in metres it was made for (its card's); pixels far coarser are outside
    #: what it knows (:meth:`out_of_domain`)
    made_for: float | None = None

    @classmethod
    def installed(cls) -> bool:
        return importlib.util.find_spec(cls.package) is not None

    @classmethod
    def require(cls) -> None:
        if not cls.installed():
            raise MissingDependencyError(
                f"the peer model {cls.name} needs the package {cls.distribution}, which is not "
                f"installed; {EXTRA}"
            )

    @classmethod
    def version(cls) -> str:
        """The installed version (the card's when it is not installed)."""
        try:
            return importlib.metadata.version(cls.distribution)
        except importlib.metadata.PackageNotFoundError:
            return cls.card.version

    @classmethod
    def label_kind(cls) -> str:
        """What a tile store records of labels this peer made: name, version, licence."""
        return f"teacher:{cls.name} {cls.version()}, {cls.card.licence}"

    def bands_for(
        self, available: Sequence[str], level: str, *, what: str = "the product"
    ) -> tuple[str, ...]:
        """The bands this peer reads of ``available`` (``what``: whose bands, for the
        message); raises :class:`BandMismatchError` naming what it needs when they are too
        few."""
        raise NotImplementedError

    def probabilities(
        self,
        refl: np.ndarray,
        bands: Sequence[str],
        level: str,
        *,
        resolution: float | None = None,
    ) -> np.ndarray:
        """``(N, len(bands), H, W)`` float32 reflectance (NaN where no data) -> float32
        ``(N, len(codes), H, W)`` probabilities. ``resolution``: the pixel size in metres
        where known (a peer made for another may resample)."""
        raise NotImplementedError

    def label_codes(self, probabilities: np.ndarray) -> np.ndarray:
        """``(N, len(codes), H, W)`` probabilities -> ``(N, H, W)`` uint8 label codes: the
        most probable class."""
        codes = np.asarray(self.codes, dtype=np.uint8)
        return codes[np.argmax(probabilities, axis=1)]

    @classmethod
    def out_of_domain(cls, resolution: float) -> str | None:
        """Why its classes are unreliable on pixels of ``resolution`` metres, or None: more
        than :data:`COARSEST` times coarser than it was made for (the default model's rule)."""
        if cls.made_for is None or not resolution > COARSEST * cls.made_for:
            return None
        return (
            f"read at {resolution:g} m, more than {COARSEST}x coarser than the "
            f"{cls.made_for:g} m {cls.name} was made for: its classes are unreliable there"
        )

    def check_task(self, task) -> None:
        """CloudkitError unless the peer tells apart every class of ``task`` (a
        `data.tasks.Task`): each code it does not predict must fall in the class of the code
        it calls it."""
        for code, called in self.calls.items():
            if task.lut[code] != task.lut[called]:
                from cloudkit.data.tasks import TASKS

                fits = [t.name for t in TASKS.values() if self._tells(t)]
                raise OptionError(
                    f"{self.name} cannot be scored on --task {task.name}: it calls "
                    f"{LABEL_CLASSES[code]} {LABEL_CLASSES[called]}; its tasks: {', '.join(fits)}"
                )

    def _tells(self, task) -> bool:
        return all(task.lut[code] == task.lut[called] for code, called in self.calls.items())


def _level(level: str) -> str:
    name = str(level).upper()
    if name not in LEVELS:
        raise BandMismatchError(f"processing level {level!r}: expected one of {', '.join(LEVELS)}")
    return name


class UkisCsmask(Peer):
    name = "ukis-csmask"
    package = "ukis_csmask"
    distribution = "ukis-csmask"
    card = ModelCard(
        name="ukis-csmask",
        version="1.0.0",
        bands="B02 B03 B04 B08 (B8A stands in), + B11 B12 for its 6-band model; L1C or L2A "
        "(one network each)",
        classes=("clear", "cloud", "cloud shadow"),
        resolution="made for about 30 m; 256 px windows",
        training_data="SPARCS, CloudSEN12+ and custom samples (Landsat and Sentinel-2), with "
        "an L2A image made for each L1C sample",
        licence="Apache-2.0",
        source="DLR, github.com/dlr-eoc/ukis-csmask (ONNX U-Nets, EfficientNet-B4 encoders); "
        "Wieland et al. 2019, RSE 230",
        install=f"{EXTRA} (or pip install 'ukis-csmask[cpu]==1.0.0')",
        scores=(
            Score("cloud F1 against Sen2Cor's SCL", 0.945, _T29UNU),
            Score("shadow F1 against Sen2Cor's SCL", 0.702, _T29UNU),
            Score("cloud F1 against s2cloudless", 0.514, _T19UDP),
        ),
    )
    codes = (LABEL_CLEAR, LABEL_THICK_CLOUD, LABEL_CLOUD_SHADOW)
    calls = {LABEL_THIN_CLOUD: LABEL_THICK_CLOUD}
    made_for = 30.0  # its card: about 30 m
    # its ONNX graphs take exactly 256 x 256; its own tiling overlaps windows by 20 %
    window = 256
    overlap = 32
    FOUR = ("B02", "B03", "B04", "B08")
    SIX = ("B02", "B03", "B04", "B08", "B11", "B12")

    def bands_for(
        self, available: Sequence[str], level: str, *, what: str = "the product"
    ) -> tuple[str, ...]:
        have = set(available)
        if "B08" not in have and "B8A" in have:
            # L2A at 60 m has no B08; B8A (865 nm) is the narrow twin of B08 (833 nm)
            have.add("B08")
        chosen: tuple[str, ...] = (
            self.SIX if set(self.SIX) <= have else self.FOUR if set(self.FOUR) <= have else ()
        )
        if not chosen:
            lacking = [b for b in self.FOUR if b not in have]
            raise BandMismatchError(
                f"ukis-csmask needs at least {','.join(self.FOUR)} (B8A may stand in for B08) "
                f"but {what} lacks {','.join(lacking)}"
            )
        if "B08" not in available:
            chosen = tuple("B8A" if b == "B08" else b for b in chosen)
        return chosen

    @cached_property
    def _sessions(self) -> dict[tuple[int, str], tuple[object, np.ndarray, np.ndarray]]:
        return {}

    def _session(self, nbands: int, level: str):
        key = (nbands, level)
        if key not in self._sessions:
            self.require()
            import onnxruntime
            import ukis_csmask

            folder = Path(ukis_csmask.__file__).parent
            stem = folder / f"model_{nbands}b_{level.lower()}"
            stats = json.loads(stem.with_suffix(".json").read_text())["data"]["dataset_statistics"]
            mean = np.asarray(stats["img"][0], np.float32)[None, :, None, None]
            std = np.asarray(stats["img"][1], np.float32)[None, :, None, None]
            session = onnxruntime.InferenceSession(
                str(stem.with_suffix(".onnx")),
                sess_options=onnxruntime.SessionOptions(),
                providers=["CPUExecutionProvider"],
            )
            self._sessions[key] = (session, mean, std)
        return self._sessions[key]

    def probabilities(
        self,
        refl: np.ndarray,
        bands: Sequence[str],
        level: str,
        *,
        resolution: float | None = None,
    ) -> np.ndarray:

        level = _level(level)
        session, mean, std = self._session(len(bands), level)
        n, _, h, w = refl.shape
        size = self.window
        x = np.nan_to_num(refl.astype(np.float32), nan=0.0)
        x = (np.clip(x, 0.0, 1.0) - mean) / std
        # smaller than its window: padded; larger: overlapping windows, blended as predict does
        ph, pw = max(0, size - h), max(0, size - w)
        if ph or pw:
            mode: Literal["reflect", "edge"] = "reflect" if min(h, w) > max(ph, pw) else "edge"
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)
        weights = blend_weights(size, self.overlap)
        total = np.zeros((n, len(self.codes), h + ph, w + pw), np.float32)
        weight = np.zeros((h + ph, w + pw), np.float32)
        name = session.get_inputs()[0].name
        for i in window_origins(h + ph, size, self.overlap):
            for j in window_origins(w + pw, size, self.overlap):
                window = np.ascontiguousarray(x[:, :, i : i + size, j : j + size])
                probs = _softmax(session.run(None, {name: window})[0])
                total[:, :, i : i + size, j : j + size] += probs * weights
                weight[i : i + size, j : j + size] += weights
        return (total / weight)[:, :, :h, :w]


class S2Cloudless(Peer):
    name = "s2cloudless"
    package = "s2cloudless"
    distribution = "s2cloudless"
    card = ModelCard(
        name="s2cloudless",
        version="1.7.3",
        bands="B01 B02 B04 B05 B08 B8A B09 B10 B11 B12, L1C only",
        classes=("clear", "cloud"),
        resolution="trained at 160 m; per pixel, so any",
        training_data="Sentinel-2 L1C pixels labelled with MAJA cloud masks (as Sentinel Hub's "
        "2017 post on the detector tells)",
        licence="CC BY-SA 4.0",
        source="Sinergise, github.com/sentinel-hub/sentinel2-cloud-detector (LightGBM)",
        install=f"{EXTRA} (or pip install 's2cloudless==1.7.3')",
        scores=(Score("cloud F1 against ukis-csmask", 0.514, _T19UDP),),
        note="share-alike: its masks, labels made from them (tile --labels-from s2cloudless) "
        "and weights trained on those are CC BY-SA 4.0 too",
    )
    codes = (LABEL_CLEAR, LABEL_THICK_CLOUD)
    calls = {LABEL_THIN_CLOUD: LABEL_THICK_CLOUD, LABEL_CLOUD_SHADOW: LABEL_CLEAR}
    made_for = 160.0  # its card: trained at 160 m
    # a pixel classifier: no context, so windows need not overlap
    window = 512
    overlap = 0
    threshold = 0.4  # its own rule, not 0.5
    BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")

    def bands_for(
        self, available: Sequence[str], level: str, *, what: str = "the product"
    ) -> tuple[str, ...]:
        if _level(level) != L1C:
            raise BandMismatchError(
                "s2cloudless reads top-of-atmosphere L1C reflectance (it needs the cirrus band "
                f"B10, which L2A lacks) but {what} is {level}; give it an L1C product"
            )
        lacking = [b for b in self.BANDS if b not in set(available)]
        if lacking:
            raise BandMismatchError(
                f"s2cloudless needs {','.join(self.BANDS)} but {what} lacks {','.join(lacking)}"
            )
        return self.BANDS

    @cached_property
    def _detector(self):
        self.require()
        from s2cloudless import S2PixelCloudDetector

        return S2PixelCloudDetector(all_bands=False, average_over=None, dilation_size=None)

    def probabilities(
        self,
        refl: np.ndarray,
        bands: Sequence[str],
        level: str,
        *,
        resolution: float | None = None,
    ) -> np.ndarray:
        self.bands_for(bands, level)
        order = [list(bands).index(b) for b in self.BANDS]
        x = np.nan_to_num(refl[:, order].astype(np.float32), nan=0.0)
        cloud = self._detector.get_cloud_probability_maps(np.moveaxis(x, 1, -1))
        return np.stack([1.0 - cloud, cloud], axis=1).astype(np.float32)

    def label_codes(self, probabilities: np.ndarray) -> np.ndarray:
        cloud = probabilities[:, list(self.codes).index(LABEL_THICK_CLOUD)] > self.threshold
        return np.where(cloud, LABEL_THICK_CLOUD, LABEL_CLEAR).astype(np.uint8)


class DlL8S2Uv(Peer):
    """The two DL-L8S2-UV cloud U-Nets (MIT), rebuilt in torch from their Keras files, read
    in place (`dl_l8s2_uv.py`): the 6-band one where B11 and B12 are there, else the 4-band."""

    name = "dl-l8s2-uv"
    package = "h5py"
    distribution = "h5py"
    card = dl_l8s2_uv.CARD
    codes = (LABEL_CLEAR, LABEL_THICK_CLOUD)
    calls = {LABEL_THIN_CLOUD: LABEL_THICK_CLOUD, LABEL_CLOUD_SHADOW: LABEL_CLEAR}
    # fully convolutional: windows of its own run inside; the pipeline's need little overlap
    window = dl_l8s2_uv.WINDOW
    overlap = dl_l8s2_uv.OVERLAP
    threshold = 0.5  # cloud where the probability is at least this
    works_at = dl_l8s2_uv.READ_AT
    made_for = dl_l8s2_uv.WORKS_AT

    @classmethod
    def installed(cls) -> bool:
        return dl_l8s2_uv.installed()

    @classmethod
    def require(cls) -> None:
        dl_l8s2_uv.require()

    @classmethod
    def version(cls) -> str:
        return dl_l8s2_uv.VERSION

    def bands_for(
        self, available: Sequence[str], level: str, *, what: str = "the product"
    ) -> tuple[str, ...]:
        if _level(level) != L1C:
            raise BandMismatchError(
                f"dl-l8s2-uv reads top-of-atmosphere L1C reflectance but {what} is {level}; "
                "give it an L1C product"
            )
        have = set(available)
        six, four = dl_l8s2_uv.SIX, dl_l8s2_uv.FOUR
        if set(six) <= have:
            return six
        if set(four) <= have:
            return four
        lacking = [b for b in four if b not in have]
        raise BandMismatchError(
            f"dl-l8s2-uv needs at least {','.join(four)} (+ B11,B12 for its 6-band network) "
            f"but {what} lacks {','.join(lacking)}"
        )

    def probabilities(
        self,
        refl: np.ndarray,
        bands: Sequence[str],
        level: str,
        *,
        resolution: float | None = None,
    ) -> np.ndarray:
        cloud = dl_l8s2_uv.cloud_probability(refl, tuple(bands), resolution=resolution)
        return np.stack([1.0 - cloud, cloud], axis=1).astype(np.float32)

    def label_codes(self, probabilities: np.ndarray) -> np.ndarray:
        cloud = probabilities[:, list(self.codes).index(LABEL_THICK_CLOUD)] >= self.threshold
        return np.where(cloud, LABEL_THICK_CLOUD, LABEL_CLEAR).astype(np.uint8)


PEERS: dict[str, type[Peer]] = {peer.name: peer for peer in (UkisCsmask, S2Cloudless, DlL8S2Uv)}


def get_peer(name: str, *, option: str = "--model") -> Peer:
    """The peer called ``name``, checked to be installed; ``option`` brought the name."""
    try:
        peer = PEERS[name]()
    except KeyError:
        raise OptionError(
            f"{option} {name}: not a peer model; expected one of {', '.join(PEERS)}"
        ) from None
    peer.require()
    return peer


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
