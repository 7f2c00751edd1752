"""`cloudkit evaluate`: score a fine-tuned checkpoint, or a reference mask, on labelled stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudkit.api import evaluate as score
from cloudkit.cli._options import DeviceChoice
from cloudkit.config import Device, Shadows, TaskName
from cloudkit.errors import OptionError


def evaluate(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="[CKPT] STORE...",
            help="A checkpoint of `cloudkit finetune`, then the labelled tile stores to score it "
            "on. With --reference: only the stores.",
            show_default=False,
        ),
    ],
    reference: Annotated[
        str | None,
        typer.Option(
            "--reference",
            help="Score a reference instead of a checkpoint: a peer model run on the stores' "
            "own pixels ('ukis-csmask', 's2cloudless': pip install 'cloudkit\\[peers]'), 'scl' "
            "(each L2A scene's Sen2Cor scene classification) or a mask GeoTIFF in the scenes' "
            "CRS (class indices, or a probability with --threshold).",
            show_default=False,
        ),
    ] = None,
    task: Annotated[
        TaskName | None,
        typer.Option(
            "--task",
            help="With --reference: the classes to score (cloud, shadow, joint, multi). "
            "A checkpoint brings its own task.",
            case_sensitive=False,
            show_default="cloud",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="Probability masks: value >= threshold is the positive class (binary tasks).",
            show_default="0.5 for floating-point masks",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="JSON file for the metrics (written atomically).",
            show_default="<CKPT stem>.eval.json beside the checkpoint, or ./reference.eval.json",
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, help="Tiles per forward pass."),
    ] = 16,
    device: DeviceChoice = Device.auto,
    shadows: Annotated[
        Shadows,
        typer.Option(
            "--shadows",
            help="geometric: score the checkpoint's masks after predict's shadow check (each "
            "tile with its scene's sun angles), to see what the check changes; model: as the "
            "model predicts them.",
            case_sensitive=False,
        ),
    ] = Shadows.model,
) -> None:
    """Score a fine-tuned checkpoint (or a peer model, or a reference mask) against the labels
    of tile stores: per-class precision, recall, F1, IoU, overall and balanced accuracy,
    confusion matrix."""
    from rich.console import Console

    from cloudkit.eval.metrics import format_table

    if reference is None:
        if len(paths) < 2:
            raise OptionError(
                "expected a checkpoint and at least one store: cloudkit evaluate CKPT STORE... "
                "(or --reference ukis-csmask|s2cloudless|scl|MASK.tif STORE...)"
            )
        if task is not None or threshold is not None:
            raise OptionError(
                "--task and --threshold go with --reference; a checkpoint brings its own task"
            )
        checkpoint, stores = paths[0], paths[1:]
        target = out or checkpoint.with_name(f"{checkpoint.stem}.eval.json")
        result = score(
            stores,
            checkpoint=checkpoint,
            batch_size=batch_size,
            device=device.value,
            shadows=shadows.value,
            out=target,
        ).metrics
        title = f"{checkpoint} on {len(stores)} store(s), task {result['task']}"
    else:
        if shadows is not Shadows.model:
            raise OptionError("--shadows goes with a checkpoint; a reference is scored as it is")
        name = (task or TaskName.cloud).value
        target = out or Path("reference.eval.json")
        result = score(
            paths, reference=reference, task=name, threshold=threshold, out=target
        ).metrics
        title = f"reference {result['reference']} on {len(paths)} store(s), task {name}"
    console = Console()
    console.print(format_table({**result, "title": title}), end="", highlight=False, markup=False)
    check = result.get("shadow_check")
    if check:
        console.print(
            f"shadow check: {check['removed_pixels']} of {check['shadow_pixels']} predicted "
            f"shadow pixels removed ({check['removed_percent']:.1f} %): no cloud casts them",
            highlight=False,
        )
    console.print(f"{result['tiles']} tiles scored; metrics written to {target}", highlight=False)
