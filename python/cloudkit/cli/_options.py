"""Option types shared by several commands."""

from __future__ import annotations

from typing import Annotated

import typer

Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="Threads for decoding and for the Rust kernels (default: CLOUDKIT_NUM_THREADS or all cores).",
    ),
]
Resolution = Annotated[
    float | None,
    typer.Option(
        "--resolution",
        help="Target pixel size in metres (10, 20 or 60 for Sentinel-2). Default: the finest grid among the band files.",
    ),
]
Bands = Annotated[
    str | None,
    typer.Option(
        "--bands",
        help="Comma-separated ESA band names to keep, e.g. B02,B03,B04,B08. Default: every band of the product.",
    ),
]


def parse_bands(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    from cloudkit.bands import esa_order
    from cloudkit.errors import BandMismatchError

    names = [v.strip().upper() for v in value.split(",") if v.strip()]
    try:
        return tuple(esa_order(names))
    except KeyError as err:
        raise BandMismatchError(f"--bands: {err.args[0]}") from None
