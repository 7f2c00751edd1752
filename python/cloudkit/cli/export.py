"""`cloudkit export`: a fine-tuned checkpoint as cloudkit ships models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def export(
    checkpoint: Annotated[
        Path, typer.Argument(help="best.pt or last.pt of `cloudkit finetune`.", show_default=False)
    ],
    out: Annotated[Path, typer.Argument(help="The model file to write.", show_default=False)],
    resolution: Annotated[
        float | None,
        typer.Option(
            "--resolution",
            min=0.0,
            help="Pixel size in metres the model works at by default: `cloudkit predict` "
            "reads finer products at it (coarser ones at their own).",
            show_default="the product's finest",
        ),
    ] = None,
) -> None:
    """Write a fine-tuned model as cloudkit ships them: weights in half precision, what
    prediction needs, no optimiser; prints its SHA-256 (what `models/zoo.py` records).

    Example: cloudkit export runs/ft/best.pt default.pt --resolution 20
    """
    from cloudkit.models.checkpoint import export_model
    from cloudkit.models.zoo import file_sha256

    written = export_model(checkpoint, out, resolution=resolution)
    size = written.stat().st_size / 1e6
    typer.echo(f"{written}: {size:.1f} MB, sha256 {file_sha256(written)}")
