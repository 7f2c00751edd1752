"""`cloudkit finetune`: train a cloud / shadow segmentation model on labelled tile stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cloudkit.api import finetune as train
from cloudkit.cli._finetune_options import FINETUNE_OPTIONS
from cloudkit.cli._options import defaults_from, out_option, stores_argument
from cloudkit.config import FinetuneConfig


@defaults_from(FinetuneConfig, shared=FINETUNE_OPTIONS)
def finetune(
    stores: Annotated[
        list[Path],
        stores_argument("Labelled tile stores made by `cloudkit tile` (e.g. with --scl-labels)."),
    ],
    out: Annotated[
        Path,
        out_option(
            "Run folder: best.pt (best val IoU), last.pt (every epoch, for --resume), "
            "metrics.jsonl."
        ),
    ],
    init: Annotated[
        str,
        typer.Option(
            "--init",
            help="'random', or a pretraining checkpoint (last.pt of `cloudkit pretrain`) whose encoder starts the model.",
        ),
    ],
    fraction: Annotated[
        float,
        typer.Option(
            "--fraction",
            help="Share in (0, 1] of the labelled tiles to use, drawn stratified on the cloudiness bins.",
        ),
    ],
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the run in --out from its last.pt (same options)."),
    ],
    **options: Any,
) -> None:
    """Fine-tune a segmentation model (ResNet-18 or --arch encoder + head) on labelled stores.

    The paper's protocol: a --fraction of the labelled tiles, drawn and split into train/val
    stratified on cloudiness; Adam; backbone frozen for --freeze-epochs (batch norm still
    adapts), then trained at --lr x --backbone-lr-scale; cosine schedule; random crops with
    flips; soft Dice + BCE (or Dice + CE); early stopping on the val loss. No-data pixels count
    nowhere.

    Prints the path of best.pt. Example: cloudkit finetune tiles.zarr --init runs/moco/last.pt
    --fraction 0.25 --out runs/ft
    """
    result = train(stores, out, init, fraction=fraction, quiet=False, resume=resume, **options)
    typer.echo(str(result.checkpoint))
