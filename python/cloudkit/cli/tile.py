"""`cloudkit tile`: Sentinel-2 products and datasets into a Zarr tile store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cloudkit.api import tile as tile_scenes
from cloudkit.cli._options import (
    Bands,
    Resolution,
    Workers,
    decode_option,
    defaults_from,
    parse_bands,
    scene_paths,
)
from cloudkit.config import Decode, TileOptions


@defaults_from(TileOptions)
def tile(
    # old-style defaults: click needs OUT required after the variadic SCENES
    scenes: list[Path] | None = typer.Argument(  # noqa: B008
        None,
        help="Products (.SAFE, band folders, GeoTIFFs), folders of products or dataset roots "
        "(CloudSEN12, WHUS2-CD+, SEN12MS).",
        show_default=False,
    ),
    out: str = typer.Argument(
        ...,
        help="Output tile store (.zarr), or s3://BUCKET/PREFIX.zarr; created if absent, "
        "appended to if not.",
    ),
    *,
    resolution: Resolution,
    tile_size: Annotated[int, typer.Option("--tile-size", help="Tile edge in pixels.")],
    overlap: Annotated[int, typer.Option("--overlap", help="Pixels shared by neighbouring tiles.")],
    workers: Workers,
    decode: Annotated[
        Decode, decode_option("Tiling decodes in full unless asked: training data stays exact.")
    ],
    bands: Bands,
    scl_labels: Annotated[
        bool,
        typer.Option(
            "--scl-labels",
            help="Store the Sen2Cor SCL layer of L2A products as labels (cloud/shadow); with "
            "--labels-from PEER, SCL votes first: its label where the peers agree on cloud or "
            "not, none where they disagree.",
        ),
    ],
    labels_from: Annotated[
        str | None,
        typer.Option(
            "--labels-from",
            help="Store a peer model's classes as labels: ukis-csmask (clear, cloud, cloud "
            "shadow; Apache-2.0), dl-l8s2-uv (clear, cloud; MIT) or s2cloudless (cloud where "
            "its probability > 0.4; CC BY-SA 4.0, and so are the labels); pip install "
            "'cloudkit\\[peers]'. Several joined by + vote: the first one's label where all "
            "agree on cloud or not, none where they disagree (ukis-csmask+dl-l8s2-uv). Or a "
            "folder of "
            "masks, one SCENE_mask.tif per scene as `cloudkit predict` writes them (any "
            "cloudkit model as teacher).",
            show_default=False,
        ),
    ],
    sample: Annotated[
        bool,
        typer.Option(
            "--sample",
            help="Tile the small L1C product that ships with cloudkit (no SCENES needed).",
        ),
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going",
            help="Go on with the next scene after a bad one; exit 1 at the end if any failed.",
        ),
    ] = False,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Spread the scenes over a Dask cluster, one scene per task, every worker "
            "committing into the one store (implies --keep-going): local:N starts N worker "
            "processes here, each with its share of the cores; tcp://HOST:PORT joins a running "
            "scheduler whose workers see the same paths (the store on a shared file system). "
            "pip install 'cloudkit\\[cluster]'.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Cut scenes into TILE_SIZE x TILE_SIZE tiles of all bands on one grid, with labels when present.

    Re-running on the same store skips scenes it already holds and redoes a scene that an
    interrupted run left unfinished. Any number of runs may write one store at once (on one
    machine or several sharing a file system): each scene is committed once.

    Example: cloudkit tile S2A_MSIL1C_*.SAFE tiles.zarr --resolution 10
    """
    from cloudkit.cli._progress import RichTileProgress, report_failures
    from cloudkit.pipeline.run import SKIPPED, Summary
    from cloudkit.tiler.writer import TILED

    paths = scene_paths(scenes, sample)
    with RichTileProgress() as progress:
        # failures come back in the result (--keep-going; a cluster tries every scene) and
        # are reported below
        result = tile_scenes(
            paths,
            out,
            cluster=cluster,
            keep_going=keep_going or cluster is not None,
            progress=progress,
            resolution=resolution,
            bands=parse_bands(bands),
            tile_size=tile_size,
            overlap=overlap,
            workers=workers,
            decode=decode,
            scl_labels=scl_labels,
            labels_from=labels_from,
        )
    summary = Summary(list(result.scenes))
    tiled = summary.with_status(TILED)
    seconds = sum(r.seconds for r in tiled)
    mb = sum(r.megabytes for r in tiled)
    typer.echo(
        f"{out}: {len(tiled)} scene(s) tiled ({sum(r.windows for r in tiled)} tiles, "
        f"{mb:.0f} MB of DN in {seconds:.1f} s), {len(summary.with_status(SKIPPED))} already "
        f"in the store, {len(summary.failed)} failed"
    )
    for r in tiled:
        check = (r.summary or {}).get("shadow_check")
        if check and check["shadow_pixels"]:
            typer.echo(
                f"  {r.scene_id}: the teacher's shadow checked against its clouds: "
                f"{check['removed_percent']:.1f} % of it removed (no cloud casts it)"
            )
        vote = (r.summary or {}).get("teacher_vote")
        if vote:
            typer.echo(
                f"  {r.scene_id}: {' and '.join(vote['teachers'])} disagree on cloud at "
                f"{100 * vote['disputed']:.1f} % of the pixels, left unlabelled"
            )
    report_failures(summary)
