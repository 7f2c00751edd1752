"""Datasets and augmentations over tile stores, for pretraining and fine-tuning.

The members load on first use (PEP 562): `cloudkit tile` reads `cloudkit.data.reflectance`
(numpy only), and importing this package must not load torch for it (some 0.8 GB and 4 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloudkit.data.augment import ssl_view_transform
    from cloudkit.data.tiles import TileDataset
    from cloudkit.data.views import CloudinessPairs, TwoViews

__all__ = ["CloudinessPairs", "TileDataset", "TwoViews", "ssl_view_transform"]

_HOMES = {
    "ssl_view_transform": "cloudkit.data.augment",
    "TileDataset": "cloudkit.data.tiles",
    "CloudinessPairs": "cloudkit.data.views",
    "TwoViews": "cloudkit.data.views",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
