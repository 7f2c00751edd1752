"""The options of the fine-tuning protocol, shared by `cloudkit finetune` and `cloudkit experiment`.

One entry per field of ``config.FinetuneOptions`` (which holds their defaults); a command takes
them with ``defaults_from(..., shared=FINETUNE_OPTIONS)`` and receives them as ``**options``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cloudkit.cli._options import DeviceChoice, MinValid
from cloudkit.config import Arch, BestBy, Head, ShadowPlacement, TaskName, Veils

_HP = "Fine-tuning (default: the paper's protocol)"

FINETUNE_OPTIONS: dict[str, Any] = {
    "task": Annotated[
        TaskName,
        typer.Option(
            "--task",
            help="cloud: clear vs cloud (thick or thin). shadow: shadow vs not. joint: cloud or "
            "shadow vs clear. multi: clear, thick, thin, shadow.",
            case_sensitive=False,
        ),
    ],
    "head": Annotated[
        Head,
        typer.Option(
            "--head",
            help="unet: U-Net decoder on the usual strided ResNet-18 (fast). light: feature "
            "pyramid to 1/4 resolution, about half the U-Net's compute (fastest whole-scene "
            "predict, coarser edges). paper: every stride 1 + Conv3x3/InstanceNorm/Conv1x1, the "
            "paper's head; roughly 300x the compute of a ResNet-18 per pixel (about 600 GFLOP "
            "per 224 px window): use small --crop.",
            case_sensitive=False,
        ),
    ],
    "epochs": Annotated[
        int,
        typer.Option(
            "--epochs",
            min=1,
            help="Most epochs (early stopping may end sooner).",
            rich_help_panel=_HP,
        ),
    ],
    "batch_size": Annotated[
        int, typer.Option("--batch-size", min=1, help="Crops per step.", rich_help_panel=_HP)
    ],
    "crop": Annotated[
        int | None,
        typer.Option(
            "--crop",
            min=1,
            help="Training crop edge in pixels (random windows of the tiles, with flips).",
            show_default="min(256, tile size)",
            rich_help_panel=_HP,
        ),
    ],
    "lr": Annotated[
        float,
        typer.Option(
            "--lr", help="Adam learning rate of the head (peak of the cosine).", rich_help_panel=_HP
        ),
    ],
    "backbone_lr_scale": Annotated[
        float,
        typer.Option(
            "--backbone-lr-scale",
            help="The backbone's learning rate, once unfrozen, is --lr times this.",
            rich_help_panel=_HP,
        ),
    ],
    "freeze_epochs": Annotated[
        int,
        typer.Option(
            "--freeze-epochs",
            min=0,
            help="Epochs with the backbone frozen (its batch norm statistics still adapt).",
            rich_help_panel=_HP,
        ),
    ],
    "patience": Annotated[
        int,
        typer.Option(
            "--patience",
            min=0,
            help="Stop after this many epochs without a lower val loss; 0 never stops early.",
            rich_help_panel=_HP,
        ),
    ],
    "best_by": Annotated[
        BestBy,
        typer.Option(
            "--best-by",
            help="Which epoch is best.pt: iou, the highest val IoU (the paper's); loss, the "
            "lowest val loss (steadier when the val set is a few tiles).",
            case_sensitive=False,
            rich_help_panel=_HP,
        ),
    ],
    "val_fraction": Annotated[
        float,
        typer.Option(
            "--val-fraction",
            help="Share of the drawn tiles kept for validation (stratified on cloudiness).",
            rich_help_panel=_HP,
        ),
    ],
    "min_valid": MinValid,
    "seed": Annotated[
        int,
        typer.Option(
            "--seed",
            help="Seed of the fraction, the split, the weights, the shuffle and the crops.",
        ),
    ],
    "split_seed": Annotated[
        int | None,
        typer.Option(
            "--split-seed",
            help="Seed of the tiles drawn and of the train/val split alone: runs of several "
            "--seed that share it are validated on the same tiles, so their val losses compare.",
            show_default="--seed",
        ),
    ],
    "device": DeviceChoice,
    "amp": Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp", help="bfloat16 autocast (CUDA only).", show_default="on with CUDA"
        ),
    ],
    "any_bands": Annotated[
        bool,
        typer.Option(
            "--any-bands/--store-bands",
            help="Train a model that takes any subset of the 13 bands holding B02 B03 B04 "
            "(stores may hold different bands; every crop keeps a random realistic subset). "
            "--store-bands: exactly the stores' bands.",
            rich_help_panel=_HP,
        ),
    ],
    "arch": Annotated[
        Arch | None,
        typer.Option(
            "--arch",
            help="The encoder of a model from random weights: resnet18, resnet18_narrow (under "
            "a narrower U-Net decoder), or a light torchvision network (mobilenet_v3_large, "
            "efficientnet_b0, regnet_y_400mf). With --init, the checkpoint's (naming another is "
            "an error).",
            show_default="the --init checkpoint's; resnet18 from random weights",
            case_sensitive=False,
            rich_help_panel=_HP,
        ),
    ],
    "synthetic": Annotated[
        float,
        typer.Option(
            "--synthetic",
            min=0.0,
            max=1.0,
            help="Share of training crops that get synthetic clouds, thin clouds and cast "
            "shadows with exact labels (and, less often, other surface brightness, snow and "
            "top-of-atmosphere haze).",
            rich_help_panel=_HP,
        ),
    ],
    "synthetic_shadows": Annotated[
        ShadowPlacement,
        typer.Option(
            "--synthetic-shadows",
            help="Where a synthetic cloud's shadow falls: sun, away from the tile's scene's sun "
            "by cloud height x tan(zenith) (none when that is off the crop; random where the "
            "store recorded no sun); random, any direction up to half a crop away.",
            case_sensitive=False,
            rich_help_panel=_HP,
        ),
    ],
    "synthetic_veils": Annotated[
        Veils,
        typer.Option(
            "--synthetic-veils",
            help="How synthetic thin clouds look: water, thin water clouds labelled thin from "
            "0.3 opaque (the shipped model's); ice, cirrus, bright in B10 and darker in the "
            "SWIR than the thick clouds, labelled from 0.2, drawn more often.",
            case_sensitive=False,
            rich_help_panel=_HP,
        ),
    ],
    "hard_negatives": Annotated[
        float,
        typer.Option(
            "--hard-negatives",
            min=0.0,
            help="Show tiles rich in clear ground that is dark (vegetation, water, shade, burn "
            "scars) or bright (soil, desert, snow) more often: each is seen 1 + round(W x its "
            "share of such pixels) times per epoch.",
            show_default="0: every tile once",
            rich_help_panel=_HP,
        ),
    ],
    "resolutions": Annotated[
        str | None,
        typer.Option(
            "--resolutions",
            help="Pixel sizes in metres the crops are seen at, e.g. 20,60: each crop is "
            "resampled to one drawn in that range.",
            show_default="the stores' own",
            rich_help_panel=_HP,
        ),
    ],
    "class_weights": Annotated[
        str | None,
        typer.Option(
            "--class-weights",
            help="How much a pixel of each class counts in the cross-entropy, one number per "
            "class of --task in its order, e.g. 1,1,2,3 for multi (clear, thick, thin, "
            "shadow): rare classes that a model otherwise leaves out weigh more.",
            show_default="all alike",
            rich_help_panel=_HP,
        ),
    ],
    "workers": Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            help="DataLoader worker processes; 0 loads in the training process.",
            show_default="cores - 1, at most 8",
        ),
    ],
}
