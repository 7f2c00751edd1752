"""Figures of what a run measured, drawn from the JSON it wrote, as PNG files beside it.

- :func:`training_figure`: a pretraining's or fine-tuning's ``metrics.jsonl``, one panel per
  kind of figure it holds (losses, learning rate, embedding spread and its collapse
  threshold, kNN accuracy, val IoU and F1), against the epoch.
- :func:`label_fraction_figure`: the paper's main figure from an experiment's
  ``results.json``: F1 and IoU against the share of labels, one line per init.
- :func:`quicklook_figure`: a predicted scene, true colour and mask over it side by side,
  pixel for pixel (no resampling), under a title and a legend of the classes.

Figures are drawn on matplotlib's Agg canvas (no display, no pyplot state), and written like
checkpoints: to a temporary file, then renamed, so a reader never sees half a PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cloudkit.files.atomic import atomic_file

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS_PNG = "metrics.png"
RESULTS_PNG = "results.png"
#: quicklook layout, in pixels: title and legend above, the two panels side by side below
QUICKLOOK_HEADER_PX = 72
QUICKLOOK_GAP_PX = 8
QUICKLOOK_MIN_WIDTH_PX = 800
_LEGEND_ONE_ROW_PX = 1100  # narrower quicklooks put their legend on two rows
_DPI = 100

#: (panel title, [(metrics key, line label)], y limits or None), in the order drawn
_TRAINING_PANELS: tuple[
    tuple[str, tuple[tuple[str, str], ...], tuple[float, float] | None], ...
] = (
    ("loss", (("loss", "loss"), ("train_loss", "train"), ("val_loss", "val")), None),
    ("learning rate", (("lr", "lr"), ("backbone_lr", "backbone lr")), None),
    (
        "embedding spread",
        (("embedding_std", "std of embeddings"), ("collapse_threshold", "collapse below")),
        None,
    ),
    ("kNN accuracy (cloudiness bins)", (("knn_accuracy", "kNN accuracy"),), (0.0, 1.0)),
    ("validation", (("val_iou", "IoU"), ("val_f1", "F1")), (0.0, 1.0)),
)


def training_figure(records: Sequence[dict[str, Any]], title: str) -> Figure:
    """One panel per kind of figure present in ``records`` (a metrics.jsonl's lines)."""
    from matplotlib.figure import Figure

    panels = [
        (name, [(key, label) for key, label in lines if _series(records, key)[0]], limits)
        for name, lines, limits in _TRAINING_PANELS
    ]
    panels = [p for p in panels if p[1]]
    fig = Figure(figsize=(4.0 * max(1, len(panels)), 3.2), layout="constrained")
    fig.suptitle(title)
    for ax, (name, lines, limits) in zip(
        fig.subplots(1, max(1, len(panels)), squeeze=False)[0], panels, strict=False
    ):
        for key, label in lines:
            epochs, values = _series(records, key)
            style = "--" if key == "collapse_threshold" else "-"
            ax.plot(epochs, values, style, marker="." if len(epochs) < 30 else None, label=label)
        if name == "learning rate" and any(v > 0 for _, v in _all_values(records, lines)):
            ax.set_yscale("symlog", linthresh=_smallest_positive(records, lines))
        if limits:
            ax.set_ylim(*limits)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize="small")
    return fig


def label_fraction_figure(rows: Sequence[dict[str, Any]], title: str) -> Figure:
    """F1 and IoU of the positive class (or the class means) against the label fraction,
    one line per init: the rows of an experiment's ``results.json``."""
    from matplotlib.figure import Figure

    what = rows[0]["positive"] if rows else "positive class"
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    fig.suptitle(title)
    inits = list(dict.fromkeys(r["init"] for r in rows))
    for ax, key in zip(fig.subplots(1, 2), ("f1", "iou"), strict=True):
        for init in inits:
            mine = sorted((r for r in rows if r["init"] == init), key=lambda r: r["fraction"])
            ax.plot([r["fraction"] for r in mine], [r[key] for r in mine], "-o", label=init)
        ax.set_xscale("log")
        ax.set_xlabel("labelled tiles used (%)")
        ax.set_ylabel(f"{'IoU' if key == 'iou' else 'F1'} ({what})")
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    return fig


def quicklook_figure(
    true_colour: np.ndarray,
    overlay: np.ndarray,
    title: str,
    legend: Sequence[tuple[str, tuple[int, int, int] | None]],
) -> Figure:
    """``true_colour`` and ``overlay`` (both (h, w, 3) uint8) side by side, each drawn pixel
    for pixel at rows ``QUICKLOOK_HEADER_PX ..`` of the image, columns ``0 ..`` and
    ``w + QUICKLOOK_GAP_PX ..``; ``legend``: (label, colour or None for no swatch)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    h, w = true_colour.shape[:2]
    # a margin on the right as well: Agg leaves the last pixel column of a figure blank
    width = max(2 * w + 2 * QUICKLOOK_GAP_PX, QUICKLOOK_MIN_WIDTH_PX)
    height = h + QUICKLOOK_HEADER_PX
    fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor="white")
    # figimage puts an array at a pixel offset from the lower left, without resampling
    fig.figimage(true_colour, xo=0, yo=0, origin="upper")
    fig.figimage(overlay, xo=w + QUICKLOOK_GAP_PX, yo=0, origin="upper")
    top = 1.0 - 4 / height
    fig.text(4 / width, top, title, va="top", ha="left", fontsize=10, weight="bold")
    handles = [
        Patch(facecolor=(c[0] / 255, c[1] / 255, c[2] / 255) if c else "none",
              edgecolor="black" if c else "none", label=label)
        for label, c in legend
    ]  # fmt: skip
    fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.0, top - 18 / height),
        ncols=len(handles) if width >= _LEGEND_ONE_ROW_PX else 3,
        frameon=False,
        fontsize=9,
        handlelength=1.2,
        columnspacing=1.2,
        borderaxespad=0.0,
    )
    return fig


def save_png(fig: Figure, path: Path) -> None:
    """``fig`` as a PNG at its own dpi (so figimage pixels stay pixels), no transparency."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor())


def write_figure(fig: Figure, path: Path) -> Path:
    """``fig`` as a PNG at ``path``, atomically (cloudkit.files.atomic)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        save_png(fig, tmp)
    return path


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the records where ``key`` holds a number."""
    pairs = [
        (r["epoch"], float(r[key]))
        for r in records
        if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)
    ]
    return [e for e, _ in pairs], [v for _, v in pairs]


def _all_values(records, lines) -> list[tuple[int, float]]:
    return [p for key, _ in lines for p in zip(*_series(records, key), strict=True)]


def _smallest_positive(records, lines) -> float:
    return min(v for _, v in _all_values(records, lines) if v > 0)
