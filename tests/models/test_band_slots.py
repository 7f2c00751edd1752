"""Any-band models: fixed slots, NaN for missing bands, a presence bias, realistic subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cloudkit.errors import BandMismatchError
from cloudkit.models.band_slots import (
    REQUIRED_BANDS,
    SLOTS,
    PresenceStem,
    check_any_band_input,
    drop_bands,
    to_slots,
)


def test_to_slots_puts_bands_in_esa_slots_and_nan_elsewhere():
    image = np.stack([np.full((4, 4), v, np.float32) for v in (2.0, 3.0, 4.0)])
    slots = to_slots(image, ("B04", "B02", "B11"))
    assert slots.shape == (13, 4, 4)
    assert slots[SLOTS.index("B04")].max() == 2.0
    assert slots[SLOTS.index("B02")].max() == 3.0
    assert slots[SLOTS.index("B11")].max() == 4.0
    absent = [i for i, b in enumerate(SLOTS) if b not in ("B02", "B04", "B11")]
    assert np.isnan(slots[absent]).all()
    with pytest.raises(BandMismatchError, match="B13"):
        to_slots(image, ("B02", "B03", "B13"))


def test_required_bands_are_checked_in_one_line():
    check_any_band_input(("B02", "B03", "B04", "B08"), what="scene x")
    with pytest.raises(BandMismatchError, match=r"scene x .*\(lacking B03\)"):
        check_any_band_input(("B02", "B04", "B08"), what="scene x")


def test_drop_bands_keeps_true_colour_and_only_drops_present_bands():
    rng = np.random.default_rng(0)
    slots = np.ones((13, 2, 2), np.float32)
    slots[SLOTS.index("B10")] = np.nan  # an L2A product
    kept_counts = []
    for _ in range(300):
        out = drop_bands(slots, rng)
        present = {b for i, b in enumerate(SLOTS) if not np.isnan(out[i]).all()}
        assert set(REQUIRED_BANDS) <= present
        assert "B10" not in present
        kept_counts.append(len(present))
    counts = np.bincount(kept_counts)
    assert counts[3] > 60  # true colour alone is the most common draw
    assert counts[12] > 40  # and whole products are common too


def test_presence_stem_starts_as_the_plain_convolution_and_sees_missing_bands():
    torch.manual_seed(0)
    conv = nn.Conv2d(13, 8, 3, padding=1, bias=False)
    stem = PresenceStem(conv)
    x = torch.rand(2, 13, 6, 6)
    x[1, 5] = float("nan")
    y = stem(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, conv(torch.nan_to_num(x, nan=0.0)))
    with torch.no_grad():
        stem.presence.weight.fill_(1.0)
    y = stem(x)
    # sample 0 has 13 bands present, sample 1 has 12: their biases differ by exactly 1
    diff = (y - conv(torch.nan_to_num(x, nan=0.0)))[:, :, 0, 0]
    torch.testing.assert_close(diff[0] - diff[1], torch.ones(8))


def test_presence_stem_folds_batchnorm_exactly():
    torch.manual_seed(0)
    stem = PresenceStem(nn.Conv2d(13, 8, 3, padding=1, bias=False))
    with torch.no_grad():
        stem.presence.weight.normal_()
        stem.presence.bias.normal_()
    bn = nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.normal_()
        bn.bias.normal_()
    bn.eval()
    stem.eval()
    x = torch.rand(3, 13, 6, 6)
    x[0, :4] = float("nan")
    folded = stem.fold(bn)
    torch.testing.assert_close(folded(x), bn(stem(x)), atol=1e-5, rtol=1e-5)
