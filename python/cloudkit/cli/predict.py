"""`cloudkit predict`: whole scenes to cloud-mask GeoTIFFs with a fine-tuned checkpoint, a
shipped model or a peer model."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from cloudkit.api import predict as predict_scenes
from cloudkit.cli._options import (
    DeviceChoice,
    Resolution,
    Workers,
    decode_option,
    defaults_from,
    scene_paths,
)
from cloudkit.config import Decode, Device, PredictOptions, Shadows
from cloudkit.geometry.sun import parse_sun_angles


class Precision(str, enum.Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


@defaults_from(PredictOptions)
def predict(
    scenes: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Products (.SAFE, band folders, GeoTIFFs) or folders of them.",
            show_default=False,
        ),
    ] = None,
    *,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            help="default: the model shipped with cloudkit. Or a checkpoint of `cloudkit "
            "finetune` (best.pt), or the name of another shipped model or of a peer model "
            "(ukis-csmask, s2cloudless: pip install 'cloudkit\\[peers]'); `cloudkit models` "
            "lists them.",
        ),
    ] = "default",
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", help="Folder for the masks (created if absent), or s3://BUCKET/PREFIX."
        ),
    ] = ".",
    resolution: Resolution,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Windows per forward pass.")
    ],
    device: DeviceChoice = Device.auto,
    precision: Annotated[
        Precision,
        typer.Option(
            "--precision",
            help="auto: bf16 autocast on CUDA, fp32 on the CPU. bf16 on the CPU pays off where "
            "it has native bf16 (AVX512-BF16, AMX).",
            case_sensitive=False,
        ),
    ] = Precision.auto,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (slow first window).")
    ] = False,
    window: Annotated[
        int | None,
        typer.Option(
            "--window", help="Window edge in pixels.", show_default="the model's tile size"
        ),
    ],
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap",
            help="Pixels shared by neighbouring windows, blended smoothly (at most half the "
            "window).",
            show_default="a sixth of the window, at most 32",
        ),
    ],
    probabilities: Annotated[
        bool,
        typer.Option("--probabilities", help="Also write a float32 probability band per class."),
    ],
    quicklook: Annotated[
        bool,
        typer.Option("--quicklook", help="Also write a PNG: true colour with the mask overlaid."),
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Predict scenes whose outputs already exist.")
    ],
    workers: Workers,
    decode: Annotated[
        Decode, decode_option("Predicting decodes the reduced levels: a mask is not a reflectance.")
    ],
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="Predict the small L1C product that ships with cloudkit (no SCENES needed).",
        ),
    ] = False,
    shadows: Annotated[
        Shadows,
        typer.Option(
            "--shadows",
            help="geometric: keep a cloud-shadow pixel only where a cloud of the scene casts "
            "it along the sun's direction (or one beyond the scene's edge could); model: keep "
            "every pixel the model calls shadow. The summary says what the check removed.",
            case_sensitive=False,
        ),
    ],
    sun_angles: Annotated[
        str | None,
        typer.Option(
            "--sun-angles",
            metavar="AZIMUTH,ZENITH",
            help="The sun's azimuth (clockwise from north) and zenith in degrees, for every "
            "scene. Default: each product's metadata, else computed from its acquisition "
            "time and place, else estimated from the mask.",
            show_default=False,
        ),
    ],
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Spread the scenes over a Dask cluster, one scene per task: local:N starts N "
            "worker processes here (each with its share of the cores; one GPU each when there "
            "are several), tcp://HOST:PORT joins a running scheduler whose workers see the "
            "same paths. pip install 'cloudkit\\[cluster]'.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Predict a cloud mask for each scene: SCENE_mask.tif (a Cloud-Optimised GeoTIFF of class
    codes, 255 outside the swath), SCENE.json (cloud, shadow and valid percentages, timings).

    Scenes whose outputs exist are skipped; a bad scene is reported and the next one goes on
    (exit code 1 at the end). A path that does not exist or holds no scene stops at once.

    Example: cloudkit predict S2B_MSIL1C_*.SAFE -o masks --quicklook (the default model), or
    cloudkit predict --sample (the product that ships with cloudkit).

    Your own model: cloudkit predict S2B_MSIL1C_*.SAFE --model run/best.pt -o masks

    A peer model runs through the same readers, windows and writer: cloudkit predict
    S2B_MSIL1C_*.SAFE --model ukis-csmask -o masks
    """
    from cloudkit.cli._progress import RichPredictProgress, report_failures
    from cloudkit.pipeline.run import SKIPPED, Summary
    from cloudkit.predict.writer import PREDICTED

    with RichPredictProgress() as progress:
        # every scene is tried; failures come back in the result and are reported below
        result = predict_scenes(
            scene_paths(scenes, sample),
            out,
            model,
            device=device.value,
            precision=precision.value,
            compile=compile_model,
            cluster=cluster,
            keep_going=True,
            progress=progress,
            resolution=resolution,
            window=window,
            overlap=overlap,
            batch_size=batch_size,
            workers=workers,
            decode=decode,
            probabilities=probabilities,
            quicklook=quicklook,
            overwrite=overwrite,
            shadows=shadows,
            sun_angles=parse_sun_angles(sun_angles) if sun_angles is not None else None,
        )
    summary = Summary(list(result.scenes))
    for r in summary.results:
        if r.status == PREDICTED:
            s = r.summary or {}  # a predicted scene has its summary
            typer.echo(
                f"{r.outputs.mask}: cloud {_pct(s['cloud_percent'])}, shadow "
                f"{_pct(s['shadow_percent'])}, valid {_pct(s['valid_percent'])} "
                f"({r.windows} windows in {r.seconds:.1f} s)"
            )
            check = s.get("shadow_check") or {}
            if check.get("removed_pixels"):
                typer.echo(
                    f"  shadow check: {check['removed_percent']:.1f} % of the model's shadow "
                    "removed (no cloud casts it)"
                )
            for warning in s.get("warnings", []):
                typer.echo(f"  warning: {warning}", err=True)
        elif r.status == SKIPPED:
            typer.echo(f"{r.outputs.mask}: exists, skipped (--overwrite predicts it again)")
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    report_failures(summary)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"
