"""`cloudkit experiment`: the label-fraction grid (fine-tune every init x fraction, evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudkit.cli import _finetune_options as opt
from cloudkit.config import (
    RANDOM_INIT,
    Device,
    ExperimentConfig,
    Head,
    TaskName,
    parse_fractions,
    parse_inits,
)


def experiment(
    stores: Annotated[
        list[Path],
        typer.Argument(
            metavar="STORE",
            help="Labelled training tile stores (the fractions are drawn from them).",
            show_default=False,
        ),
    ],
    test_stores: Annotated[
        list[Path],
        typer.Option(
            "--test-store",
            help="Labelled test store (repeat the option for several); every run is scored on them.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder: one run folder per init x fraction, results.md and results.json.",
            show_default=False,
        ),
    ],
    inits: Annotated[
        str,
        typer.Option(
            "--inits",
            help="Comma-separated: 'random' and/or pretraining checkpoints (last.pt of `cloudkit pretrain`).",
        ),
    ] = RANDOM_INIT,
    fractions: Annotated[
        str,
        typer.Option(
            "--fractions",
            help="Comma-separated percentages in (0, 100] of the labelled tiles.",
        ),
    ] = "1,5,10,25,50,100",
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
    device: opt.DeviceOption = Device.auto,
    amp: opt.Amp = None,
    workers: opt.WorkersOption = None,
) -> None:
    """Run the paper's label-fraction experiment: `cloudkit finetune` for every init x fraction, then score each best.pt on the test stores.

    Writes OUT/results.md (init, fraction, F1 and IoU of the positive class, OA, balanced OA) and OUT/results.json, updated after every run. Run the same command again to continue a killed grid.

    Example: cloudkit experiment train.zarr --test-store test.zarr --inits random,runs/moco/last.pt --fractions 1,10,100 --out runs/grid
    """
    from cloudkit.train.experiment import run_experiment

    cfg = ExperimentConfig(
        stores=tuple(stores),
        test_stores=tuple(test_stores),
        out=out,
        inits=parse_inits(inits),
        fractions=parse_fractions(fractions),
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
        device=device,
        amp=amp,
        workers=workers,
    )
    typer.echo(str(run_experiment(cfg)))
