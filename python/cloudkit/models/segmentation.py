"""Segmentation networks on the encoder (ResNet-18, or a light torchvision network: the U-Net
and light heads read any architecture's five feature maps, `archs.py`): the paper's
full-resolution head, a U-Net and a light feature-pyramid head.

Three heads, picked by name:

``"paper"``
    The head of the paper being reproduced: a copy of the encoder with **every** stride set to
    1 (conv1, the max-pool, the first block of layer2-4 and its downsample), so the 512-channel
    layer-4 features keep the input's resolution, then Conv3x3(512->64), InstanceNorm, ReLU,
    Conv1x1(64->out). Faithful, and very costly: every layer runs at full resolution.

``"unet"``
    The everyday default: the unchanged encoder gives features at 1/2 (the ReLU after conv1),
    1/4 (layer1), 1/8, 1/16 and 1/32 (layer4); a U-Net decoder climbs back (upsample x2, concat
    the skip, two Conv3x3-BN-ReLU; 256/128/64/32 channels) to 1/2, and a last stage upsamples
    to full resolution, concatenates the input bands and applies Conv3x3-BN-ReLU(16) and a
    Conv1x1 to the logits. On a light encoder the decoder is narrower (96/64/32/16, then
    16). Inputs whose height or width is not a multiple of 32 are padded (reflect where the
    image is large enough, replicate otherwise) at the bottom and right and the logits
    cropped back, so any H, W works and the output always matches the input.

``"light"``
    For fast whole-scene prediction: the unchanged encoder and a feature pyramid on layer1-4
    (Conv1x1 to 64 channels each, summed top-down after bilinear x2 upsampling) down to 1/4,
    one Conv3x3-BN-ReLU(64), a Conv1x1 to the logits at 1/4 and bilinear upsampling of the
    logits to full resolution. About 0.4 GMAC per 384 px window beside the encoder's 5.4,
    where the U-Net decoder adds 6.8; edges are as sharp as logits at 1/4 interpolated allow.
    Same padding and cropping as the U-Net.

All take ``(N, C, H, W)`` reflectance in the encoder's band order and return logits
``(N, out_channels, H, W)``: one channel for a binary task (sigmoid), ``num_classes`` otherwise
(softmax).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import Parameter

from cloudkit.errors import BandMismatchError, CheckpointError
from cloudkit.models.archs import ARCHS
from cloudkit.models.encoder import Encoder
from cloudkit.models.state import load_weights

HEADS = ("unet", "light", "paper")
#: most classes a model may predict: label codes are uint8, and 255 is no data
MAX_CLASSES = 255

#: The U-Net's input size must be a multiple of this (the encoder's total stride).
UNET_MULTIPLE = 32

_STATE_KEYS = ("bands", "arch", "head", "num_classes", "binary", "task", "extra", "state_dict")


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class _UpBlock(nn.Module):
    """Upsample x2 (bilinear), concatenate the skip, two Conv3x3-BN-ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(_conv_bn_relu(cin + cskip, cout), _conv_bn_relu(cout, cout))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1))


class _UNetDecoder(nn.Module):
    """``channels``: the encoder's five feature maps (strides 2 to 32); ``widths``: the
    decoder's at 1/16, 1/8, 1/4, 1/2 and full resolution (ResNet-18: 256, 128, 64, 32, 16)."""

    def __init__(
        self,
        in_chans: int,
        out_channels: int,
        channels: tuple[int, ...] = (64, 64, 128, 256, 512),
        widths: tuple[int, ...] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        w4, w3, w2, w1, full = widths
        self.up4 = _UpBlock(c5, c4, w4)  # 1/32 -> 1/16 (ResNet: layer3)
        self.up3 = _UpBlock(w4, c3, w3)  # -> 1/8 (layer2)
        self.up2 = _UpBlock(w3, c2, w2)  # -> 1/4 (layer1)
        self.up1 = _UpBlock(w2, c1, w1)  # -> 1/2 (relu after conv1)
        self.full = _conv_bn_relu(w1 + in_chans, full)  # -> 1/1, with the input bands
        self.classifier = nn.Conv2d(full, out_channels, kernel_size=1)

    def forward(self, x: Tensor, features: list[Tensor]) -> Tensor:
        f1, f2, f3, f4, f5 = features
        y = self.up4(f5, f4)
        y = self.up3(y, f3)
        y = self.up2(y, f2)
        y = self.up1(y, f1)
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.full(torch.cat([y, x], dim=1)))


class _LightDecoder(nn.Module):
    """Feature pyramid on layer1-4 to 1/4, logits there, bilinear to full resolution."""

    WIDTH = 64

    def __init__(self, out_channels: int, channels: tuple[int, ...] = (64, 128, 256, 512)) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, self.WIDTH, 1) for c in channels)
        self.fuse = _conv_bn_relu(self.WIDTH, self.WIDTH)
        self.classifier = nn.Conv2d(self.WIDTH, out_channels, kernel_size=1)

    def forward(self, x: Tensor, features: list[Tensor]) -> Tensor:
        pyramid = features[1:]  # layer1..layer4: 1/4 .. 1/32
        y = self.laterals[-1](pyramid[-1])
        for lateral, feature in zip(self.laterals[-2::-1], pyramid[-2::-1], strict=True):
            y = F.interpolate(y, size=feature.shape[-2:], mode="bilinear", align_corners=False)
            y = y + lateral(feature)
        logits = self.classifier(self.fuse(y))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class _PaperHead(nn.Sequential):
    def __init__(self, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(512, 64, kernel_size=3, padding=1),
            nn.InstanceNorm2d(64),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, out_channels, kernel_size=1),
        )


def _set_all_strides_to_one(encoder: Encoder) -> None:
    for module in encoder.modules():
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
        elif isinstance(module, nn.MaxPool2d):
            # kernel 3, padding 1, stride 1 keeps the size
            module.stride = 1
        elif isinstance(getattr(module, "stride", None), int):
            # torchvision's BasicBlock remembers its stride; keep it honest
            setattr(module, "stride", 1)  # noqa: B010


class Segmenter(nn.Module):
    """An encoder (a copy: the one it was built from is never changed) and a segmentation
    head. Build it with :func:`build_segmenter` or :func:`load_segmenter`."""

    def __init__(self, encoder: Encoder, *, head: str, num_classes: int, binary: bool) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(
                f"unknown segmentation head {head!r}; choose one of {', '.join(HEADS)}"
            )
        if num_classes < 2:
            raise ValueError(f"a segmentation task needs at least 2 classes, got {num_classes}")
        if binary and num_classes != 2:
            raise ValueError(f"binary=True needs num_classes=2, got {num_classes}")
        self.head: str = head
        self.num_classes: int = num_classes
        self.binary: bool = binary
        self.out_channels: int = 1 if binary else num_classes
        if head == "paper" and encoder.arch != "resnet18":
            raise ValueError(
                f"the paper head is built on ResNet-18, not {encoder.arch}; use the unet or "
                "light head"
            )
        self.encoder: Encoder = copy.deepcopy(encoder)
        if head == "paper":
            _set_all_strides_to_one(self.encoder)
            self.decoder: nn.Module = _PaperHead(self.out_channels)
        elif head == "light":
            self.decoder = _LightDecoder(self.out_channels, encoder.channels[1:])
        else:
            self.decoder = _UNetDecoder(
                len(encoder.bands), self.out_channels, encoder.channels, encoder.spec.decoder
            )

    @property
    def bands(self) -> tuple[str, ...]:
        return self.encoder.bands

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) reflectance -> (N, out_channels, H, W) logits."""
        if x.ndim != 4 or x.shape[1] != len(self.bands):
            raise BandMismatchError(
                f"segmenter expects (N, {len(self.bands)}, H, W) for bands "
                f"{','.join(self.bands)} but got shape {tuple(x.shape)}"
            )
        if self.head == "paper":
            return self.decoder(self._trunk(x)[-1])
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, UNET_MULTIPLE)
        features = self._trunk(padded)
        if self.encoder.any_bands:
            # absent bands are NaN for the stem to see; the U-Net's last stage reads them as 0
            padded = torch.nan_to_num(padded, nan=0.0)
        logits = self.decoder(padded, features)
        return logits[..., :h, :w]

    def _trunk(self, x: Tensor) -> list[Tensor]:
        """The encoder's five feature maps (ResNet-18: after relu(conv1) and layer1..layer4)."""
        return self.encoder.features(x)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad (N, C, H, W) at the bottom and right to the next multiple of ``multiple``:
    reflect where possible (the pad must be smaller than the side), replicate otherwise."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def build_segmenter(
    encoder: Encoder, *, head: str = "unet", num_classes: int, binary: bool
) -> Segmenter:
    """A segmenter starting from ``encoder``'s weights (copied; ``encoder`` is left as is)."""
    return Segmenter(encoder, head=head, num_classes=num_classes, binary=binary)


def backbone_parameters(model: Segmenter) -> list[Parameter]:
    """The encoder's parameters (pretrained; trained with a smaller learning rate)."""
    return list(model.encoder.parameters())


def head_parameters(model: Segmenter) -> list[Parameter]:
    """The parameters of the head/decoder (newly initialised)."""
    return list(model.decoder.parameters())


def freeze_backbone(model: Segmenter, frozen: bool) -> None:
    """Freeze (or unfreeze) the encoder's weights; its BatchNorm layers keep training.

    During the paper's frozen epochs the encoder's BN still trains: its affine weights keep
    their gradients and, with ``model.train()``, its running statistics adapt to the new data.
    """
    for module in model.encoder.modules():
        keep = isinstance(module, nn.modules.batchnorm._BatchNorm)
        for param in module.parameters(recurse=False):
            param.requires_grad_(keep or not frozen)


def segmenter_state(model: Segmenter, *, task: str, extra: Mapping | None = None) -> dict:
    """What a checkpoint stores of a segmenter: bands, head, classes, task, ``extra`` and
    weights. Loads with ``torch.load(..., weights_only=True)``: ``extra`` must hold only
    tensors, str, int, float, bool, None, lists/tuples and dicts with str keys."""
    extra = dict(extra or {})
    _check_plain(extra, "extra")
    return {
        "bands": list(model.bands),
        "arch": model.encoder.arch,
        "any_bands": model.encoder.any_bands,
        "head": model.head,
        "num_classes": int(model.num_classes),
        "binary": bool(model.binary),
        "task": str(task),
        "extra": extra,
        "state_dict": model.state_dict(),
    }


def load_segmenter(state: Mapping) -> Segmenter:
    """Rebuild the segmenter saved by :func:`segmenter_state` (on the CPU, in train mode)."""
    missing = [key for key in _STATE_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"not a segmenter state: keys {', '.join(missing)} are missing; expected the dict "
            "written by cloudkit.models.segmentation.segmenter_state"
        )
    if state["arch"] not in ARCHS:
        raise CheckpointError(
            f"segmenter state is for architecture {state['arch']!r} but cloudkit builds "
            f"{', '.join(ARCHS)}"
        )
    if state["head"] not in HEADS:
        raise CheckpointError(
            f"segmenter state has head {state['head']!r}; this cloudkit knows {', '.join(HEADS)}"
        )
    num_classes, binary = state["num_classes"], state["binary"]
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise CheckpointError(f"segmenter state has num_classes {num_classes!r}, not a number")
    if not 2 <= num_classes <= MAX_CLASSES:
        raise CheckpointError(
            f"segmenter state has num_classes {num_classes}; a model predicts 2 to "
            f"{MAX_CLASSES} classes"
        )
    if not isinstance(binary, bool) or (binary and num_classes != 2):
        raise CheckpointError(
            f"segmenter state has binary {binary!r} with num_classes {num_classes}; a binary "
            "model has 2 classes"
        )
    try:
        encoder = Encoder(
            state["bands"], any_bands=bool(state.get("any_bands", False)), arch=state["arch"]
        )
        model = Segmenter(encoder, head=state["head"], num_classes=num_classes, binary=binary)
    except (ValueError, TypeError) as err:  # bands that name no Sentinel-2 band, and the like
        raise CheckpointError(f"segmenter state cannot be rebuilt: {err}") from None
    load_weights(
        model,
        state["state_dict"],
        f"the weights of a {state['arch']} with the {state['head']} head",
    )
    return model


def _check_plain(value: object, where: str) -> None:
    if value is None or isinstance(value, (str, int, float, bool, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has key {key!r}; checkpoint dict keys must be str")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; a checkpoint may only hold tensors, str, int, "
        "float, bool, None, lists and dicts (convert Paths with str())"
    )
