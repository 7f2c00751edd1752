"""Confusion matrices and the segmentation metrics derived from them.

Conventions (also in the README):

- ``confusion_matrix[t, p]`` counts pixels of target class ``t`` predicted as ``p`` (rows are
  the truth). Pixels whose target is ``ignore`` (no-data) are left out.
- precision, recall, F1 and IoU of a class are 0.0 when undefined (no pixel predicted as the
  class, no pixel of the class, ...), never NaN, so results stay valid JSON.
- ``overall_accuracy``: correct pixels / counted pixels (0.0 when nothing was counted).
- ``balanced_overall_accuracy``: mean recall over the classes with support (pixels in the
  target), the measure CloudSEN12 reports; classes absent from the target do not count.
- ``mean_iou``: mean IoU over the classes present in the target or in the prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import StringIO
from typing import Any

import numpy as np


def _as_array(values: Any) -> np.ndarray:
    """A numpy view of an array or (any-device) tensor, without importing torch here."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def confusion_matrix(pred: Any, target: Any, num_classes: int, ignore: int = 255) -> np.ndarray:
    """(K, K) int64 counts, rows = target class, columns = predicted class.

    ``pred`` and ``target`` hold class indices of the same shape (arrays or tensors); pixels
    whose target is ``ignore`` are skipped. Any other value outside ``0..K-1`` raises
    ValueError (a predicted ``ignore`` where the target is known is an error too: mask those
    pixels in ``target`` first).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    p, t = _as_array(pred), _as_array(target)
    if p.shape != t.shape:
        raise ValueError(f"pred has shape {p.shape} but target has shape {t.shape}")
    keep = t != ignore
    p = p[keep].astype(np.int64, copy=False)
    t = t[keep].astype(np.int64, copy=False)
    for name, values in (("target", t), ("pred", p)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            bad = values[(values < 0) | (values >= num_classes)][0]
            raise ValueError(
                f"{name} holds class {bad}, expected 0..{num_classes - 1} (or {ignore} in target)"
            )
    counts = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


class ConfusionAccumulator:
    """Sums confusion matrices over batches: ``update(pred, target)``, then ``.matrix``."""

    def __init__(self, num_classes: int, ignore: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore = ignore
        self._matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: Any, target: Any) -> None:
        self._matrix += confusion_matrix(pred, target, self.num_classes, self.ignore)

    @property
    def matrix(self) -> np.ndarray:
        return self._matrix.copy()


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else 0.0


def class_metrics(cm: np.ndarray, classes: Sequence[str]) -> dict:
    """Metrics of a confusion matrix (rows = target), as a JSON-ready dict:

    ``classes``, ``per_class`` ({name: accuracy (one-vs-rest), precision, recall, f1, iou,
    support, predicted}), ``overall_accuracy``, ``balanced_overall_accuracy``, ``mean_iou``,
    ``pixels`` and ``confusion_matrix`` (nested lists). Undefined ratios are 0.0.
    """
    cm = np.asarray(cm, dtype=np.int64)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(
            f"confusion matrix has shape {cm.shape}, expected ({k}, {k}) for {k} classes"
        )
    total = int(cm.sum())
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    per_class: dict[str, dict] = {}
    recalls, ious = [], []
    for i, name in enumerate(classes):
        fp, fn = int(predicted[i] - tp[i]), int(support[i] - tp[i])
        precision = _ratio(tp[i], predicted[i])
        recall = _ratio(tp[i], support[i])
        union = int(tp[i]) + fp + fn
        iou = _ratio(tp[i], union)
        per_class[name] = {
            "accuracy": _ratio(total - fp - fn, total),
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "iou": iou,
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        if support[i] > 0:
            recalls.append(recall)
        if union > 0:
            ious.append(iou)
    return {
        "classes": list(classes),
        "per_class": per_class,
        "overall_accuracy": _ratio(tp.sum(), total),
        "balanced_overall_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
        "pixels": total,
        "confusion_matrix": cm.tolist(),
    }


def format_table(metrics: dict) -> str:
    """A readable plain-text table of :func:`class_metrics` output (rich, no colours)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=metrics.get("title"), show_lines=False)
    table.add_column("class")
    for col in ("precision", "recall", "F1", "IoU", "accuracy", "support"):
        table.add_column(col, justify="right")
    for name, m in metrics["per_class"].items():
        table.add_row(
            name,
            *(f"{m[key]:.4f}" for key in ("precision", "recall", "f1", "iou", "accuracy")),
            f"{m['support']:,}",
        )
    classes = metrics["classes"]
    matrix = Table(title="confusion matrix (rows: truth, columns: prediction)")
    matrix.add_column("")
    for name in classes:
        matrix.add_column(name, justify="right")
    for name, row in zip(classes, metrics["confusion_matrix"], strict=True):
        matrix.add_row(name, *(f"{v:,}" for v in row))
    buffer = StringIO()
    console = Console(file=buffer, width=100, force_terminal=False, color_system=None)
    console.print(table)
    console.print(
        f"overall accuracy {metrics['overall_accuracy']:.4f}   "
        f"balanced overall accuracy {metrics['balanced_overall_accuracy']:.4f}   "
        f"mean IoU {metrics['mean_iou']:.4f}   pixels {metrics['pixels']:,}"
    )
    console.print(matrix)
    return buffer.getvalue()
