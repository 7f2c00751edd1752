"""`cloudkit check`: read every chunk of tile stores and report each damaged tile."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def check(
    stores: Annotated[list[Path], typer.Argument(help="Tile stores made by `cloudkit tile`.")],
) -> None:
    """Read every chunk of each tile store and report every damaged tile: a chunk missing, or one that does not decode (a failed CRC-32C checksum, a cut file).

    Stores written by this cloudkit checksum every chunk and write every tile's chunks, so any change or loss is found; older stores are checked for chunks that do not decode. Exit code 1 when anything is damaged.

    Example: cloudkit check tiles.zarr
    """
    from cloudkit.errors import StoreError
    from cloudkit.io.store import damaged_tiles

    bad = 0
    for path in stores:
        reader, problems = damaged_tiles(path)
        for line in problems:
            typer.echo(line, err=True)
        kind = "CRC-32C checksums" if reader.checksummed else "no checksums (an older store)"
        verdict = f"{len(problems)} problem(s)" if problems else "every chunk reads"
        typer.echo(f"{path}: {reader.num_tiles} tiles, {kind}: {verdict}")
        bad += bool(problems)
    if bad:
        raise StoreError(f"{bad} of {len(stores)} store(s) damaged (each problem is listed above)")
