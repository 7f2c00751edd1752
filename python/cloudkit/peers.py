"""Peer cloud maskers run on cloudkit's own inputs: ukis-csmask and s2cloudless.

Both ship their trained models inside their PyPI wheels and run offline (``pip install
'cloudkit[peers]'``). cloudkit hands them reflectance it prepared itself (each product's own
offsets applied, no-data known), so they are scored, used as teachers and run over whole
scenes exactly like a cloudkit model.

- ``ukis-csmask`` 1.0.0, Apache-2.0, DLR: U-Nets (EfficientNet-B4) for 4 bands (B02 B03 B04
  B08) or 6 (+ B11 B12), one pair for L1C and one for L2A; classes clear, cloud, cloud shadow;
  256 px windows; made for about 30 m.
- ``s2cloudless`` 1.7.3, CC BY-SA 4.0, Sinergise: a LightGBM pixel classifier of cloud
  probability from ten L1C bands (B01 B02 B04 B05 B08 B8A B09 B10 B11 B12); no shadow class.
  Weights trained on its output carry its share-alike licence.

A peer answers in cloudkit's label codes: :meth:`Peer.probabilities` returns one channel per
entry of :attr:`Peer.codes` (for ukis-csmask clear, thick cloud, cloud shadow: it has no thin
cloud class; for s2cloudless clear and cloud).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from cloudkit.errors import BandMismatchError, CheckpointError, MissingDependencyError
from cloudkit.io.scene import LABEL_CLEAR, LABEL_CLOUD_SHADOW, LABEL_THICK_CLOUD

EXTRA = "pip install 'cloudkit[peers]'"
LEVELS = ("L1C", "L2A")


@dataclass(frozen=True)
class PeerCard:
    """What `cloudkit models` shows of a peer."""

    name: str
    version: str
    licence: str
    source: str
    classes: tuple[str, ...]
    bands: str
    resolution: str


class Peer:
    """A peer model: pick its bands for a product, then probabilities of reflectance windows."""

    name: str
    package: str
    card: PeerCard
    #: cloudkit label code of each output channel
    codes: tuple[int, ...]
    #: the window edge the peer runs on (None: any size)
    window: int | None

    @classmethod
    def installed(cls) -> bool:
        return importlib.util.find_spec(cls.package) is not None

    @classmethod
    def require(cls) -> None:
        if not cls.installed():
            raise MissingDependencyError(
                f"the peer model {cls.name} needs the package {cls.package}, which is not "
                f"installed; {EXTRA}"
            )

    def bands_for(self, available: Sequence[str], level: str) -> tuple[str, ...]:
        """The bands this peer reads from a product that has ``available``; raises
        :class:`BandMismatchError` naming what it needs when they are too few."""
        raise NotImplementedError

    def probabilities(self, refl: np.ndarray, bands: Sequence[str], level: str) -> np.ndarray:
        """``(N, len(bands), H, W)`` float32 reflectance (NaN where no data) -> float32
        ``(N, len(codes), H, W)`` probabilities."""
        raise NotImplementedError


def _level(level: str) -> str:
    name = str(level).upper()
    if name not in LEVELS:
        raise BandMismatchError(f"processing level {level!r}: expected one of {', '.join(LEVELS)}")
    return name


class UkisCsmask(Peer):
    name = "ukis-csmask"
    package = "ukis_csmask"
    card = PeerCard(
        name="ukis-csmask",
        version="1.0.0",
        licence="Apache-2.0",
        source="DLR, github.com/dlr-eoc/ukis-csmask (ONNX U-Nets with EfficientNet-B4 encoders)",
        classes=("clear", "cloud", "cloud shadow"),
        bands="B02 B03 B04 B08 (B8A stands in), + B11 B12 for its 6-band model; L1C or L2A",
        resolution="about 30 m",
    )
    codes = (LABEL_CLEAR, LABEL_THICK_CLOUD, LABEL_CLOUD_SHADOW)
    window = 256
    FOUR = ("B02", "B03", "B04", "B08")
    SIX = ("B02", "B03", "B04", "B08", "B11", "B12")

    def bands_for(self, available: Sequence[str], level: str) -> tuple[str, ...]:
        have = set(available)
        if "B08" not in have and "B8A" in have:
            # L2A at 60 m has no B08; B8A (865 nm) is the narrow twin of B08 (833 nm)
            have.add("B08")
        chosen = self.SIX if set(self.SIX) <= have else self.FOUR if set(self.FOUR) <= have else ()
        if not chosen:
            lacking = [b for b in self.FOUR if b not in have]
            raise BandMismatchError(
                f"ukis-csmask needs at least {','.join(self.FOUR)} (B8A may stand in for B08) "
                f"but the product lacks {','.join(lacking)}"
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
            options = onnxruntime.SessionOptions()
            session = onnxruntime.InferenceSession(
                str(stem.with_suffix(".onnx")),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
            self._sessions[key] = (session, mean, std)
        return self._sessions[key]

    def probabilities(self, refl: np.ndarray, bands: Sequence[str], level: str) -> np.ndarray:
        level = _level(level)
        session, mean, std = self._session(len(bands), level)
        n, _, h, w = refl.shape
        size = self.window
        # the ONNX graphs take exactly 256 x 256: pad smaller windows, run larger ones in tiles
        ph, pw = -h % size, -w % size
        x = np.nan_to_num(refl.astype(np.float32), nan=0.0)
        x = np.clip(x, 0.0, 1.0)
        x = (x - mean) / std
        if ph or pw:
            x = np.pad(
                x,
                ((0, 0), (0, 0), (0, ph), (0, pw)),
                mode="reflect" if min(h, w) > max(ph, pw) else "edge",
            )
        out = np.empty((n, len(self.codes), h + ph, w + pw), np.float32)
        name = session.get_inputs()[0].name
        for i in range(0, h + ph, size):
            for j in range(0, w + pw, size):
                logits = session.run(
                    None, {name: np.ascontiguousarray(x[:, :, i : i + size, j : j + size])}
                )[0]
                out[:, :, i : i + size, j : j + size] = _softmax(logits)
        return out[:, :, :h, :w]


class S2Cloudless(Peer):
    name = "s2cloudless"
    package = "s2cloudless"
    card = PeerCard(
        name="s2cloudless",
        version="1.7.3",
        licence="CC BY-SA 4.0",
        source="Sinergise, github.com/sentinel-hub/sentinel2-cloud-detector (LightGBM)",
        classes=("clear", "cloud"),
        bands="B01 B02 B04 B05 B08 B8A B09 B10 B11 B12, L1C only",
        resolution="trained at 160 m, applied at any",
    )
    codes = (LABEL_CLEAR, LABEL_THICK_CLOUD)
    window = None
    BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")

    def bands_for(self, available: Sequence[str], level: str) -> tuple[str, ...]:
        if _level(level) != "L1C":
            raise BandMismatchError(
                "s2cloudless reads top-of-atmosphere L1C reflectance (it needs the cirrus band "
                "B10, which L2A lacks); give it an L1C product"
            )
        lacking = [b for b in self.BANDS if b not in set(available)]
        if lacking:
            raise BandMismatchError(
                f"s2cloudless needs {','.join(self.BANDS)} but the product lacks {','.join(lacking)}"
            )
        return self.BANDS

    @cached_property
    def _detector(self):
        self.require()
        from s2cloudless import S2PixelCloudDetector

        return S2PixelCloudDetector(all_bands=False, average_over=None, dilation_size=None)

    def probabilities(self, refl: np.ndarray, bands: Sequence[str], level: str) -> np.ndarray:
        self.bands_for(bands, level)
        order = [list(bands).index(b) for b in self.BANDS]
        x = np.nan_to_num(refl[:, order].astype(np.float32), nan=0.0)
        cloud = self._detector.get_cloud_probability_maps(np.moveaxis(x, 1, -1))
        return np.stack([1.0 - cloud, cloud], axis=1).astype(np.float32)


PEERS: dict[str, type[Peer]] = {peer.name: peer for peer in (UkisCsmask, S2Cloudless)}


def get_peer(name: str) -> Peer:
    """The peer called ``name``, checked to be installed."""
    try:
        peer = PEERS[name]()
    except KeyError:
        raise CheckpointError(
            f"unknown peer model {name!r}; expected one of {', '.join(PEERS)}"
        ) from None
    peer.require()
    return peer


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
