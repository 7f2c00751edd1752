"""Store values to model inputs: the one conversion training, evaluation and prediction share.

A tile store keeps uint16 values with ``reflectance = value * scale + offset`` per band and 0
for no data. Models see float32 reflectance, unclipped, with 0.0 wherever a band has no data
or the pixel is not valid (some band lacks data). `TileDataset` converts a tile here and
`cloudkit predict` converts its windows here (on the GPU when it runs there), so a window of a
scene and the same tile of a store reach the network as the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: How a checkpoint records this conversion (``normalisation["kind"]``).
STORE_REFLECTANCE = "store-reflectance"


def store_reflectance(dn: Tensor, valid: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
    """``(..., C, H, W)`` uint16 store values -> float32 reflectance.

    ``valid``: bool/uint8 ``(..., 1, H, W)``; ``scale``/``offset``: float32 ``(C, 1, 1)`` on
    the same device. Multiply then add as two roundings (no fused multiply-add), the same on
    every device.
    """
    reflectance = dn.to(torch.float32) * scale + offset
    return reflectance.masked_fill_((dn == 0) | (valid == 0), 0.0)


def band_constants(values, device: torch.device | str = "cpu") -> Tensor:
    """A store's per-band ``scale`` or ``offset`` attribute as a float32 ``(C, 1, 1)`` tensor."""
    array = np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)
    return torch.from_numpy(array).to(device)
