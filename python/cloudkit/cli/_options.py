"""Option types shared by several commands, and the defaults of options from the configs."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from cloudkit.bands import esa_order
from cloudkit.config import Device
from cloudkit.errors import BandMismatchError
from cloudkit.sample.product import sample_product

Command = TypeVar("Command", bound=Callable[..., None])

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
MinValid = Annotated[
    float,
    typer.Option(
        "--min-valid",
        min=0.0,
        max=1.0,
        help="Skip tiles with a smaller fraction of valid pixels.",
    ),
]
DeviceChoice = Annotated[
    Device,
    typer.Option("--device", help="auto: CUDA when available, else CPU.", case_sensitive=False),
]


def decode_option(default_note: str) -> Any:
    """``--decode full|reduced`` (tile and predict differ only in their default)."""
    return typer.Option(
        "--decode",
        help="How bands finer than --resolution are read: full decodes every pixel and "
        "averages (exact); reduced decodes a JPEG 2000 file's coarser resolution level "
        f"(about a quarter of the cost, close to the average but not equal). {default_note}",
        case_sensitive=False,
    )


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

    names = [v.strip().upper() for v in value.split(",") if v.strip()]
    try:
        return tuple(esa_order(names))
    except KeyError as err:
        raise BandMismatchError(f"--bands: {err.args[0]}") from None


def stores_argument(help: str) -> Any:
    """The tile stores a training command reads (``STORE...``)."""
    return typer.Argument(metavar="STORE", help=help, show_default=False)


def out_option(help: str) -> Any:
    """The folder a command writes into (``--out`` / ``-o``, required)."""
    return typer.Option("--out", "-o", help=help, show_default=False)


def defaults_from(
    config: type, shared: Mapping[str, Any] | None = None
) -> Callable[[Command], Command]:
    """Give a command the defaults of ``config`` (a dataclass of cloudkit.config, one field per
    option), so that the CLI never repeats one: each parameter written without a default takes
    the default of the field of its name (``compile_`` is ``compile``); a tuple becomes its
    comma-separated text, which the option's parser reads back.

    ``shared`` (field name -> ``Annotated`` option type) appends options that several commands
    share; they reach the command's ``**options``.
    """
    defaults = {f.name: f.default for f in fields(config) if f.default is not MISSING}

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=option)
            for name, option in (shared or {}).items()
        ]
        params = []
        for param in own + added:
            name = param.name.rstrip("_")
            if param.default is param.empty and name in defaults:
                param = param.replace(default=_as_text(defaults[name]))
            params.append(param)
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return command

    return decorate


def _as_text(default: Any) -> Any:
    if not isinstance(default, tuple):
        return default
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)


def scene_paths(scenes: list[Path] | None, sample: bool) -> list[Path]:
    """SCENES, plus the product that ships with cloudkit with ``--sample``; at least one."""
    paths = list(scenes or [])
    if sample:
        paths.append(sample_product())
    if not paths:
        raise typer.BadParameter("give at least one scene, or --sample", param_hint="SCENES")
    return paths
