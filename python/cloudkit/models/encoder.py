"""The encoder of every method (ResNet-18 by default, or a light torchvision network, see
`archs.py`), with a first convolution sized to the bands it reads.

An encoder remembers its bands (ESA names, in input-channel order) and its architecture and
carries them in its saved state, so a checkpoint can never be applied to data with other
bands, or rebuilt as another network, by accident. An *any-band* encoder reads the 13 band
slots and takes any subset of them, missing bands as NaN channels (`band_slots.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from cloudkit.bands import BY_NAME
from cloudkit.errors import BandMismatchError, CheckpointError
from cloudkit.models.archs import ARCHS, DEFAULT_ARCH, Arch, get_arch, set_stem, stem
from cloudkit.models.band_slots import SLOTS, PresenceStem
from cloudkit.models.state import load_weights

#: the default architecture (the paper's)
ARCH = DEFAULT_ARCH


class Encoder(nn.Module):
    """A torchvision network ``arch`` (no pretrained weights; ResNet-18 by default) taking
    ``len(bands)`` channels; outputs its pooled features (``out_dim`` of them: 512 for
    ResNet-18; its classifier is an identity). ``any_bands``: the 13 band slots, any of them
    NaN when absent (the first convolution is a :class:`PresenceStem`)."""

    #: pooled features of the default architecture; an instance holds its own arch's
    out_dim: int = 512

    def __init__(
        self, bands: Sequence[str] = SLOTS, *, any_bands: bool = False, arch: str = ARCH
    ) -> None:
        super().__init__()
        self.bands: tuple[str, ...] = _checked_bands(bands)
        if any_bands and self.bands != SLOTS:
            raise BandMismatchError(
                f"an any-band encoder reads the 13 slots {','.join(SLOTS)}, not "
                f"{','.join(self.bands)}"
            )
        self.any_bands: bool = any_bands
        spec = get_arch(arch)
        self.arch: str = spec.name
        self.out_dim: int = spec.pooled
        #: channels of the five feature maps of :meth:`features`
        self.channels: tuple[int, ...] = spec.channels
        self.backbone: nn.Module = spec.build()
        old = cast(nn.Conv2d, stem(spec, self.backbone))  # torchvision's own
        conv = nn.Conv2d(
            len(self.bands),
            old.out_channels,
            # a 2-D convolution's: torch types them as tuples of any length
            kernel_size=cast(tuple[int, int], old.kernel_size),
            stride=cast(tuple[int, int], old.stride),
            padding=cast("str | tuple[int, int]", old.padding),
            bias=False,
        )
        # the init torchvision gives its own first convolution, redone for the channel count
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        set_stem(spec, self.backbone, PresenceStem(conv) if any_bands else conv)

    @property
    def spec(self) -> Arch:
        """What :data:`arch` is (looked up, so the module holds no functions)."""
        return ARCHS[self.arch]

    def stem(self) -> nn.Module:
        """The first convolution (a :class:`PresenceStem` in an any-band encoder)."""
        return stem(self.spec, self.backbone)

    def features(self, x: Tensor) -> list[Tensor]:
        """(N, C, H, W) -> the five feature maps at strides 2, 4, 8, 16 and 32."""
        out = []
        for stage in self.spec.stages(self.backbone):
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) reflectance -> (N, out_dim) pooled features."""
        if x.ndim != 4 or x.shape[1] != len(self.bands):
            raise BandMismatchError(
                f"encoder expects (N, {len(self.bands)}, H, W) for bands {','.join(self.bands)} "
                f"but got shape {tuple(x.shape)}"
            )
        return self.backbone(x)


def encoder_state(encoder: Encoder) -> dict:
    """What a checkpoint stores of an encoder: its bands, architecture and weights.

    The weights are the torchvision network's own state dict (for ResNet-18 keys
    ``conv1.weight``, ...), so they also load into a plain torchvision model whose first
    convolution and classifier are replaced the same way.
    Everything in it loads with ``torch.load(..., weights_only=True)``.
    """
    return {
        "bands": list(encoder.bands),
        "arch": encoder.arch,
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
    if state["arch"] not in ARCHS:
        raise CheckpointError(
            f"encoder state is for architecture {state['arch']!r} but cloudkit builds "
            f"{', '.join(ARCHS)}"
        )
    encoder = Encoder(
        state["bands"], any_bands=bool(state.get("any_bands", False)), arch=state["arch"]
    )
    load_weights(encoder.backbone, state["state_dict"], f"the encoder weights of a {state['arch']}")
    return encoder


def as_any_band(encoder: Encoder) -> Encoder:
    """An any-band encoder with ``encoder``'s weights: its first convolution's filters go to
    the slots of its bands (the others start at zero), every other layer is copied. So an
    encoder pretrained on the 11 bands of an L2A product at 60 m starts an any-band model."""
    if encoder.any_bands:
        return encoder
    out = Encoder(SLOTS, any_bands=True, arch=encoder.arch)
    first = {id(encoder.stem().weight)}
    named = dict(encoder.backbone.named_parameters())
    stem_keys = {k for k, v in named.items() if id(v) in first}
    state = {k: v for k, v in encoder.backbone.state_dict().items() if k not in stem_keys}
    out.backbone.load_state_dict(state, strict=False)
    source = cast(nn.Conv2d, encoder.stem()).weight.detach()
    target = cast(PresenceStem, out.stem()).conv.weight
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
