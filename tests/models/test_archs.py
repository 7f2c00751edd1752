"""Light encoders (`models/archs.py`): MobileNetV3-Large, EfficientNet-B0 and RegNetY-400MF
beside ResNet-18 (and ResNet-18 under a narrower decoder), with the any-band stem, in the U-Net and light heads, through a checkpoint,
and `--arch` in `cloudkit pretrain` (MoCo, DeepCluster) and `cloudkit finetune`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cloudkit.config import Arch
from cloudkit.errors import CheckpointError
from cloudkit.models.archs import ARCHS, get_arch
from cloudkit.models.band_slots import SLOTS, PresenceStem
from cloudkit.models.encoder import Encoder, as_any_band, encoder_state, load_encoder
from cloudkit.models.losses import dice_ce_loss
from cloudkit.models.segmentation import build_segmenter, load_segmenter, segmenter_state
from cloudkit.predict.model import CheckpointPredictor
from cloudkit.ssl.deepcluster import DeepClusterV2
from cloudkit.ssl.moco import MoCo
from tests.helpers.cli import fails_with_one_line, run
from tests.helpers.pretrain_stores import real_store, subset_store

LIGHT = ("mobilenet_v3_large", "efficientnet_b0", "regnet_y_400mf")


def _slots(n: int, size: int, *, absent=("B01", "B09", "B10")) -> torch.Tensor:
    x = torch.rand(n, len(SLOTS), size, size) * 0.4
    for band in absent:
        x[:, SLOTS.index(band)] = float("nan")
    return x


def test_config_names_every_arch():
    assert [a.value for a in Arch] == list(ARCHS)
    with pytest.raises(CheckpointError, match="architecture 'vgg16': this cloudkit builds"):
        get_arch("vgg16")


@pytest.mark.parametrize("arch", LIGHT)
def test_any_band_encoder_shapes(arch):
    encoder = Encoder(SLOTS, any_bands=True, arch=arch).eval()
    assert isinstance(encoder.stem(), PresenceStem)
    assert encoder.stem().conv.in_channels == 13
    x = _slots(2, 64)
    with torch.no_grad():
        pooled = encoder(x)
        maps = encoder.features(torch.nan_to_num(x))
    assert pooled.shape == (2, encoder.out_dim) and torch.isfinite(pooled).all()
    assert [tuple(m.shape[1:]) for m in maps] == [
        (c, 64 // s, 64 // s) for c, s in zip(encoder.channels, (2, 4, 8, 16, 32), strict=True)
    ]
    # light: at most 40 % of ResNet-18's parameters
    resnet = sum(p.numel() for p in Encoder(SLOTS, any_bands=True).parameters())
    assert sum(p.numel() for p in encoder.parameters()) < 0.4 * resnet


@pytest.mark.parametrize("arch", LIGHT)
@pytest.mark.parametrize("head", ["unet", "light"])
def test_segmenter_shapes_any_size(arch, head):
    model = build_segmenter(
        Encoder(SLOTS, any_bands=True, arch=arch), head=head, num_classes=4, binary=False
    ).eval()
    with torch.no_grad():
        out = model(_slots(1, 40)[..., :37])
    assert out.shape == (1, 4, 40, 37) and torch.isfinite(out).all()


def test_resnet18_narrow_is_resnet18_under_a_narrower_decoder():
    def unet(arch):
        encoder = Encoder(SLOTS, any_bands=True, arch=arch)
        return build_segmenter(encoder, head="unet", num_classes=4, binary=False).eval()

    wide, narrow = unet("resnet18"), unet("resnet18_narrow")
    shapes = {k: v.shape for k, v in wide.encoder.state_dict().items()}
    assert {k: v.shape for k, v in narrow.encoder.state_dict().items()} == shapes
    decoder = sum(p.numel() for p in wide.decoder.parameters())
    assert sum(p.numel() for p in narrow.decoder.parameters()) < 0.4 * decoder
    with torch.no_grad():
        out = narrow(_slots(1, 40)[..., :37])
    assert out.shape == (1, 4, 40, 37) and torch.isfinite(out).all()
    again = load_segmenter(segmenter_state(narrow, task="multi")).eval()
    assert again.encoder.arch == "resnet18_narrow"
    with pytest.raises(CheckpointError, match="weights of a resnet18 with the unet head"):
        load_segmenter(dict(segmenter_state(narrow, task="multi"), arch="resnet18"))


def test_paper_head_is_resnet_only():
    with pytest.raises(ValueError, match="paper head is built on ResNet-18"):
        build_segmenter(
            Encoder(("B02", "B03"), arch="mobilenet_v3_large"),
            head="paper",
            num_classes=2,
            binary=True,
        )


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = build_segmenter(
        Encoder(SLOTS, any_bands=True, arch="mobilenet_v3_large"),
        head="unet",
        num_classes=3,
        binary=False,
    ).train()
    x = _slots(4, 32)
    target = (torch.nan_to_num(x)[:, 1] > 0.2).long() + (torch.nan_to_num(x)[:, 3] > 0.3).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        optimizer.zero_grad()
        loss = dice_ce_loss(model(x), target)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.8 * losses[0], losses


def test_checkpoint_round_trip_keeps_the_arch():
    encoder = Encoder(SLOTS, any_bands=True, arch="mobilenet_v3_large")
    model = build_segmenter(encoder, head="unet", num_classes=2, binary=True).eval()
    state = segmenter_state(model, task="cloud")
    assert state["arch"] == "mobilenet_v3_large"
    again = load_segmenter(state).eval()
    assert again.encoder.arch == "mobilenet_v3_large"
    x = _slots(1, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x))
    loaded = load_encoder(encoder_state(encoder))
    assert loaded.arch == "mobilenet_v3_large" and loaded.out_dim == 960
    wrong = dict(state, arch="resnet18")
    with pytest.raises(CheckpointError, match="weights of a resnet18 with the unet head"):
        load_segmenter(wrong)


def test_as_any_band_moves_the_stem_filters():
    bands = ("B02", "B03", "B04", "B08")
    encoder = Encoder(bands, arch="regnet_y_400mf")
    slots = as_any_band(encoder)
    assert slots.arch == "regnet_y_400mf" and slots.any_bands
    target = slots.stem().conv.weight
    for i, band in enumerate(bands):
        torch.testing.assert_close(target[:, SLOTS.index(band)], encoder.stem().weight[:, i])
    assert float(target[:, SLOTS.index("B11")].detach().abs().sum()) == 0.0
    key = "trunk_output.block4.block4-0.f.b.0.weight"
    torch.testing.assert_close(slots.backbone.state_dict()[key], encoder.backbone.state_dict()[key])


def test_ssl_models_take_the_arch():
    moco = MoCo(SLOTS, any_bands=True, arch="mobilenet_v3_large", queue_size=8)
    assert moco.encoder().arch == "mobilenet_v3_large" and moco.query_fc.in_features == 960
    loss, _ = moco(_slots(4, 32), _slots(4, 32))
    assert torch.isfinite(loss)
    dc = DeepClusterV2(SLOTS, 16, any_bands=True, arch="efficientnet_b0", n_prototypes=(4,))
    assert dc.encoder().arch == "efficientnet_b0" and dc.encoder().out_dim == 1280


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return subset_store(real_store(tmp_path_factory), tmp_path_factory.mktemp("a") / "a.zarr", 16)


def test_cli_arch_pretrain_and_finetune(store, tmp_path, capsys):
    """MoCo and DeepCluster pretrain a MobileNetV3 encoder; fine-tuning starts from it (the
    checkpoint's arch) or from random weights with --arch; a mismatch is one line."""
    small = ["--batch-size", "8", "--crop", "32", "--workers", "0", "--epochs", "1"]
    moco = tmp_path / "moco"
    code, _, err = run(
        capsys, "pretrain", store, "--method", "moco", "--queue-size", "16", *small,
        "--arch", "mobilenet_v3_large", "--out", moco,
    )  # fmt: skip
    assert code == 0, err
    dc = tmp_path / "dc"
    code, _, err = run(
        capsys, "pretrain", store, "--method", "deepcluster", "--prototypes", "4", *small,
        "--arch", "mobilenet_v3_large", "--out", dc,
    )  # fmt: skip
    assert code == 0, err
    tune = [*small, "--freeze-epochs", "0", "--task", "cloud"]
    code, _, err = run(
        capsys, "finetune", store, "--init", moco / "last.pt", *tune, "--out", tmp_path / "f"
    )
    assert code == 0, err
    best = torch.load(tmp_path / "f" / "best.pt", map_location="cpu", weights_only=True)
    assert best["model"]["arch"] == "mobilenet_v3_large"
    # exported as cloudkit ships models, it predicts (BatchNorm folded, channels_last)
    code, _, err = run(capsys, "export", tmp_path / "f" / "best.pt", tmp_path / "m.pt")
    assert code == 0, err
    predictor = CheckpointPredictor(tmp_path / "m.pt", device="cpu", precision="fp32")
    bands = predictor.info.bands
    dn = np.full((2, len(bands), 64, 64), 1500, np.uint16)
    probs = predictor.probabilities(predictor.inputs(dn, np.ones((2, 1, 64, 64), np.uint8), bands))
    assert probs.shape == (2, 1, 64, 64) and np.isfinite(probs).all()
    code, _, err = run(
        capsys, "finetune", store, "--arch", "efficientnet_b0", *tune, "--out", tmp_path / "r"
    )
    assert code == 0, err
    best = torch.load(tmp_path / "r" / "best.pt", map_location="cpu", weights_only=True)
    assert best["model"]["arch"] == "efficientnet_b0"
    line = fails_with_one_line(
        capsys, "finetune", store, "--init", dc / "last.pt", "--arch", "resnet18", *tune,
        "--out", tmp_path / "x",
    )  # fmt: skip
    assert "--arch resnet18: --init" in line and "is a mobilenet_v3_large encoder" in line
    line = fails_with_one_line(
        capsys, "pretrain", store, "--method", "moco", "--queue-size", "16", *small,
        "--out", moco, "--resume",
    )  # fmt: skip
    assert "pretrains a mobilenet_v3_large encoder; resume with --arch" in line
