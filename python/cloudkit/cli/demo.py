"""`cloudkit demo`: the whole method on a synthetic sample, printed as the commands it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudkit.cli._options import DeviceChoice
from cloudkit.config import Device
from cloudkit.errors import OptionError
from cloudkit.sample.demo import SIZES, run_demo


def demo(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for everything the demo writes."),
    ] = Path("cloudkit-demo"),
    device: DeviceChoice = Device.auto,
    size: Annotated[
        str,
        typer.Option(
            "--size",
            help="full: a few minutes on 2 CPU cores. quick: a smaller sample and fewer "
            "epochs (the test suite's).",
        ),
    ] = "full",
) -> None:
    """Run the whole method on a synthetic sample, printing each cloudkit command as it starts.

    Tiles two synthetic L1C products whose classes are known (one to learn from, one held out), pretrains DeepCluster and MoCo encoders, fine-tunes a cloud model with 25 % of the labels from random weights and from each encoder, scores each on the held-out product beside the all-clear and all-cloud masks, and predicts the held-out product with the best of them and with the default model (mask, quicklook, JSON).

    Run it again to finish an interrupted demo: finished steps are skipped.

    Example: cloudkit demo --out demo
    """
    if size not in SIZES:
        raise OptionError(f"--size {size}: expected one of {', '.join(SIZES)}")
    # each step through the entry point that runs this command: `main` (cli/__init__.py)
    run_demo(out, ctx.obj["main"], device=device.value, size=size)
