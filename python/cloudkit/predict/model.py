"""A fine-tuned segmenter ready for inference on windows of store values.

Loads a `cloudkit finetune` checkpoint, checks that its inputs are ones this cloudkit can
reproduce, and runs batches the fast way for the device: channels_last everywhere, bf16
autocast on CUDA, fp32 on the CPU (bf16 weights on request: about 2x faster where the CPU
has native bf16, e.g. AVX512-BF16 or AMX), BatchNorm folded into the convolutions, always
under ``torch.inference_mode``. Outputs are probabilities in float32: the sigmoid of the
single logit of a binary task (the probability of its positive class), else the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from cloudkit import kernels
from cloudkit.checkpoint import load_finetuned, resolve_device
from cloudkit.data.reflectance import ValueScale, store_reflectance
from cloudkit.data.tasks import get_task
from cloudkit.errors import CheckpointError, OptionError

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

    @property
    def channels(self) -> int:
        """Probability channels per pixel: 1 for a binary task (its positive class)."""
        return 1 if self.binary else len(self.classes)


class Predictor:
    """``probabilities(dn, valid)``: store-value windows in, per-pixel probabilities out."""

    def __init__(
        self,
        checkpoint: Path,
        *,
        device: str = "auto",
        precision: str = "auto",
        compile: bool = False,
    ) -> None:
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
            model = torch.compile(model)
        self._model = model
        self.compiled = compile
        self._scale, self._offset = self.values.tensors(self.device)

    def inputs(self, dn: np.ndarray, valid: np.ndarray) -> Tensor:
        """``(n, C, T, T)`` uint16 store values and ``(n, 1, T, T)`` validity -> reflectance on
        the device (the conversion of `TileDataset`); on the CPU already channels_last and in
        the model's dtype."""
        if self.device.type == "cpu":
            # the same numbers in one Rust pass instead of six torch passes (about 10 s of
            # a full 10 m scene on 2 cores); the tests hold it equal to store_reflectance
            return self._cpu_inputs(dn, valid)
        non_blocking = self.device.type == "cuda"
        dn_t = torch.from_numpy(dn)
        valid_t = torch.from_numpy(valid)
        if non_blocking:
            dn_t, valid_t = dn_t.pin_memory(), valid_t.pin_memory()
        dn_t = dn_t.to(self.device, non_blocking=non_blocking)
        valid_t = valid_t.to(self.device, non_blocking=non_blocking)
        return store_reflectance(dn_t, valid_t, self._scale, self._offset)

    def _cpu_inputs(self, dn: np.ndarray, valid: np.ndarray) -> Tensor:
        scale, offset = list(self.values.scale), list(self.values.offset)
        dn, valid = np.ascontiguousarray(dn), np.ascontiguousarray(valid, dtype=np.uint8)
        nhwc = kernels.window_inputs(dn, valid, scale, offset, bf16=self._bf16_weights)
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
            conv, bn = getattr(module, f"conv{suffix}", None), getattr(module, f"bn{suffix}", None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, f"conv{suffix}", fuse_conv_bn_eval(conv, bn))
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
    return ModelInfo(
        path=path,
        task=task.name,
        classes=tuple(task.classes),
        binary=task.binary,
        head=model.head,
        bands=tuple(model.bands),
        tile_size=int(tile) if tile else DEFAULT_WINDOW,
    )


def _resolve_precision(precision: str, device: torch.device) -> str:
    name = str(getattr(precision, "value", precision)).lower()
    if name not in PRECISIONS:
        raise OptionError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name
