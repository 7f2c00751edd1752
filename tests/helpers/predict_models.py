"""Checkpoints for the prediction tests: a real fine-tuned model and an untrained one.

``trained_checkpoint`` fine-tunes a U-Net for two epochs on T29UNU at 60 m (SCL labels,
64 px tiles, cropped to 32 px): a model whose output has the texture of a real cloud mask
(saturated and uncertain regions, sharp edges), which is what blending and seams must be
judged on. It is trained once per test session.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.helpers.finetune_stores import real_store_64
from tests.helpers.shared_data import T29UNU_60M_BANDS


def trained_checkpoint(tmp_path_factory) -> Path:
    from cloudkit.config import FinetuneConfig
    from cloudkit.train.finetune import finetune

    folder = tmp_path_factory.getbasetemp() / "predict-model"
    best = folder / "best.pt"
    if best.is_file():
        return best
    cfg = FinetuneConfig(
        stores=[real_store_64(tmp_path_factory)],
        out=folder,
        init="random",
        task="cloud",
        head="unet",
        fraction=1.0,
        epochs=2,
        batch_size=8,
        crop=64,
        lr=1e-3,
        freeze_epochs=0,
        patience=0,
        workers=0,
        device="cpu",
        seed=0,
    )
    return finetune(cfg)


def untrained_checkpoint(
    path: Path, bands=T29UNU_60M_BANDS, *, task: str = "cloud", head: str = "unet", extra=None
) -> Path:
    """A seeded, untrained segmenter saved like `cloudkit finetune` saves one."""
    from cloudkit.data.tasks import get_task
    from cloudkit.models.checkpoint import FINE_TUNING
    from cloudkit.models.encoder import Encoder
    from cloudkit.models.segmentation import build_segmenter, segmenter_state

    spec = get_task(task)
    torch.manual_seed(0)
    model = build_segmenter(
        Encoder(bands), head=head, num_classes=spec.num_classes, binary=spec.binary
    ).eval()
    payload = {
        **FINE_TUNING.header(),
        "model": segmenter_state(model, task=task),
        "task": task,
        "bands": list(bands),
        "classes": list(spec.classes),
        "head": head,
        "normalisation": {"kind": "store-reflectance"},
        "tile_size": 64,
        **(extra or {}),
    }
    torch.save(payload, path)
    return path
