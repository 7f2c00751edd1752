"""`cloudkit check`: read every chunk of tile stores and report each damaged tile."""

from __future__ import annotations

from typing import Annotated

import typer

from cloudkit.errors import StoreError


def check(
    stores: Annotated[
        list[str],
        typer.Argument(help="Tile stores made by `cloudkit tile`: folders or s3://BUCKET/PREFIX."),
    ],
) -> None:
    """Read every chunk of every array of each tile store (tiles, index and scene columns) and report all damage: an array's metadata that cannot be read, a chunk missing, or one that does not decode (a failed CRC-32C checksum, a cut file).

    Stores written by this cloudkit checksum every chunk and write every chunk of every array, so any change or loss is found; older stores are checked for what they can tell (chunks that do not decode, and lost tile chunks where they wrote them all). Exit code 1 when anything is damaged.

    Example: cloudkit check tiles.zarr s3://bucket/tiles.zarr
    """
    from cloudkit.io.store import INTEGRITY, damaged_tiles

    bad = 0
    for path in stores:
        try:
            reader, problems = damaged_tiles(path)
        except StoreError as err:  # not even openable: the one line says why; go on
            typer.echo(str(err), err=True)
            bad += 1
            continue
        for line in problems:
            typer.echo(line, err=True)
        if not reader.checksummed:
            kind = "no checksums (an older store)"
        elif reader.integrity == INTEGRITY:
            kind = "CRC-32C checksums, every chunk written"
        else:
            kind = "CRC-32C checksums, every tile chunk written"
        verdict = f"{len(problems)} problem(s)" if problems else "every chunk reads"
        typer.echo(f"{path}: {reader.num_tiles} tiles, {kind}: {verdict}")
        bad += bool(problems)
    if bad:
        raise StoreError(f"{bad} of {len(stores)} store(s) damaged (each problem is listed above)")
