"""`cloudkit pretrain`: self-supervised pretraining (MoCo v2 or DeepCluster v2) on tile stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudkit.api import pretrain as train
from cloudkit.cli._options import MinValid, defaults_from, out_option, stores_argument
from cloudkit.config import Arch, Device, Method, PretrainConfig, Views, parse_int_list

_HP = "Hyper-parameters (default: the method's, from the paper)"


@defaults_from(PretrainConfig)
def pretrain(
    stores: Annotated[
        list[Path],
        stores_argument("Tile stores made by `cloudkit tile` (same bands and tile size)."),
    ],
    out: Annotated[
        Path,
        out_option(
            "Run folder: last.pt (checkpoint, rewritten atomically every epoch) and metrics.jsonl."
        ),
    ],
    method: Annotated[
        Method,
        typer.Option(
            "--method",
            help="moco: MoCo v2 (two augmentations of a tile, queue of negatives). "
            "deepcluster: DeepCluster v2 (k-means prototypes re-fitted every epoch).",
            case_sensitive=False,
        ),
    ],
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            help="Epochs to train in all (a resumed run counts those done).",
            rich_help_panel=_HP,
            show_default="100",
        ),
    ],
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Samples per step and process (per GPU under torchrun).",
            rich_help_panel=_HP,
            show_default="moco 64, deepcluster 128",
        ),
    ],
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            help="Peak learning rate.",
            rich_help_panel=_HP,
            show_default="moco 0.03 (SGD), deepcluster 0.6 (LARS)",
        ),
    ],
    weight_decay: Annotated[
        float | None,
        typer.Option(
            "--weight-decay",
            help="Weight decay (LARS: none on biases and norms).",
            rich_help_panel=_HP,
            show_default="moco 1e-4, deepcluster 1e-6",
        ),
    ],
    momentum: Annotated[
        float | None,
        typer.Option(
            "--momentum",
            help="Optimizer momentum (SGD or LARS).",
            rich_help_panel=_HP,
            show_default="0.9",
        ),
    ],
    queue_size: Annotated[
        int | None,
        typer.Option(
            "--queue-size",
            help="MoCo: negative keys kept; a multiple of batch size x processes.",
            rich_help_panel=_HP,
            show_default="65536",
        ),
    ],
    moco_momentum: Annotated[
        float | None,
        typer.Option(
            "--moco-momentum",
            help="MoCo: EMA momentum of the key encoder.",
            rich_help_panel=_HP,
            show_default="0.999",
        ),
    ],
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            help="Softmax temperature of the loss.",
            rich_help_panel=_HP,
            show_default="moco 0.07, deepcluster 0.1",
        ),
    ],
    prototypes: Annotated[
        str | None,
        typer.Option(
            "--prototypes",
            help="DeepCluster: prototypes (k-means clusters) per head, one number per head, comma-separated.",
            rich_help_panel=_HP,
            show_default="3000,3000,3000",
        ),
    ],
    warmup_epochs: Annotated[
        int | None,
        typer.Option(
            "--warmup-epochs",
            help="Epochs of linear learning-rate warm-up before the cosine decay.",
            rich_help_panel=_HP,
            show_default="moco 0, deepcluster 11",
        ),
    ],
    final_lr: Annotated[
        float | None,
        typer.Option(
            "--final-lr",
            help="Learning rate the cosine decay ends at.",
            rich_help_panel=_HP,
            show_default="moco 0, deepcluster 0.0006",
        ),
    ],
    views: Annotated[
        Views,
        typer.Option(
            "--views",
            help="two-augmentations: two random views of one tile. cloudiness-pair (deepcluster, "
            "needs labelled stores): views of two tiles of the same cloudiness bin.",
            case_sensitive=False,
        ),
    ],
    crop: Annotated[
        int | None,
        typer.Option(
            "--crop",
            min=1,
            help="View size in pixels (random crops of the tiles).",
            show_default="min(256, tile size)",
        ),
    ],
    any_bands: Annotated[
        bool,
        typer.Option(
            "--any-bands/--store-bands",
            help="Pretrain an encoder of the 13 band slots (stores may hold different bands): "
            "the two views of a tile keep different random band subsets, so the features "
            "learnt do not depend on which bands a product has. --store-bands: exactly the "
            "stores' bands.",
        ),
    ],
    arch: Annotated[
        Arch,
        typer.Option(
            "--arch",
            help="The encoder: resnet18 (the paper's; resnet18_narrow fine-tunes it under a "
            "narrower U-Net decoder), or a light torchvision network (mobilenet_v3_large, "
            "efficientnet_b0, regnet_y_400mf; no pretrained weights).",
            case_sensitive=False,
        ),
    ],
    min_valid: MinValid,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            help="DataLoader worker processes per training process; 0 loads in the training process.",
            show_default="cores per process - 1, at most 8",
        ),
    ],
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="Seed of weights, shuffling and views; on CPU the same seed gives the same run bit for bit.",
        ),
    ],
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the run in --out from its last.pt. Options left unset take the checkpoint's values.",
        ),
    ],
    device: Annotated[
        Device,
        typer.Option(
            "--device",
            help="auto: CUDA when available (one GPU per process under torchrun), else CPU.",
            case_sensitive=False,
        ),
    ],
    compile_: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile the encoders.",
            show_default="on with CUDA, off on CPU",
        ),
    ],
    amp: Annotated[
        bool | None,
        typer.Option(
            "--amp/--no-amp",
            help="bfloat16 autocast.",
            show_default="on with CUDA, off on CPU",
        ),
    ],
) -> None:
    """Pretrain an encoder (ResNet-18, or --arch) on tile stores with MoCo v2 or DeepCluster v2.

    Every epoch writes OUT/last.pt (the whole model, the encoder for fine-tuning, optimizer,
    schedule and RNG states; atomically, so a killed run can always --resume) and appends a
    line to OUT/metrics.jsonl: loss, learning rate, images/s, embedding spread (with a loud
    warning when it collapses), kNN accuracy on cloudiness bins when the stores have labels,
    and k-means cluster balance (DeepCluster).

    Several GPUs: torchrun --nproc-per-node 4 -m cloudkit.cli pretrain STORE ...
    (DistributedDataParallel, one GPU per process).

    Example: cloudkit pretrain tiles.zarr --method deepcluster --out runs/dc
    """
    from cloudkit.train.distributed import from_env

    result = train(
        stores,
        out,
        method,
        quiet=False,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        queue_size=queue_size,
        moco_momentum=moco_momentum,
        temperature=temperature,
        prototypes=parse_int_list(prototypes, option="--prototypes"),
        warmup_epochs=warmup_epochs,
        final_lr=final_lr,
        views=views,
        crop=crop,
        any_bands=any_bands,
        arch=arch,
        min_valid=min_valid,
        workers=workers,
        seed=seed,
        resume=resume,
        device=device,
        compile=compile_,
        amp=amp,
    )
    if from_env().is_main:  # one line under torchrun, not one per process
        typer.echo(str(result.checkpoint))
