"""Figures of runs: each line holds the JSON's numbers, and files are replaced atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cloudkit.plots import label_fraction_figure, training_figure, write_figure
from tests.helpers.png import is_png

PRETRAIN_RECORDS = [
    {"epoch": 1, "loss": 0.0, "lr": 0.15, "embedding_std": 0.07, "collapse_threshold": 0.018,
     "knn_accuracy": 0.65},
    {"epoch": 2, "loss": 3.7, "lr": 0.3, "embedding_std": 0.064, "collapse_threshold": 0.018,
     "knn_accuracy": None},
    {"epoch": 3, "loss": 3.9, "lr": 0.45, "embedding_std": 0.043, "collapse_threshold": 0.018,
     "knn_accuracy": 0.64},
]  # fmt: skip
FINETUNE_RECORDS = [
    {"epoch": 1, "train_loss": 1.87, "val_loss": 2.2, "val_iou": 0.2, "val_f1": 0.27,
     "lr": 1e-3, "backbone_lr": 0.0, "frozen": True, "best": True},
    {"epoch": 2, "train_loss": 1.65, "val_loss": 1.54, "val_iou": 0.37, "val_f1": 0.49,
     "lr": 9.9e-4, "backbone_lr": 4.9e-4, "frozen": False, "best": True},
]  # fmt: skip


def _lines(fig) -> dict[tuple[str, str], tuple[list, list]]:
    """(panel title, line label) -> (x, y) of every line drawn."""
    return {
        (ax.get_title(), line.get_label()): (list(line.get_xdata()), list(line.get_ydata()))
        for ax in fig.axes
        for line in ax.lines
    }


@pytest.mark.parametrize("records", [PRETRAIN_RECORDS, FINETUNE_RECORDS])
def test_training_figure_draws_exactly_the_records(records):
    lines = _lines(training_figure(records, "run"))
    from cloudkit.plots import _TRAINING_PANELS

    expected = {}
    for panel, keys, _ in _TRAINING_PANELS:
        for key, label in keys:
            pairs = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
            if pairs:
                expected[(panel, label)] = ([e for e, _ in pairs], [v for _, v in pairs])
    assert lines.keys() == expected.keys()
    for key, (x, y) in expected.items():
        assert lines[key][0] == x and np.allclose(lines[key][1], y), key


def test_label_fraction_figure_one_line_per_init():
    rows = [
        {"init": init, "fraction": f, "f1": f1, "iou": f1 / 2, "positive": "cloud"}
        for init, scores in (("random", (0.5, 0.7)), ("moco", (0.6, 0.75)))
        for f, f1 in zip((10.0, 100.0), scores, strict=True)
    ]
    by_axis = {}
    fig = label_fraction_figure(rows, "grid")
    for ax, key in zip(fig.axes, ("f1", "iou"), strict=True):
        by_axis[key] = {line.get_label(): list(line.get_ydata()) for line in ax.lines}
        assert all(list(line.get_xdata()) == [10.0, 100.0] for line in ax.lines)
    assert by_axis["f1"] == {"random": [0.5, 0.7], "moco": [0.6, 0.75]}
    assert by_axis["iou"] == {"random": [0.25, 0.35], "moco": [0.3, 0.375]}


def test_write_figure_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "metrics.png"
    write_figure(training_figure(FINETUNE_RECORDS, "run"), path)
    assert is_png(path)
    before = path.read_bytes()

    fig = training_figure(PRETRAIN_RECORDS, "run")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(fig, "savefig", fail)
    with pytest.raises(OSError, match="disk full"):
        write_figure(fig, path)
    assert path.read_bytes() == before  # the old figure stays whole
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.png"]  # no temporary left


def test_results_json_and_png_agree(tmp_path):
    from cloudkit.config import ExperimentConfig
    from cloudkit.train.experiment import _write_results

    rows = [
        {"init": "random", "fraction": 100.0, "f1": 0.8, "iou": 0.66, "positive": "cloud",
         "overall_accuracy": 0.9, "balanced_overall_accuracy": 0.88, "best_epoch": 3},
    ]  # fmt: skip
    cfg = ExperimentConfig(stores=(tmp_path / "a.zarr",), test_stores=(tmp_path / "b.zarr",),
                           out=tmp_path)  # fmt: skip
    _write_results(tmp_path, cfg, rows)
    assert is_png(tmp_path / "results.png")
    assert json.loads((tmp_path / "results.json").read_text())["results"] == rows
