"""Hard negatives: tiles rich in clear ground that is dark or bright are seen more often."""

from __future__ import annotations

import numpy as np
import pytest

from cloudkit.data.hard_negatives import hard_share, oversample
from cloudkit.data.tiles import TileDataset
from cloudkit.io.scene import LABEL_CLEAR, LABEL_CLOUD_SHADOW, LABEL_NODATA, LABEL_THICK_CLOUD
from tests.helpers.pretrain_stores import real_store, subset_store

BANDS = ("B02", "B03", "B04", "B08")


def _tile(blue_green_red: tuple[float, float, float]) -> np.ndarray:
    image = np.full((4, 4, 4), 0.3, np.float32)
    for c, value in enumerate(blue_green_red):
        image[c] = value
    return image


def test_hard_share_counts_clear_dark_or_bright_ground():
    labels = np.full((4, 4), LABEL_CLEAR, np.uint8)
    labels[0] = LABEL_THICK_CLOUD  # a quarter cloud: not a hard negative however it looks
    labels[1, :2] = LABEL_NODATA  # not counted at all
    forest = _tile((0.03, 0.05, 0.03))
    desert = _tile((0.25, 0.3, 0.4))
    meadow = _tile((0.05, 0.09, 0.08))
    assert hard_share(forest, labels, BANDS) == pytest.approx(10 / 14)
    assert hard_share(desert, labels, BANDS) == pytest.approx(10 / 14)
    assert hard_share(meadow, labels, BANDS) == 0.0
    shadow = labels.copy()
    shadow[2:] = LABEL_CLOUD_SHADOW  # a real shadow is the shadow class, not a negative
    assert hard_share(forest, shadow, BANDS) == pytest.approx(2 / 14)
    forest[2] = np.nan  # the red band absent: nothing to judge
    assert hard_share(forest, labels, BANDS) == 0.0
    assert hard_share(desert, labels, ("B08", "B11", "B12", "B8A")) == 0.0
    assert hard_share(desert, np.full((4, 4), LABEL_NODATA, np.uint8), BANDS) == 0.0


@pytest.mark.shared_data
def test_oversample_repeats_tiles_by_their_share(tmp_path_factory):
    store = subset_store(real_store(tmp_path_factory), tmp_path_factory.mktemp("h") / "h.zarr", 24)
    tiles = TileDataset([store], with_labels=True)
    indices = np.arange(len(tiles))
    assert oversample(tiles, indices, 0.0).indices.tolist() == indices.tolist()
    shares = np.array(
        [hard_share(t["image"].numpy(), t["labels"][0].numpy(), tiles.bands) for t in tiles]
    )
    assert shares.min() == 0.0 and shares.max() > 0.9  # real T29UNU: some tiles all hard, some not
    sampled = oversample(tiles, indices, 3.0)
    expected = np.repeat(indices, 1 + np.floor(3.0 * shares + 0.5).astype(int))
    assert sampled.indices.tolist() == expected.tolist()
    assert sampled.tiles == len(indices) and sampled.mean_share == pytest.approx(shares.mean())
    assert sampled.hard_tiles == int((np.floor(3.0 * shares + 0.5) > 0).sum()) > 0
