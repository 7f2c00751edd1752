"""Fine-tuned models scored on the recipe's validation tiles, as `cloudkit finetune` scores
its epochs: val loss, mean IoU and each class's IoU.

    python benches/validation_scores.py STORES MODEL [MODEL ...] [--seed 0] [--batch-size 8]
                                        [--bands B02,B03,B04] [--json OUT]

STORES is a recipe OUT's ``stores/`` (recipes/default_model.py); MODEL a best.pt/last.pt of
`cloudkit finetune`, an exported model, or ``default`` (the shipped weights). The tiles are
those ``finetune --split-seed SEED`` holds out (the recipe validates every seed on seed 0's),
so models trained on the rest of the same stores compare on data none of them trained on,
and the shipped model can be chosen without looking at a scoring set. The val loss is a mean
over batches (its Dice term is one per batch), so ``--batch-size`` is the fine-tuning's (8 in
the recipe at full size, 4 at ``--size quick``). ``--bands`` scores the same tiles with only
those bands present (the others as an any-band model sees a band a product lacks), e.g.
true colour, as the CloudSEN12 patches are.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch

from cloudkit.config import FinetuneConfig
from cloudkit.eval.metrics import class_metrics
from cloudkit.models.band_slots import SLOTS
from cloudkit.models.checkpoint import load_finetuned
from cloudkit.models.zoo import shipped_model, verified_weights
from cloudkit.train.distributed import Dist
from cloudkit.train.finetune import FineTuning, val_figures

#: the recipe's labelled stores, in its order (the split depends on it)
STORES = ("t29unu", "sahara", "t19udp-preview", "bigearthnet", "eolearn")


def validation_run(stores: Path, seed: int, batch_size: int, out: Path) -> FineTuning:
    """A fine-tuning of the recipe's options on ``stores``, only to hold its val tiles."""
    cfg = FinetuneConfig(
        stores=tuple(stores / f"{name}.zarr" for name in STORES),
        out=out,
        task="multi",
        any_bands=True,
        epochs=1,
        batch_size=batch_size,
        crop=128,
        seed=seed,
        workers=0,
        val_fraction=0.1,
    )
    return FineTuning(cfg, device=torch.device("cpu"), dist=Dist())


def model_path(name: str) -> Path:
    """The checkpoint file of MODEL: a path, or a shipped model's verified weights."""
    shipped = shipped_model(name)
    return verified_weights(shipped) if shipped and not Path(name).exists() else Path(name)


def band_list(value: str) -> tuple[str, ...]:
    bands = tuple(value.split(","))
    unknown = [band for band in bands if band not in SLOTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"not Sentinel-2 bands: {','.join(unknown)}")
    return bands


class OnlyBands:
    """A loader of any-band tiles whose other band slots read as absent (NaN)."""

    def __init__(self, loader: Iterable[dict], bands: Sequence[str]) -> None:
        self.loader = loader
        self.absent = [slot for slot, band in enumerate(SLOTS) if band not in bands]

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            image = batch["image"].clone()
            image[:, self.absent] = float("nan")
            yield {**batch, "image": image}


def scores(run: FineTuning, model_path: Path) -> dict[str, float]:
    """What finetune records per epoch, and each class's IoU, from one pass over the tiles."""
    _, model = load_finetuned(model_path)
    run.model = model.float()
    val_loss, confusion = run.validation_pass()
    figures = val_figures(val_loss, confusion, run.task)
    per_class = class_metrics(confusion, run.task.classes)["per_class"]
    figures.update({f"iou {name}": per_class[name]["iou"] for name in run.task.classes})
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", type=Path)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--seed", type=int, default=0, help="whose split (finetune --split-seed)")
    parser.add_argument("--batch-size", type=int, default=8, help="the fine-tuning's")
    parser.add_argument("--bands", type=band_list, help="only these present, e.g. B02,B03,B04")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = validation_run(args.stores, args.seed, args.batch_size, Path(tmp))
        print(f"{len(run.val_idx)} validation tiles of seed {args.seed}: {run.val_idx.tolist()}")
        if args.bands:
            run.val_loader = OnlyBands(run.val_loader, args.bands)
            print("bands present: " + ",".join(args.bands))
        for name in args.models:
            results[name] = scores(run, model_path(name))
            print(name + ": " + ", ".join(f"{k} {v:.4f}" for k, v in results[name].items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
