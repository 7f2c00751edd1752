"""The ResNet-18 encoder of every method, with a first convolution sized to the bands it reads.

An encoder remembers its bands (ESA names, in input-channel order) and carries them in its
saved state, so a checkpoint can never be applied to data with other bands by accident. An
*any-band* encoder reads the 13 band slots and takes any subset of them, missing bands as
NaN channels (`band_slots.py`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models import ResNet, resnet18

from cloudkit.bands import BY_NAME
from cloudkit.errors import BandMismatchError, CheckpointError
from cloudkit.models.band_slots import SLOTS, PresenceStem
from cloudkit.models.state import load_weights

ARCH = "resnet18"


class Encoder(nn.Module):
    """torchvision's ResNet-18 (no pretrained weights) taking ``len(bands)`` channels; outputs
    the 512-d pooled features (``fc`` is an identity). ``any_bands``: the 13 band slots, any of
    them NaN when absent (the first convolution is a :class:`PresenceStem`)."""

    out_dim: int = 512

    def __init__(self, bands: Sequence[str] = SLOTS, *, any_bands: bool = False) -> None:
        super().__init__()
        self.bands: tuple[str, ...] = _checked_bands(bands)
        if any_bands and self.bands != SLOTS:
            raise BandMismatchError(
                f"an any-band encoder reads the 13 slots {','.join(SLOTS)}, not "
                f"{','.join(self.bands)}"
            )
        self.any_bands: bool = any_bands
        self.backbone: ResNet = resnet18(weights=None)
        conv1 = nn.Conv2d(len(self.bands), 64, kernel_size=7, stride=2, padding=3, bias=False)
        # the init torchvision gives its own conv1, redone for the new channel count
        nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
        self.backbone.conv1 = PresenceStem(conv1) if any_bands else conv1
        self.backbone.fc = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) reflectance -> (N, 512) features."""
        if x.ndim != 4 or x.shape[1] != len(self.bands):
            raise BandMismatchError(
                f"encoder expects (N, {len(self.bands)}, H, W) for bands {','.join(self.bands)} "
                f"but got shape {tuple(x.shape)}"
            )
        return self.backbone(x)


def encoder_state(encoder: Encoder) -> dict:
    """What a checkpoint stores of an encoder: its bands, architecture and weights.

    The weights are the torchvision ResNet's own state dict (keys ``conv1.weight``, ...), so
    they also load into a plain ``resnet18`` whose conv1 and fc are replaced the same way.
    Everything in it loads with ``torch.load(..., weights_only=True)``.
    """
    return {
        "bands": list(encoder.bands),
        "arch": ARCH,
        "any_bands": encoder.any_bands,
        "state_dict": encoder.backbone.state_dict(),
    }


def load_encoder(state: dict) -> Encoder:
    """Rebuild the encoder saved by :func:`encoder_state`."""
    missing = [key for key in ("bands", "arch", "state_dict") if key not in state]
    if missing:
        raise CheckpointError(
            f"not an encoder state: keys {', '.join(missing)} are missing; expected the dict "
            "written by cloudkit.models.encoder_state"
        )
    if state["arch"] != ARCH:
        raise CheckpointError(
            f"encoder state is for architecture {state['arch']!r} but cloudkit builds {ARCH!r}"
        )
    encoder = Encoder(state["bands"], any_bands=bool(state.get("any_bands", False)))
    load_weights(encoder.backbone, state["state_dict"], f"the encoder weights of a {ARCH}")
    return encoder


def as_any_band(encoder: Encoder) -> Encoder:
    """An any-band encoder with ``encoder``'s weights: its first convolution's filters go to
    the slots of its bands (the others start at zero), every other layer is copied. So an
    encoder pretrained on the 11 bands of an L2A product at 60 m starts an any-band model."""
    if encoder.any_bands:
        return encoder
    out = Encoder(SLOTS, any_bands=True)
    state = {k: v for k, v in encoder.backbone.state_dict().items() if k != "conv1.weight"}
    out.backbone.load_state_dict(state, strict=False)
    source = encoder.backbone.conv1.weight.detach()
    target = out.backbone.conv1.conv.weight
    with torch.no_grad():
        target.zero_()
        for i, band in enumerate(encoder.bands):
            target[:, SLOTS.index(band)] = source[:, i]
    return out


def check_bands(expected: Sequence[str], got: Sequence[str], *, what: str) -> None:
    """Raise :class:`BandMismatchError` unless ``got`` has exactly the bands (and order) of
    ``expected``; ``what`` names the thing that brought ``got``, e.g. ``"store t.zarr"``."""
    expected, got = tuple(expected), tuple(got)
    if expected == got:
        return
    hint = " (same bands, other order)" if sorted(expected) == sorted(got) else ""
    raise BandMismatchError(
        f"{what} has bands {','.join(got)} but {','.join(expected)} are expected{hint}; "
        f"tile the data again with --bands {','.join(expected)} or use a model trained on "
        f"{','.join(got)}"
    )


def _checked_bands(bands: Sequence[str]) -> tuple[str, ...]:
    bands = tuple(bands)
    unknown = [b for b in bands if b not in BY_NAME]
    if not bands or unknown or len(set(bands)) != len(bands):
        raise BandMismatchError(
            f"encoder bands {','.join(bands) or '(none)'} are not a list of distinct Sentinel-2 "
            f"bands; use ESA names such as {','.join(list(BY_NAME)[:3])}"
        )
    return bands
