"""A fine-tuned segmenter ready for inference on windows of store values.

Loads a `cloudkit finetune` checkpoint, checks that its inputs are ones this cloudkit can
reproduce, and runs batches the fast way for the device: channels_last everywhere, bf16
autocast on CUDA, fp32 on the CPU (bf16 weights on request: about 2x faster where the CPU
has native bf16, e.g. AVX512-BF16 or AMX), BatchNorm folded into the convolutions, always
under ``torch.inference_mode``. Outputs are probabilities in float32: the sigmoid of the
single logit of a binary task (the probability of its positive class), else the softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cloudkit import kernels
from cloudkit.data.reflectance import ValueScale, store_reflectance
from cloudkit.data.tasks import get_task
from cloudkit.errors import BandMismatchError, CheckpointError, OptionError
from cloudkit.io.level import L2A, processing_level
from cloudkit.io.scene import Scene
from cloudkit.models.band_slots import SLOTS, PresenceStem, check_any_band_input
from cloudkit.models.checkpoint import MAX_RESOLUTION, load_finetuned, resolve_device

PRECISIONS = ("auto", "fp32", "bf16")
#: Window edge used when a checkpoint does not record its training tile size.
DEFAULT_WINDOW = 384


@dataclass(frozen=True)
class ModelInfo:
    """What a prediction needs to know of the checkpoint, and reports about it."""

    path: Path
    task: str
    classes: tuple[str, ...]
    binary: bool
    head: str
    bands: tuple[str, ...]
    tile_size: int  # of the training tiles
    #: the model reads the 13 band slots and takes any subset holding B02 B03 B04
    any_bands: bool = False
    #: the pixel size (m) it works at unless told otherwise: products finer than this are
    #: read at it (a shipped model's card says so); None: the product's finest
    resolution: float | None = None
    #: windows' overlap the model was made for (None: `config.default_overlap`)
    overlap: int | None = None
    #: the pixel size (m) it was made for, where that is not ``resolution`` (a peer's card,
    #: the coarsest a fine-tuning saw); masks of pixels far coarser are flagged
    #: (predict/writer.py)
    made_for: float | None = None
    #: a binary task's rule: the positive class where its probability exceeds this
    threshold: float = 0.5

    @property
    def channels(self) -> int:
        """Probability channels per pixel: 1 for a binary task (its positive class)."""
        return 1 if self.binary else len(self.classes)


@runtime_checkable
class Predictor(Protocol):
    """What the scene pipeline and `Model.predict_array` run: a fine-tuned checkpoint
    (:class:`CheckpointPredictor`) or a peer (`peers.predictor.PeerPredictor`).
    ``inputs`` returns what ``probabilities`` takes, which each kind chooses."""

    info: ModelInfo
    device: torch.device
    precision: str
    compiled: bool

    def bands_for(self, scene: Scene) -> tuple[str, ...]: ...

    def values_for(self, bands: Sequence[str]) -> ValueScale: ...

    def inputs(self, dn: np.ndarray, valid: np.ndarray, bands: Sequence[str]) -> Any: ...

    def probabilities(self, images: Any) -> np.ndarray: ...


class CheckpointPredictor:
    """A fine-tuned checkpoint on a device: ``bands_for(scene)`` picks what it reads of a
    product, ``inputs(dn, valid, bands)`` turns store-value windows of those bands into the
    model's input, ``probabilities(images)`` runs it."""

    def __init__(
        self,
        checkpoint: Path,
        *,
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
    ) -> None:
        model: nn.Module  # a Segmenter, then what folding and compiling make of it
        payload, model = load_finetuned(Path(checkpoint))
        self.info = _model_info(Path(checkpoint), payload, model)
        #: how the windows' store values become the model's reflectance (the checkpoint's)
        self.values = ValueScale.of_checkpoint(
            Path(checkpoint), payload.get("normalisation"), len(self.info.bands)
        )
        self.device = resolve_device(device)
        self.precision = _resolve_precision(precision, self.device)
        # BatchNorm folded into the convolutions (eval statistics are constants): +8-11 %
        model = fold_batchnorm(model.eval()).to(self.device)
        # channels_last pays on both devices: 1.3x (fp32) and 1.5x (bf16) on a 2-core CPU
        model = model.to(memory_format=torch.channels_last)
        # bf16 on CUDA: autocast (fp32 weights, bf16 matmuls). On the CPU autocast keeps
        # BatchNorm-free glue (cat, upsampling) in fp32; bf16 weights and inputs run 1.3x faster
        self._autocast = self.precision == "bf16" and self.device.type == "cuda"
        self._bf16_weights = self.precision == "bf16" and self.device.type == "cpu"
        if self._bf16_weights:
            model = model.to(torch.bfloat16)
        if compile:
            # inference only: inductor may treat the weights as constants and prepack them
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            model = cast(nn.Module, torch.compile(model))  # an OptimizedModule
        self._model = model
        self.compiled = compile
        self._scale, self._offset = self.values.tensors(self.device)

    def bands_for(self, scene: Scene) -> tuple[str, ...]:
        """The bands of ``scene`` the model reads, in its order; a one-line
        :class:`BandMismatchError` saying what it needs when the product lacks them."""
        if self.info.any_bands:
            # every band the product has a file of on disk (the grid plan picks the file)
            chosen = tuple(b for b in SLOTS if scene.bands.get(b))
            check_any_band_input(chosen, what=scene.scene_id)
            return chosen
        have = set(scene.bands) | set(scene.missing)
        lacking = [b for b in self.info.bands if b not in have]
        if lacking:
            raise BandMismatchError(_lacking_bands_message(scene, self.info, lacking, have))
        return self.info.bands

    def values_for(self, bands: Sequence[str]) -> ValueScale:
        """How store values of ``bands`` become the model's reflectance."""
        index = [self.info.bands.index(b) for b in bands]
        return ValueScale(
            tuple(self.values.scale[i] for i in index), tuple(self.values.offset[i] for i in index)
        )

    def inputs(self, dn: np.ndarray, valid: np.ndarray, bands: Sequence[str]) -> Tensor:
        """``(n, C, T, T)`` uint16 store values of ``bands`` and ``(n, 1, T, T)`` validity ->
        the model's input on the device: reflectance as `TileDataset` makes it, in the
        model's band slots (absent ones NaN) for an any-band model; on the CPU already
        channels_last and in the model's dtype."""
        bands = tuple(bands)
        if not self.info.any_bands and bands != self.info.bands:
            raise BandMismatchError(
                f"the model reads {','.join(self.info.bands)}, windows hold {','.join(bands)}"
            )
        values = self.values_for(bands)
        if self.device.type == "cpu":
            # the same numbers in one Rust pass instead of six torch passes (about 10 s of
            # a full 10 m scene on 2 cores); the tests hold it equal to store_reflectance
            images = self._cpu_inputs(dn, valid, values)
        else:
            non_blocking = self.device.type == "cuda"
            dn_t = torch.from_numpy(dn)
            valid_t = torch.from_numpy(valid)
            if non_blocking:
                dn_t, valid_t = dn_t.pin_memory(), valid_t.pin_memory()
            dn_t = dn_t.to(self.device, non_blocking=non_blocking)
            valid_t = valid_t.to(self.device, non_blocking=non_blocking)
            scale, offset = values.tensors(self.device)
            images = store_reflectance(dn_t, valid_t, scale, offset)
        if self.info.any_bands and bands != self.info.bands:
            images = _into_slots(images, [self.info.bands.index(b) for b in bands])
        return images

    def _cpu_inputs(self, dn: np.ndarray, valid: np.ndarray, values: ValueScale) -> Tensor:
        dn, valid = np.ascontiguousarray(dn), np.ascontiguousarray(valid, dtype=np.uint8)
        nhwc = kernels.window_inputs(
            dn, valid, list(values.scale), list(values.offset), bf16=self._bf16_weights
        )
        images = torch.from_numpy(nhwc)
        if self._bf16_weights:
            images = images.view(torch.bfloat16)
        return images.permute(0, 3, 1, 2)  # NCHW with channels_last strides, no copy

    def probabilities(self, images: Tensor) -> np.ndarray:
        """Reflectance ``(n, C, T, T)`` on the device -> float32 ``(n, channels, T, T)``."""
        with torch.inference_mode():
            images = images.contiguous(memory_format=torch.channels_last)
            if self._bf16_weights:
                images = images.to(torch.bfloat16)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
                logits = self._model(images)
            logits = logits.float()
            probs = torch.sigmoid(logits) if self.info.binary else torch.softmax(logits, dim=1)
            return probs.cpu().numpy()


def _into_slots(images: Tensor, slots: list[int]) -> Tensor:
    """(n, k, T, T) reflectance -> (n, 13, T, T) with the k bands at ``slots``, NaN elsewhere
    (the memory format of ``images`` is kept)."""
    n, _, h, w = images.shape
    full = torch.full((n, len(SLOTS), h, w), float("nan"), dtype=images.dtype, device=images.device)
    if images.is_contiguous(memory_format=torch.channels_last):
        full = full.contiguous(memory_format=torch.channels_last)
    full[:, slots] = images
    return full


def _lacking_bands_message(scene: Scene, info: ModelInfo, lacking: list[str], have) -> str:
    needs = f"{scene.scene_id}: the model ({len(info.bands)} bands) needs {', '.join(lacking)}"
    if "B10" in lacking and processing_level(scene) == L2A:
        return (
            f"{needs}; L2A products have no B10 (cirrus: Sen2Cor drops it). Predict the "
            "matching L1C product, or fine-tune a model without B10 (tile L2A with "
            "--bands B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B11,B12)"
        )
    ordered = sorted(have)
    return f"{needs}, which this {scene.layout} scene lacks; it has {', '.join(ordered)}"


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that follows a convolution into it, in place.

    Covers the layouts of the segmenters: ``Sequential(conv, bn, ...)`` (decoder, ResNet
    downsample) and ``convN``/``bnN`` attribute pairs (ResNet stem and basic blocks). The
    output changes only by float rounding (about 1e-7 here).
    """
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            items = list(module._modules.items())
            for (conv_name, conv), (bn_name, bn) in zip(items, items[1:], strict=False):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                    module._modules[bn_name] = nn.Identity()
        for suffix in ("", "1", "2", "3"):
            layer = getattr(module, f"conv{suffix}", None)
            norm = getattr(module, f"bn{suffix}", None)
            if not isinstance(norm, nn.BatchNorm2d):
                continue
            if isinstance(layer, nn.Conv2d):
                setattr(module, f"conv{suffix}", fuse_conv_bn_eval(layer, norm))
            elif isinstance(layer, PresenceStem):
                setattr(module, f"conv{suffix}", layer.fold(norm))
            else:
                continue
            setattr(module, f"bn{suffix}", nn.Identity())
    return model


def _model_info(path: Path, payload: dict, model) -> ModelInfo:
    task_name = str(payload.get("task", payload["model"]["task"]))
    try:
        task = get_task(task_name)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    if task.binary != model.binary or task.num_classes != model.num_classes:
        raise CheckpointError(
            f"{path}: task {task_name} has {task.num_classes} classes but the model predicts "
            f"{model.num_classes}"
        )
    tile = payload.get("tile_size")
    if tile is not None and not (isinstance(tile, int) and 8 <= tile <= 16384):
        raise CheckpointError(f"{path}: tile_size {tile!r} is no tile edge in pixels (8 to 16384)")
    resolution = _pixel_size(path, payload, "resolution")
    made_for = _pixel_size(path, payload, "made_for")
    return ModelInfo(
        path=path,
        task=task.name,
        classes=tuple(task.classes),
        binary=task.binary,
        head=model.head,
        bands=tuple(model.bands),
        tile_size=int(tile) if tile else DEFAULT_WINDOW,
        any_bands=model.encoder.any_bands,
        resolution=resolution,
        made_for=made_for,
    )


def _pixel_size(path: Path, payload: dict, key: str) -> float | None:
    """The checkpoint's ``key``, a pixel size in metres, or None where it records none."""
    value = payload.get(key)
    if value is None:
        return None
    if not (isinstance(value, (int, float)) and 0 < value < MAX_RESOLUTION):  # NaN fails
        raise CheckpointError(f"{path}: {key} {value!r} is no pixel size in metres")
    return float(value)


def _resolve_precision(precision: str, device: torch.device) -> str:
    name = str(getattr(precision, "value", precision)).lower()
    if name not in PRECISIONS:
        raise OptionError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name
