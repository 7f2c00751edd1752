"""`cloudkit demo`: the whole method on a synthetic sample, as the commands a user would type.

1. Two synthetic L1C products (`cloudkit.sample.synthetic`), each with its exact classes as a mask:
   one to learn from, one held out for scoring.
2. ``cloudkit tile`` both at 20 m, the masks as labels (``--labels-from``).
3. ``cloudkit pretrain`` DeepCluster and MoCo on the training store (labels unused).
4. ``cloudkit experiment``: fine-tuning with 25 % of the labels from random weights and from
   each pretrained encoder, each scored on the held-out store (the paper's comparison).
5. ``cloudkit predict`` the held-out product with the best of them, and with the default model.
6. A table of the scores beside the all-clear and all-cloud masks, and where everything is.

Each command line is printed before it runs, so the demo is also a tutorial. A step whose
output exists is continued or skipped, so running it again finishes an interrupted demo.
"""

from __future__ import annotations

import functools
import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudkit.errors import CloudkitError
from cloudkit.files.disk import require_writable

SYNTHETIC_NOTE = (
    "The sample is synthetic: made-up surfaces (water, vegetation, soil, snow), cumulus with "
    "cast shadows and a cirrus veil, written as Sentinel-2 L1C products whose classes are "
    "known exactly (cloudkit/sample/synthetic.py). For real scenes: Sentinel-2 products from the "
    "Copernicus Data Space Ecosystem; labelled sets such as CloudSEN12 or WHUS2-CD+ tile "
    "with `cloudkit tile DATASET_ROOT`."
)
LABEL_PERCENT = 25


@dataclass(frozen=True)
class DemoSize:
    """How big a demo: product edge at 10 m, epochs of pretraining and fine-tuning."""

    size_10m: int
    pretrain_epochs: int
    finetune_epochs: int


SIZES = {
    "full": DemoSize(size_10m=1152, pretrain_epochs=5, finetune_epochs=24),
    "quick": DemoSize(size_10m=960, pretrain_epochs=3, finetune_epochs=30),
}


class DemoStepFailed(CloudkitError):
    """A command of the demo exited with an error (its message is printed above)."""


def run_demo(
    out: Path, cli: Callable[[list[str]], int], *, device: str = "auto", size: str = "full"
) -> dict[str, Any]:
    """Run every step into ``out``, each command through ``cli`` (argv in, exit code out:
    ``cloudkit.cli.main``, in this process); returns the closing table's rows and the paths
    written."""
    from cloudkit.sample.synthetic import write_l1c_safe

    run = functools.partial(_run, cli)
    scale = SIZES[size]
    out = require_writable(Path(out), "--out")
    print(SYNTHETIC_NOTE + "\n", flush=True)
    labels = out / "labels"
    print(f"writing the synthetic sample into {out / 'scenes'} (classes in {labels})", flush=True)
    train_scene = write_l1c_safe(
        out / "scenes", size_10m=scale.size_10m, seed=1, tile_id="T31TCJ", labels=labels
    ).path
    test_scene = write_l1c_safe(
        out / "scenes",
        size_10m=scale.size_10m,
        seed=2,
        tile_id="T31TDJ",
        sensing="20230702T104031",
        labels=labels,
    ).path

    stores = {"train": out / "train.zarr", "test": out / "test.zarr"}
    for name, scene in (("train", train_scene), ("test", test_scene)):
        run("tile", scene, stores[name], "--resolution", "20", "--tile-size", "64",
             "--labels-from", labels)  # fmt: skip

    common = ["--device", device, "--workers", "0", "--seed", "0"]
    pretrained = {}
    for method, extra in (
        ("deepcluster", ["--prototypes", "16,16", "--warmup-epochs", "1"]),
        ("moco", ["--queue-size", "256"]),
    ):
        run_dir = out / f"pretrain-{method}"
        resume = ["--resume"] if (run_dir / "last.pt").is_file() else []
        run("pretrain", stores["train"], "--method", method, "--out", run_dir,
             "--epochs", str(scale.pretrain_epochs), "--batch-size", "32", "--crop", "48",
             *extra, *common, *resume)  # fmt: skip
        pretrained[method] = run_dir / "last.pt"

    experiment = out / "experiment"
    inits = ",".join(["random", *(str(p) for p in pretrained.values())])
    run("experiment", stores["train"], "--test-store", stores["test"], "--inits", inits,
         "--fractions", str(LABEL_PERCENT), "--task", "cloud",
         "--epochs", str(scale.finetune_epochs), "--batch-size", "8", "--crop", "64",
         "--lr", "1e-3", "--freeze-epochs", "2", "--backbone-lr-scale", "0.5",
         "--patience", "0", "--out", experiment, *common)  # fmt: skip
    results = json.loads((experiment / "results.json").read_text())["results"]
    best = max(results, key=lambda r: r["f1"])

    masks = {"best": out / "masks-best", "default": out / "masks-default"}
    run("predict", test_scene, "--model", Path(best["run"]) / "best.pt", "-o", masks["best"],
         "--quicklook", "--device", device)  # fmt: skip
    run("predict", test_scene, "-o", masks["default"], "--quicklook", "--device", device)

    rows = [{"method": r["init"], "f1": r["f1"], "iou": r["iou"]} for r in results]
    rows += _trivial_masks(experiment / Path(best["run"]).name / "eval.json")
    written = {
        "sample": out / "scenes",
        "tile stores": out / "*.zarr",
        "pretraining (metrics.png)": out / "pretrain-*",
        "label-fraction results (results.md, results.png)": experiment,
        "masks of the best model (COG, quicklook, JSON)": masks["best"],
        "masks of the default model": masks["default"],
    }
    print("\n" + closing_table(rows, best["init"]), flush=True)
    for what, path in written.items():
        print(f"  {what}: {path}")
    return {"rows": rows, "best": best["init"], "paths": {k: str(v) for k, v in written.items()}}


def closing_table(rows: list[dict[str, Any]], best: str) -> str:
    lines = [
        f"Cloud masks of the held-out product, fine-tuned with {LABEL_PERCENT} % of the labels:",
        f"  {'method':<22} {'F1 (cloud)':>10} {'IoU (cloud)':>11}",
    ]
    for r in rows:
        mark = "  <- best, used for masks-best" if r["method"] == best else ""
        lines.append(f"  {r['method']:<22} {r['f1']:>10.3f} {r['iou']:>11.3f}{mark}")
    return "\n".join(lines)


def _trivial_masks(eval_json: Path) -> list[dict[str, Any]]:
    """The all-clear and all-cloud masks scored on the same pixels (from the truth counts of
    an evaluation's confusion matrix, whose rows are the true classes)."""
    confusion = json.loads(eval_json.read_text())["confusion_matrix"]
    clear, cloud = (sum(row) for row in confusion)
    share = cloud / max(1, clear + cloud)
    return [
        {"method": "all clear", "f1": 0.0, "iou": 0.0},
        {"method": "all cloud", "f1": 2 * share / (1 + share), "iou": share},
    ]


def _run(cli: Callable[[list[str]], int], command: str, *args: Any) -> None:
    """One cloudkit command, printed as a shell line first, run through ``cli``."""
    argv = [command, *(str(a) for a in args)]
    print("\n$ cloudkit " + " ".join(shlex.quote(a) for a in argv), flush=True)
    code = cli(argv)
    if code != 0:
        raise DemoStepFailed(f"demo: `cloudkit {command}` failed (its error is above)")
