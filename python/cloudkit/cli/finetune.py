"""`cloudkit finetune`: train a cloud / shadow segmentation model on labelled tile stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudkit.cli import _finetune_options as opt
from cloudkit.config import RANDOM_INIT, Device, FinetuneConfig, Head, TaskName


def finetune(
    stores: Annotated[
        list[Path],
        typer.Argument(
            metavar="STORE",
            help="Labelled tile stores made by `cloudkit tile` (e.g. with --scl-labels).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Run folder: best.pt (best val IoU), last.pt (every epoch, for --resume), metrics.jsonl.",
            show_default=False,
        ),
    ],
    init: Annotated[
        str,
        typer.Option(
            "--init",
            help="'random', or a pretraining checkpoint (last.pt of `cloudkit pretrain`) whose encoder starts the model.",
        ),
    ] = RANDOM_INIT,
    fraction: Annotated[
        float,
        typer.Option(
            "--fraction",
            help="Share in (0, 1] of the labelled tiles to use, drawn stratified on the cloudiness bins.",
        ),
    ] = 1.0,
    task: opt.Task = TaskName.cloud,
    head: opt.HeadOption = Head.unet,
    epochs: opt.Epochs = 50,
    batch_size: opt.BatchSize = 16,
    crop: opt.Crop = None,
    lr: opt.Lr = 7e-3,
    backbone_lr_scale: opt.BackboneLrScale = 0.1,
    freeze_epochs: opt.FreezeEpochs = 5,
    patience: opt.Patience = 15,
    val_fraction: opt.ValFraction = 0.2,
    min_valid: opt.MinValid = 0.5,
    seed: opt.Seed = 0,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the run in --out from its last.pt (same options)."),
    ] = False,
    device: opt.DeviceOption = Device.auto,
    amp: opt.Amp = None,
    workers: opt.WorkersOption = None,
) -> None:
    """Fine-tune a segmentation model (ResNet-18 encoder + head) on labelled tile stores.

    The paper's protocol: a --fraction of the labelled tiles, drawn and split into train/val stratified on cloudiness; Adam; backbone frozen for --freeze-epochs (batch norm still adapts), then trained at --lr x --backbone-lr-scale; cosine schedule; random crops with flips; soft Dice + BCE (or Dice + CE); early stopping on the val loss. No-data pixels count nowhere.

    Prints the path of best.pt. Example: cloudkit finetune tiles.zarr --init runs/moco/last.pt --fraction 0.25 --out runs/ft
    """
    from cloudkit.train.finetune import finetune as run

    cfg = FinetuneConfig(
        stores=tuple(stores),
        out=out,
        init=init,
        fraction=fraction,
        task=task,
        head=head,
        epochs=epochs,
        batch_size=batch_size,
        crop=crop,
        lr=lr,
        backbone_lr_scale=backbone_lr_scale,
        freeze_epochs=freeze_epochs,
        patience=patience,
        val_fraction=val_fraction,
        min_valid=min_valid,
        seed=seed,
        resume=resume,
        device=device,
        amp=amp,
        workers=workers,
    )
    typer.echo(str(run(cfg)))
