"""The encoder architectures: torchvision networks (no pretrained weights) cut into the five
feature maps a U-Net climbs back from.

Each architecture is a torchvision classifier with its classifier removed, so calling it gives
pooled features (what MoCo and DeepCluster train on), and with five *stages* whose outputs
are the feature maps at strides 2, 4, 8, 16 and 32 of the input (what the segmentation heads
read). The first convolution, whatever its input channels, is the *stem*: cloudkit replaces
it with one of as many channels as bands (or a `band_slots.PresenceStem` over the 13 slots).

- ``resnet18``: the paper's encoder and the default; 11.2 M parameters.
- ``resnet18_narrow``: the same encoder under the light networks' narrower U-Net decoder
  (96/64/32/16 instead of 256/128/64/32), whose decoder costs less than half as much.
- ``mobilenet_v3_large``: inverted residuals with squeeze-excitation and hard-swish; 3.0 M.
- ``efficientnet_b0``: MBConv blocks with squeeze-excitation and SiLU; 4.0 M.
- ``regnet_y_400mf``: RegNetY bottlenecks with group convolutions and squeeze-excitation; 3.9 M.

The weights stay the torchvision network's own state dict, so a saved encoder loads into a
plain torchvision model whose stem and classifier are replaced the same way. The stages are
sliced from the network at each call, never stored, so a module replaced in place (batch
norm folded into a convolution for prediction) is what runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast

from torch import nn
from torchvision import models as tv

from cloudkit.errors import CheckpointError


@dataclass(frozen=True)
class Arch:
    """One encoder architecture."""

    name: str
    #: the torchvision network without weights, its classifier an identity
    build: Callable[[], nn.Module]
    #: the module holding the first convolution, and that convolution's name in it
    stem_parent: Callable[[nn.Module], nn.Module]
    stem_name: str
    #: the five stages of a built network, strides 2, 4, 8, 16, 32
    stages: Callable[[nn.Module], list[nn.Module]]
    #: channels of the five feature maps
    channels: tuple[int, int, int, int, int]
    #: width of the pooled features
    pooled: int
    #: the U-Net decoder's widths at 1/16, 1/8, 1/4, 1/2, and its full-resolution stage
    decoder: tuple[int, int, int, int, int]


def _resnet18() -> nn.Module:
    net = tv.resnet18(weights=None)
    net.fc = nn.Identity()
    return net


def _resnet_stages(net: nn.Module) -> list[nn.Module]:
    resnet = cast(tv.ResNet, net)
    return [
        nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu),
        nn.Sequential(resnet.maxpool, resnet.layer1),
        resnet.layer2,
        resnet.layer3,
        resnet.layer4,
    ]


def _classifier_off(make: Callable[..., nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        net = make(weights=None)
        if hasattr(net, "classifier"):
            net.classifier = nn.Identity()
        else:
            net.fc = nn.Identity()
        return net

    return build


def _slices(*cuts: int) -> Callable[[nn.Module], list[nn.Module]]:
    """Stages of a network whose ``features`` is one Sequential, cut before these indices."""

    def stages(net: nn.Module) -> list[nn.Module]:
        features = _features(net)
        bounds = (0, *cuts, len(features))
        return [features[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    return stages


def _features(net: nn.Module) -> nn.Sequential:
    """The ``features`` of a MobileNet or an EfficientNet: one Sequential."""
    return cast(nn.Sequential, net.features)


def _regnet_stages(net: nn.Module) -> list[nn.Module]:
    regnet = cast(tv.RegNet, net)
    trunk = regnet.trunk_output
    return [regnet.stem, trunk.block1, trunk.block2, trunk.block3, trunk.block4]


_RESNET18 = Arch(
    "resnet18",
    _resnet18,
    lambda net: net,
    "conv1",
    _resnet_stages,
    (64, 64, 128, 256, 512),
    512,
    (256, 128, 64, 32, 16),
)

ARCHS: dict[str, Arch] = {
    arch.name: arch
    for arch in (
        _RESNET18,
        # the same encoder, the light networks' narrow decoder: 1.4x less network time
        replace(_RESNET18, name="resnet18_narrow", decoder=(96, 64, 32, 16, 16)),
        Arch(
            "mobilenet_v3_large",
            _classifier_off(tv.mobilenet_v3_large),
            lambda net: _features(net)[0],
            "0",
            _slices(2, 4, 7, 13),
            (16, 24, 40, 112, 960),
            960,
            (96, 64, 32, 16, 16),
        ),
        Arch(
            "efficientnet_b0",
            _classifier_off(tv.efficientnet_b0),
            lambda net: _features(net)[0],
            "0",
            _slices(2, 3, 4, 6),
            (16, 24, 40, 112, 1280),
            1280,
            (96, 64, 32, 16, 16),
        ),
        Arch(
            "regnet_y_400mf",
            _classifier_off(tv.regnet_y_400mf),
            lambda net: cast(tv.RegNet, net).stem,
            "0",
            _regnet_stages,
            (32, 48, 104, 208, 440),
            440,
            (96, 64, 32, 16, 16),
        ),
    )
}
#: the default, and the paper's
DEFAULT_ARCH = "resnet18"


def get_arch(name: str) -> Arch:
    """The architecture called ``name``; CheckpointError naming the known ones otherwise."""
    try:
        return ARCHS[str(name)]
    except KeyError:
        raise CheckpointError(
            f"architecture {name!r}: this cloudkit builds {', '.join(ARCHS)}"
        ) from None


def stem(arch: Arch, net: nn.Module) -> nn.Module:
    """The first convolution of ``net`` (a `PresenceStem` in an any-band encoder)."""
    return getattr(arch.stem_parent(net), arch.stem_name)


def set_stem(arch: Arch, net: nn.Module, module: nn.Module) -> None:
    setattr(arch.stem_parent(net), arch.stem_name, module)
