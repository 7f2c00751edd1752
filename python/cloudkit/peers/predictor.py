"""A peer model (ukis-csmask, s2cloudless) behind the interface of `predict.model.Predictor`.

So `cloudkit predict --model ukis-csmask` runs the peer through cloudkit's own scene pipeline:
its readers (each product's offsets applied, no-data known), windows, blending and COG
writer. The peer gets reflectance with NaN where a band has no data, on windows of the edge
and overlap it was made for (`Peer.window`, `Peer.overlap`): ukis-csmask 256 px overlapping
by 32, s2cloudless (a pixel classifier, so no seams to hide) 512 px without overlap. Peers run
on the CPU (onnxruntime, LightGBM).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cloudkit.data.reflectance import ValueScale
from cloudkit.errors import OptionError
from cloudkit.io.level import processing_level, require_level
from cloudkit.io.scene import Scene
from cloudkit.peers.registry import get_peer
from cloudkit.predict.model import ModelInfo


@dataclass(frozen=True)
class PeerWindows:
    """Windows ready for a peer: reflectance ``(n, C, T, T)``, NaN where no data."""

    reflectance: np.ndarray
    bands: tuple[str, ...]
    level: str


class PeerPredictor:
    """A peer on the CPU. :meth:`bands_for` is called as each scene is planned, before its
    windows (the pipeline plans a scene right before streaming it): it picks the peer's bands
    and network for the scene's processing level, which the scene's windows then carry."""

    def __init__(
        self, name: str, *, device: str = "auto", precision: str = "auto", compile: bool = False
    ) -> None:
        self.peer = get_peer(name)
        asked = {
            "--device": str(getattr(device, "value", device)).lower(),
            "--precision": str(getattr(precision, "value", precision)).lower(),
        }
        wrong = [
            f"{flag} {value}"
            for flag, value in asked.items()
            if value not in ("auto", "cpu", "fp32")
        ]
        if compile:
            wrong.append("--compile")
        if wrong:
            raise OptionError(
                f"{name} runs on the CPU in fp32 (its own runtime, not torch); drop "
                f"{', '.join(wrong)}"
            )
        self.device = torch.device("cpu")
        self.precision = "fp32"
        self.compiled = False
        binary = len(self.peer.codes) == 2
        self.info = ModelInfo(
            path=Path(name),
            task="cloud" if binary else "cloud and shadow",
            classes=self.peer.card.classes,
            binary=binary,
            head=f"peer {self.peer.name} {self.peer.version()}",
            bands=(),  # chosen per scene by bands_for
            tile_size=self.peer.window,
            overlap=self.peer.overlap,
            threshold=self.peer.threshold,
            resolution=self.peer.works_at,
            made_for=self.peer.made_for,
        )
        self._level: str | None = None

    def bands_for(self, scene: Scene) -> tuple[str, ...]:
        level = require_level(processing_level(scene), scene.scene_id, self.peer.name)
        on_disk = [band for band, sources in scene.bands.items() if sources]
        bands = self.peer.bands_for(on_disk, level, what=scene.scene_id)
        self._level = level
        return bands

    def values_for(self, bands: Sequence[str]) -> ValueScale:
        return ValueScale.of_store_convention(len(bands))

    def inputs(self, dn: np.ndarray, valid: np.ndarray, bands: Sequence[str]) -> PeerWindows:
        if self._level is None:
            raise RuntimeError("PeerPredictor.bands_for(scene) must come before its windows")
        refl = self.values_for(bands).reflectance_or_nan(dn, valid)
        return PeerWindows(refl, tuple(bands), self._level)

    def probabilities(self, images: PeerWindows) -> np.ndarray:
        probs = self.peer.probabilities(images.reflectance, images.bands, images.level)
        # a binary model's one channel is its positive class (cloud), as for a checkpoint
        return probs[:, 1:] if self.info.binary else probs
