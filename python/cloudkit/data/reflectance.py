"""Store values to reflectance: the one conversion training, evaluation and prediction share.

A tile store keeps uint16 values with ``reflectance = value * scale + offset`` per band and 0
for no data; its attributes ``scale`` and ``offset`` hold the constants, and a fine-tuned
checkpoint records the ones its training tiles had (:meth:`ValueScale.record`). Models see
float32 reflectance, unclipped, with 0.0 wherever a band has no data or the pixel is not
valid (some band lacks data). `TileDataset` converts a tile here and `cloudkit predict`
converts its windows here (on the GPU when it runs there; on the CPU the Rust kernel
``_core.window_inputs`` computes the same numbers from the same constants), so a window of a
scene and the same tile of a store reach the network as the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cloudkit.errors import CheckpointError
from cloudkit.io.store import QUANTIFICATION, STORE_ADD_OFFSET

#: How a checkpoint records this conversion (``normalisation["kind"]``).
STORE_REFLECTANCE = "store-reflectance"


@dataclass(frozen=True)
class ValueScale:
    """Per band ``reflectance = value * scale + offset``; value 0 is no data."""

    scale: tuple[float, ...]
    offset: tuple[float, ...]

    @classmethod
    def of(cls, attrs: Mapping) -> ValueScale:
        """From a store's attributes or a checkpoint's ``normalisation`` record."""
        return cls(tuple(map(float, attrs["scale"])), tuple(map(float, attrs["offset"])))

    @classmethod
    def of_checkpoint(cls, path: Path, normalisation: object, bands: int) -> ValueScale:
        """The constants a fine-tuned checkpoint records, checked against what prediction
        makes: windows of store values (`io/store/`'s convention)."""
        kind = normalisation.get("kind") if isinstance(normalisation, dict) else normalisation
        if normalisation is not None and kind != STORE_REFLECTANCE:
            raise CheckpointError(
                f"{path}: the model expects inputs normalised as {kind!r}; this cloudkit "
                f"prepares {STORE_REFLECTANCE!r} only"
            )
        store = cls.of_store_convention(bands)
        if not isinstance(normalisation, dict) or "scale" not in normalisation:
            return store  # recorded before checkpoints held the constants: stores had these
        recorded = cls.of(normalisation)
        if not np.allclose(recorded.scale, store.scale) or not np.allclose(
            recorded.offset, store.offset
        ):
            raise CheckpointError(
                f"{path}: the model was trained on store values with scale "
                f"{list(recorded.scale)} and offset {list(recorded.offset)}; this cloudkit "
                f"predicts from values with scale {store.scale[0]:g} and offset "
                f"{store.offset[0]:g}"
            )
        return recorded

    @classmethod
    def of_store_convention(cls, bands: int) -> ValueScale:
        """What every tile store holds (`io/store/` writes these as its attributes)."""
        return cls((1.0 / QUANTIFICATION,) * bands, (STORE_ADD_OFFSET / QUANTIFICATION,) * bands)

    def record(self) -> dict:
        """This conversion as a checkpoint records it (``normalisation``)."""
        return {
            "kind": STORE_REFLECTANCE,
            "description": "TileDataset reflectance (value * scale + offset), no-data pixels "
            "0.0, unclipped",
            "scale": list(self.scale),
            "offset": list(self.offset),
        }

    def tensors(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """``scale`` and ``offset`` as float32 ``(C, 1, 1)`` tensors on ``device``."""
        return band_constants(self.scale, device), band_constants(self.offset, device)

    def reflectance(self, values: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` store values -> float32 reflectance, 0.0 where a value is 0."""
        scale, offset = self.tensors()
        every = torch.ones((), dtype=torch.bool)
        dn = torch.from_numpy(np.ascontiguousarray(values))
        return store_reflectance(dn, every, scale, offset).numpy()

    def reflectance_or_nan(self, values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """``(..., C, H, W)`` store values -> float32 reflectance, NaN where a value is 0 or,
        with ``valid`` (``(..., 1, H, W)``), the pixel is not valid: what peer models take.
        The same two roundings as :func:`store_reflectance`."""
        shape = (-1, 1, 1)
        scale = np.asarray(self.scale, dtype=np.float32).reshape(shape)
        offset = np.asarray(self.offset, dtype=np.float32).reshape(shape)
        reflectance = values.astype(np.float32) * scale + offset
        missing = values == 0
        if valid is not None:
            missing |= valid == 0
        reflectance[missing] = np.nan
        return reflectance


def store_reflectance(dn: Tensor, valid: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
    """``(..., C, H, W)`` uint16 store values -> float32 reflectance.

    ``valid``: bool/uint8 ``(..., 1, H, W)``; ``scale``/``offset``: float32 ``(C, 1, 1)`` on
    the same device. Multiply then add as two roundings (no fused multiply-add), the same on
    every device.
    """
    reflectance = dn.to(torch.float32) * scale + offset
    return reflectance.masked_fill_((dn == 0) | (valid == 0), 0.0)


def band_constants(values, device: torch.device | str = "cpu") -> Tensor:
    """Per-band ``scale`` or ``offset`` values as a float32 ``(C, 1, 1)`` tensor."""
    array = np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)
    return torch.from_numpy(array).to(device)
