"""The band-aware ResNet-18 encoder: shapes, conv1 init, saved state and band checks."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn
from torchvision.models import ResNet

from cloudkit.bands import L1C_BANDS
from cloudkit.errors import BandMismatchError, CheckpointError
from cloudkit.models.encoder import Encoder, check_bands, encoder_state, load_encoder

RGBN = ("B02", "B03", "B04", "B08")


class TestEncoder:
    @pytest.mark.parametrize("bands", [L1C_BANDS, RGBN])
    def test_features_are_512_per_sample(self, bands):
        encoder = Encoder(bands)
        out = encoder(torch.rand(2, len(bands), 32, 32))
        assert out.shape == (2, Encoder.out_dim) == (2, 512)
        assert encoder.bands == tuple(bands)

    def test_conv1_takes_the_bands_and_has_kaiming_fan_out_init(self):
        torch.manual_seed(0)
        conv1 = Encoder(L1C_BANDS).backbone.conv1
        assert conv1.weight.shape == (64, 13, 7, 7)
        assert conv1.stride == (2, 2) and conv1.padding == (3, 3) and conv1.bias is None
        expected_std = math.sqrt(2.0 / (64 * 7 * 7))  # relu gain over fan_out
        assert conv1.weight.std().item() == pytest.approx(expected_std, rel=0.05)
        assert conv1.weight.mean().item() == pytest.approx(0.0, abs=expected_std / 10)

    def test_backbone_is_a_torchvision_resnet_without_classifier(self):
        encoder = Encoder(RGBN)
        assert isinstance(encoder.backbone, ResNet)
        assert isinstance(encoder.backbone.fc, nn.Identity)

    def test_wrong_channel_count_is_refused(self):
        with pytest.raises(BandMismatchError, match="expects .N, 4, H, W."):
            Encoder(RGBN)(torch.rand(1, 3, 32, 32))

    @pytest.mark.parametrize("bands", [(), ("B02", "B99"), ("B02", "B02")])
    def test_bad_band_lists_are_refused(self, bands):
        with pytest.raises(BandMismatchError, match="distinct Sentinel-2 bands"):
            Encoder(bands)


class TestEncoderState:
    def test_round_trip_through_torch_save_gives_the_same_features(self):
        torch.manual_seed(0)
        encoder = Encoder(RGBN).eval()
        buffer = io.BytesIO()
        torch.save(encoder_state(encoder), buffer)
        buffer.seek(0)
        state = torch.load(buffer, weights_only=True)  # plain data: safe loading works
        assert state["bands"] == list(RGBN) and state["arch"] == "resnet18"
        assert "conv1.weight" in state["state_dict"]  # torchvision's own keys
        restored = load_encoder(state).eval()
        x = torch.rand(2, 4, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(restored(x), encoder(x))
        assert restored.bands == RGBN

    def test_missing_keys_are_named(self):
        with pytest.raises(CheckpointError, match="keys bands, arch are missing"):
            load_encoder({"state_dict": {}})

    def test_other_architecture_is_refused(self):
        state = {**encoder_state(Encoder(RGBN)), "arch": "resnet50"}
        with pytest.raises(CheckpointError, match="'resnet50'"):
            load_encoder(state)

    def test_weights_for_other_bands_do_not_load(self):
        state = {**encoder_state(Encoder(RGBN)), "bands": list(L1C_BANDS)}
        with pytest.raises(
            CheckpointError,
            match=r"do not fit: conv1.weight has shape \(64, 4, 7, 7\) in the file, \(64, 13, 7, 7\)",
        ) as err:
            load_encoder(state)
        assert "\n" not in str(err.value)


class TestCheckBands:
    def test_equal_lists_pass(self):
        check_bands(RGBN, list(RGBN), what="store t.zarr")

    def test_mismatch_names_both_lists_and_the_fix(self):
        with pytest.raises(BandMismatchError) as err:
            check_bands(L1C_BANDS, RGBN, what="store t.zarr")
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith("store t.zarr has bands B02,B03,B04,B08")
        assert ",".join(L1C_BANDS) in message and "--bands" in message

    def test_other_order_is_pointed_out(self):
        with pytest.raises(BandMismatchError, match="other order"):
            check_bands(RGBN, RGBN[::-1], what="checkpoint")
