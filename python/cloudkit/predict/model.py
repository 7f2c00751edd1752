"""A fine-tuned segmenter ready for inference on windows of store values.

Loads a `cloudkit finetune` checkpoint, checks that its inputs are ones this cloudkit can
reproduce, and runs batches the fast way for the device: on CUDA bf16 autocast and
channels_last; on the CPU fp32 (bf16 on request, where the CPU has native bf16), always
under ``torch.inference_mode``. Outputs are probabilities in float32: the sigmoid of the
single logit of a binary task (the probability of its positive class), else the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cloudkit.data.reflectance import STORE_REFLECTANCE, band_constants, store_reflectance
from cloudkit.data.tasks import get_task
from cloudkit.errors import CheckpointError, CloudkitError
from cloudkit.eval.evaluate import load_finetuned, resolve_device
from cloudkit.io.store import QUANTIFICATION, STORE_ADD_OFFSET

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
        self.device = resolve_device(device)
        self.precision = _resolve_precision(precision, self.device)
        model = model.to(self.device).eval()
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self._model = torch.compile(model) if compile else model
        self.compiled = compile
        c = len(self.info.bands)
        # the tile store's convention: value * 1e-4 - 0.1 for every band (see io/store.py)
        self._scale = band_constants([1.0 / QUANTIFICATION] * c, self.device)
        self._offset = band_constants([STORE_ADD_OFFSET / QUANTIFICATION] * c, self.device)

    def inputs(self, dn: np.ndarray, valid: np.ndarray) -> Tensor:
        """``(n, C, T, T)`` uint16 store values and ``(n, 1, T, T)`` validity -> reflectance on
        the device (the conversion of `TileDataset`)."""
        non_blocking = self.device.type == "cuda"
        dn_t = torch.from_numpy(dn)
        valid_t = torch.from_numpy(valid)
        if non_blocking:
            dn_t, valid_t = dn_t.pin_memory(), valid_t.pin_memory()
        dn_t = dn_t.to(self.device, non_blocking=non_blocking)
        valid_t = valid_t.to(self.device, non_blocking=non_blocking)
        return store_reflectance(dn_t, valid_t, self._scale, self._offset)

    def probabilities(self, images: Tensor) -> np.ndarray:
        """Reflectance ``(n, C, T, T)`` on the device -> float32 ``(n, channels, T, T)``."""
        with torch.inference_mode():
            if self.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(
                self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
            ):
                logits = self._model(images)
            logits = logits.float()
            probs = torch.sigmoid(logits) if self.info.binary else torch.softmax(logits, dim=1)
            return probs.cpu().numpy()


def _model_info(path: Path, payload: dict, model) -> ModelInfo:
    normalisation = payload.get("normalisation")
    if normalisation is not None:
        kind = normalisation.get("kind") if isinstance(normalisation, dict) else normalisation
        if kind != STORE_REFLECTANCE:
            raise CheckpointError(
                f"{path}: the model expects inputs normalised as {kind!r}; this cloudkit "
                f"prepares {STORE_REFLECTANCE!r} only"
            )
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
        raise CloudkitError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    if name == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return name
