"""Per-class logit offsets fitted on the recipe's validation tiles, folded into a model.

    python benches/class_offsets.py STORES MODEL OUT.pt [--seed 0] [--offsets 0,-1.5,0.25,-0.5]

A model's classes can be shifted after training by adding a constant to each class's logit
(the classifier's bias): a prior correction. This fits the offsets that give the highest val
mean IoU on the tiles ``finetune --split-seed SEED`` holds out (coordinate search over a grid,
the first class fixed at 0), or takes ``--offsets``, and writes MODEL with them folded into its
classifier's bias as OUT.pt, for `bench_quality.py --model OUT.pt` to score on held-out data.
docs/models.md ("What the validation tiles can tell") has what it measured: not kept.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from cloudkit.data.tasks import IGNORE
from cloudkit.eval.metrics import class_metrics, confusion_matrix
from cloudkit.models.checkpoint import load_finetuned
from cloudkit.models.losses import predict_classes
from cloudkit.train.finetune import FineTuning, targets_of
from validation_scores import model_path, validation_run

CLASSIFIER_BIAS = "decoder.classifier.bias"
GRID = np.arange(-2.0, 4.01, 0.25)


def val_logits(run: FineTuning, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, classes) logits and (pixels,) labels of every labelled val pixel."""
    _, model = load_finetuned(path)
    model = model.float().eval()
    logits, labels = [], []
    with torch.no_grad():
        for batch in run.val_loader:
            targets = targets_of(batch, run.task, torch.device("cpu"))
            labelled = targets != IGNORE
            logits.append(model(batch["image"]).permute(0, 2, 3, 1)[labelled].numpy())
            labels.append(targets[labelled].numpy())
    return np.concatenate(logits), np.concatenate(labels)


def scored(logits: np.ndarray, labels: np.ndarray, offsets: np.ndarray, classes: list[str]) -> dict:
    """`class_metrics` of the model's own class rule on the shifted logits: its mean IoU is
    the val IoU `cloudkit finetune` records."""
    shifted = torch.from_numpy(logits + offsets.astype(np.float32))[:, :, None, None]
    predicted = predict_classes(shifted, binary=False)[:, 0, 0]
    return class_metrics(confusion_matrix(predicted, labels, len(classes)), classes)


def fit_offsets(
    logits: np.ndarray, labels: np.ndarray, classes: list[str], rounds: int = 3
) -> np.ndarray:
    offsets = np.zeros(len(classes))
    best = scored(logits, labels, offsets, classes)["mean_iou"]
    for _ in range(rounds):
        for c in range(1, len(offsets)):
            for value in GRID:
                trial = offsets.copy()
                trial[c] = value
                score = scored(logits, labels, trial, classes)["mean_iou"]
                if score > best:
                    best, offsets = score, trial
    return offsets


def fold(path: Path, offsets: np.ndarray, out: Path) -> None:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint["model"]["state_dict"]
    if CLASSIFIER_BIAS not in state:
        sys.exit(f"{path}: no {CLASSIFIER_BIAS} (a U-Net head's) to fold the offsets into")
    bias = state[CLASSIFIER_BIAS]
    state[CLASSIFIER_BIAS] = (bias.float() + torch.tensor(offsets, dtype=torch.float32)).to(
        bias.dtype
    )
    torch.save(checkpoint, out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", type=Path)
    parser.add_argument("model")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="whose split (finetune --split-seed)")
    parser.add_argument("--offsets", help="comma-separated, one per class: skip the fit")
    args = parser.parse_args()
    path = model_path(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        run = validation_run(args.stores, args.seed, 8, Path(tmp))
        logits, labels = val_logits(run, path)
    names = list(run.task.classes)
    if args.offsets:
        offsets = np.array([float(v) for v in args.offsets.split(",")])
        if len(offsets) != len(names):
            parser.error(f"--offsets needs {len(names)} values, one per class: {', '.join(names)}")
    else:
        offsets = fit_offsets(logits, labels, names)
    for what, applied in (("as trained", np.zeros(len(names))), ("with offsets", offsets)):
        metrics = scored(logits, labels, applied, names)
        per_class = ", ".join(f"{n} {metrics['per_class'][n]['iou']:.3f}" for n in names)
        print(f"{what}: val mean IoU {metrics['mean_iou']:.4f} ({per_class})")
    print("offsets: " + ", ".join(f"{n} {v:+.2f}" for n, v in zip(names, offsets, strict=True)))
    fold(path, offsets, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
