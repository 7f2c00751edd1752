"""Which bands of an array a model reads, and what turns their windows into probabilities.

A checkpoint's `Predictor` picks its bands from a product (`Predictor.bands_for`); an array
has only band names, so the same rules are applied to them here. A peer model also needs the
processing level, which a product tells by its metadata and an array cannot: it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from cloudkit.errors import BandMismatchError, OptionError
from cloudkit.io.level import LEVELS
from cloudkit.models.band_slots import SLOTS, check_any_band_input
from cloudkit.peers.predictor import PeerPredictor, PeerWindows
from cloudkit.predict.model import ModelInfo, Predictor

_WHAT = "the array"


class WindowModel(Protocol):
    """What a prediction needs of a model: ``Predictor`` and the peers at a level."""

    @property
    def info(self) -> ModelInfo: ...

    def inputs(self, dn: np.ndarray, valid: np.ndarray, bands: Sequence[str]) -> Any: ...

    def probabilities(self, images: Any) -> np.ndarray: ...


def reader_for(
    predictor: Predictor, bands: tuple[str, ...], level: str | None
) -> tuple[WindowModel, tuple[str, ...]]:
    """The model to run on the array's windows and the bands it reads, in its order."""
    level = _checked_level(level)
    if isinstance(predictor, PeerPredictor):
        if level is None:
            raise OptionError(
                f"{predictor.peer.name} runs one network per processing level: pass "
                "level='L1C' (top of atmosphere) or level='L2A' (bottom of atmosphere)"
            )
        chosen = predictor.peer.bands_for(bands, level, what=_WHAT)
        return _PeerAtLevel(predictor, level), tuple(chosen)
    info = predictor.info
    if info.any_bands:
        chosen = tuple(b for b in SLOTS if b in bands)
        check_any_band_input(chosen, what=_WHAT)
        return predictor, chosen
    lacking = [b for b in info.bands if b not in bands]
    if lacking:
        raise BandMismatchError(
            f"the model ({len(info.bands)} bands: {','.join(info.bands)}) needs "
            f"{','.join(lacking)}, which {_WHAT} lacks; it has {','.join(bands)}"
        )
    return predictor, info.bands


def _checked_level(level: str | None) -> str | None:
    if level is None:
        return None
    name = str(level).upper()
    if name not in LEVELS:
        raise OptionError(f"level={level!r}: expected one of {', '.join(LEVELS)}, or None")
    return name


class _PeerAtLevel:
    """A peer predictor whose windows all come from one processing level."""

    def __init__(self, predictor: PeerPredictor, level: str) -> None:
        self._predictor = predictor
        self._level = level

    @property
    def info(self) -> ModelInfo:
        return self._predictor.info

    def inputs(self, dn: np.ndarray, valid: np.ndarray, bands: Sequence[str]) -> PeerWindows:
        # as PeerPredictor.inputs, with the level given instead of read from a product
        reflectance = self._predictor.values_for(bands).reflectance_or_nan(dn, valid)
        return PeerWindows(reflectance, tuple(bands), self._level)

    def probabilities(self, images: PeerWindows) -> np.ndarray:
        return self._predictor.probabilities(images)
