"""Segmenters: the all-stride-1 paper head, the U-Net, the light head, freezing, and saved
states."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cloudkit.errors import BandMismatchError, CheckpointError
from cloudkit.models.encoder import Encoder
from cloudkit.models.segmentation import (
    Segmenter,
    backbone_parameters,
    build_segmenter,
    freeze_backbone,
    head_parameters,
    load_segmenter,
    segmenter_state,
)

BANDS = ("B02", "B03", "B04")


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    torch.manual_seed(0)
    return Encoder(BANDS)


def images(n: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, len(BANDS), h, w, generator=torch.Generator().manual_seed(seed))


def strides(module: nn.Module) -> dict[str, object]:
    """Every stride a module (or its children) holds, by name."""
    return {
        name: m.stride
        for name, m in module.named_modules()
        if getattr(m, "stride", None) is not None
    }


class TestPaperHead:
    def test_full_resolution(self, encoder):
        model = build_segmenter(encoder, head="paper", num_classes=2, binary=True)
        x = images(1, 32, 32)
        with torch.no_grad():
            assert model(x).shape == (1, 1, 32, 32)
            assert model._trunk(x)[-1].shape == (1, 512, 32, 32)

    def test_every_stride_is_one(self, encoder):
        model = build_segmenter(encoder, head="paper", num_classes=4, binary=False)
        found = strides(model.encoder)
        assert "backbone.conv1" in found and "backbone.layer2.0.downsample.0" in found
        bad = {k: s for k, s in found.items() if s not in (1, (1, 1))}
        assert not bad
        # the encoder it was built from keeps its strides
        assert encoder.backbone.conv1.stride == (2, 2)
        assert encoder.backbone.layer4[0].downsample[0].stride == (2, 2)

    def test_holds_encoder_weights(self, encoder):
        model = build_segmenter(encoder, head="paper", num_classes=2, binary=True)
        assert torch.equal(model.encoder.backbone.conv1.weight, encoder.backbone.conv1.weight)
        assert model.encoder.backbone.conv1.weight is not encoder.backbone.conv1.weight
        for ours, theirs in zip(
            model.encoder.state_dict().values(), encoder.state_dict().values(), strict=True
        ):
            assert torch.equal(ours, theirs)

    def test_head_layers(self, encoder):
        model = build_segmenter(encoder, head="paper", num_classes=4, binary=False)
        kinds = [type(m) for m in model.decoder]
        assert kinds == [nn.Conv2d, nn.InstanceNorm2d, nn.ReLU, nn.Conv2d]
        assert model.decoder[0].in_channels == 512 and model.decoder[0].out_channels == 64
        assert model.decoder[3].out_channels == 4


class TestUNet:
    def test_padding_and_crop(self, encoder):
        model = build_segmenter(encoder, num_classes=2, binary=True).eval()
        with torch.no_grad():
            assert model(images(2, 48, 40)).shape == (2, 1, 48, 40)
            assert model(images(1, 20, 12)).shape == (1, 1, 20, 12)  # pad > side: replicate

    def test_multiclass(self, encoder):
        model = build_segmenter(encoder, head="unet", num_classes=4, binary=False)
        assert model.head == "unet" and model.bands == BANDS and model.num_classes == 4
        with torch.no_grad():
            assert model(images(2, 32, 32)).shape == (2, 4, 32, 32)

    def test_holds_encoder_weights(self, encoder):
        model = build_segmenter(encoder, num_classes=2, binary=True)
        assert torch.equal(model.encoder.backbone.conv1.weight, encoder.backbone.conv1.weight)
        assert model.encoder.backbone.conv1.stride == (2, 2)

    def test_band_mismatch(self, encoder):
        model = build_segmenter(encoder, num_classes=2, binary=True)
        with pytest.raises(BandMismatchError, match="B02,B03,B04"):
            model(torch.zeros(1, 4, 32, 32))

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"head": "fcn", "num_classes": 2, "binary": True}, "unknown segmentation head"),
            ({"num_classes": 3, "binary": True}, "binary=True"),
            ({"num_classes": 1, "binary": False}, "at least 2"),
        ],
    )
    def test_bad_arguments(self, encoder, kwargs, match):
        with pytest.raises(ValueError, match=match):
            build_segmenter(encoder, **kwargs)


class TestLightHead:
    def test_any_size_comes_back_at_full_resolution(self, encoder):
        model = build_segmenter(encoder, head="light", num_classes=4, binary=False).eval()
        with torch.no_grad():
            assert model(images(2, 64, 64)).shape == (2, 4, 64, 64)
            assert model(images(1, 48, 40)).shape == (1, 4, 48, 40)
            assert model(images(1, 20, 12)).shape == (1, 4, 20, 12)

    def test_logits_at_a_quarter_upsampled(self, encoder):
        """The classifier runs at 1/4 of the input; the output is its bilinear upsampling."""
        model = build_segmenter(encoder, head="light", num_classes=2, binary=True).eval()
        seen = {}

        def record(_module, _inputs, out) -> None:
            seen["logits"] = out

        model.decoder.classifier.register_forward_hook(record)
        with torch.no_grad():
            out = model(images(1, 64, 64))
        coarse = seen["logits"]
        assert coarse.shape == (1, 1, 16, 16)
        upsampled = nn.functional.interpolate(coarse, size=(64, 64), mode="bilinear")
        torch.testing.assert_close(out, upsampled)

    def test_keeps_the_encoder_strided_and_is_cheaper_than_the_unet(self, encoder):
        light = build_segmenter(encoder, head="light", num_classes=2, binary=True)
        unet = build_segmenter(encoder, head="unet", num_classes=2, binary=True)
        assert light.encoder.backbone.conv1.stride == (2, 2)
        count = lambda m: sum(p.numel() for p in head_parameters(m))  # noqa: E731
        assert count(light) < count(unet) / 10


class TestFreeze:
    def test_parameter_groups_partition(self, encoder):
        model = build_segmenter(encoder, num_classes=2, binary=True)
        back = {id(p) for p in backbone_parameters(model)}
        head = {id(p) for p in head_parameters(model)}
        assert back and head and not back & head
        assert back | head == {id(p) for p in model.parameters()}

    def test_frozen_backbone_gets_no_grad_but_bn_still_trains(self, encoder):
        model = build_segmenter(encoder, num_classes=2, binary=True).train()
        freeze_backbone(model, True)
        bn_params = {
            id(p)
            for m in model.encoder.modules()
            if isinstance(m, nn.BatchNorm2d)
            for p in m.parameters()
        }
        weights = [p for p in backbone_parameters(model) if id(p) not in bn_params]
        assert weights and not any(p.requires_grad for p in weights)
        assert all(p.requires_grad for p in backbone_parameters(model) if id(p) in bn_params)
        assert all(p.requires_grad for p in head_parameters(model))
        bn = model.encoder.backbone.bn1
        before = bn.running_mean.clone()
        model(images(2, 32, 32)).sum().backward()
        assert not torch.equal(bn.running_mean, before)
        assert all(p.grad is None for p in weights)
        assert bn.weight.grad is not None
        assert all(p.grad is not None for p in head_parameters(model))

        freeze_backbone(model, False)
        assert all(p.requires_grad for p in model.parameters())


class TestState:
    @pytest.mark.parametrize(
        ("head", "classes", "binary"),
        [("unet", 2, True), ("light", 4, False), ("paper", 4, False)],
    )
    def test_round_trip(self, encoder, tmp_path: Path, head, classes, binary):
        model = build_segmenter(encoder, head=head, num_classes=classes, binary=binary)
        model.train()
        model(images(2, 32, 32))  # move BN running stats away from their init
        model.eval()
        extra = {"classes": ["a", "b"], "crop": 256, "lr": 7e-3, "nested": {"ok": True}}
        path = tmp_path / "seg.pt"
        torch.save({"model": segmenter_state(model, task="cloud", extra=extra)}, path)
        state = torch.load(path, weights_only=True)["model"]
        assert state["bands"] == list(BANDS)
        assert (state["head"], state["num_classes"], state["binary"]) == (head, classes, binary)
        assert state["task"] == "cloud" and state["extra"] == extra

        loaded = load_segmenter(state).eval()
        assert isinstance(loaded, Segmenter)
        assert loaded.bands == BANDS and loaded.head == head
        x = images(1, 32, 32, seed=5)
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))

    def test_extra_must_be_plain(self, encoder):
        model = build_segmenter(encoder, num_classes=2, binary=True)
        with pytest.raises(TypeError, match="Path"):
            segmenter_state(model, task="cloud", extra={"out": Path("x")})

    def test_bad_states(self, encoder):
        model = build_segmenter(encoder, num_classes=2, binary=True)
        state = segmenter_state(model, task="cloud", extra={})
        with pytest.raises(CheckpointError, match="state_dict"):
            load_segmenter({k: v for k, v in state.items() if k != "state_dict"})
        with pytest.raises(CheckpointError, match=r"do not fit: .*classifier.weight has shape"):
            load_segmenter(state | {"num_classes": 4, "binary": False})
        with pytest.raises(CheckpointError, match="head"):
            load_segmenter(state | {"head": "fcn"})
