"""`cloudkit experiment`: the label-fraction grid (fine-tune every init x fraction, evaluate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cloudkit.cli._finetune_options import FINETUNE_OPTIONS
from cloudkit.cli._options import defaults_from, out_option, stores_argument
from cloudkit.config import ExperimentConfig, parse_fractions, parse_inits


@defaults_from(ExperimentConfig, shared=FINETUNE_OPTIONS)
def experiment(
    stores: Annotated[
        list[Path],
        stores_argument("Labelled training tile stores (the fractions are drawn from them)."),
    ],
    test_stores: Annotated[
        list[Path],
        typer.Option(
            "--test-store",
            help="Labelled test store (repeat the option for several); every run is scored on them.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        out_option("Folder: one run folder per init x fraction, results.md and results.json."),
    ],
    inits: Annotated[
        str,
        typer.Option(
            "--inits",
            help="Comma-separated: 'random' and/or pretraining checkpoints (last.pt of `cloudkit pretrain`).",
        ),
    ],
    fractions: Annotated[
        str,
        typer.Option(
            "--fractions",
            help="Comma-separated percentages in (0, 100] of the labelled tiles.",
        ),
    ],
    **options: Any,
) -> None:
    """Run the paper's label-fraction experiment: `cloudkit finetune` for every init x fraction, then score each best.pt on the test stores.

    Writes OUT/results.md (init, fraction, F1 and IoU of the positive class, OA, balanced OA)
    and OUT/results.json, updated after every run. Run the same command again to continue a
    killed grid.

    Example: cloudkit experiment train.zarr --test-store test.zarr --inits
    random,runs/moco/last.pt --fractions 1,10,100 --out runs/grid
    """
    from cloudkit.train.experiment import run_experiment

    cfg = ExperimentConfig(
        stores=tuple(stores),
        test_stores=tuple(test_stores),
        out=out,
        inits=parse_inits(inits),
        fractions=parse_fractions(fractions),
        **options,
    )
    typer.echo(str(run_experiment(cfg)))
