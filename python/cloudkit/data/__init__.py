"""Datasets and augmentations over tile stores, for pretraining and fine-tuning."""

from cloudkit.data.augment import ssl_view_transform
from cloudkit.data.tiles import TileDataset
from cloudkit.data.views import CloudinessPairs, TwoViews

__all__ = ["CloudinessPairs", "TileDataset", "TwoViews", "ssl_view_transform"]
