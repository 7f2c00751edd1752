"""The paper's label-fraction experiment: fine-tune every init x fraction, evaluate each.

For every init (``random`` or a pretraining checkpoint) and every fraction (percent of the
labelled training tiles), :func:`cloudkit.train.finetune.finetune` runs in
``DIR/<init>-<fraction>pct/`` and :func:`cloudkit.eval.evaluate.evaluate_checkpoint` scores its
best checkpoint on the test stores (``eval.json`` beside it). ``DIR/results.json`` and
``DIR/results.md`` (a markdown table) and ``DIR/results.png`` (F1 and IoU against the label
fraction, one line per init: the paper's main figure) are rewritten after every cell, so a long grid can be
watched and, when killed, run again with the same command: finished cells (their ``eval.json``)
are kept, an interrupted cell resumes from its ``last.pt``.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from cloudkit.config import RANDOM_INIT, ExperimentConfig, FinetuneConfig, FinetuneOptions
from cloudkit.errors import CheckpointError
from cloudkit.files.atomic import write_text
from cloudkit.files.disk import require_writable
from cloudkit.models.checkpoint import BEST, LAST
from cloudkit.plots import RESULTS_PNG, label_fraction_figure, write_figure
from cloudkit.train.metrics import read_metrics

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
EVAL_JSON = "eval.json"


def cell_names(inits: tuple[str, ...]) -> list[str]:
    """Distinct folder-friendly names of the inits (``random``, ``moco``, ``moco-2``, ...)."""
    from cloudkit.train.finetune import init_name

    names: list[str] = []
    for init in inits:
        base = init_name(init)
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def _fraction_label(percent: float) -> str:
    return f"{percent:g}"


def _positive(metrics: dict[str, Any]) -> tuple[str, float, float]:
    """(what, F1, IoU): the positive class of a binary task, else the means over classes."""
    classes = metrics["classes"]
    per_class = metrics["per_class"]
    if len(classes) == 2:
        m = per_class[classes[1]]
        return classes[1], m["f1"], m["iou"]
    f1 = sum(per_class[c]["f1"] for c in classes) / len(classes)
    return "mean", f1, metrics["mean_iou"]


def results_markdown(rows: list[dict[str, Any]]) -> str:
    """The results table (one row per init x fraction)."""
    what = rows[0]["positive"] if rows else "positive class"
    lines = [
        f"| init | fraction (%) | F1 ({what}) | IoU ({what}) | OA | balanced OA | best epoch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['init']} | {r['fraction']:g} | {r['f1']:.4f} | {r['iou']:.4f} | "
            f"{r['overall_accuracy']:.4f} | {r['balanced_overall_accuracy']:.4f} | "
            f"{r['best_epoch']} |"
        )
    return "\n".join(lines) + "\n"


def _write_results(out: Path, cfg: ExperimentConfig, rows: list[dict[str, Any]]) -> None:
    payload = {"config": cfg.to_dict(), "results": rows}
    write_text(out / RESULTS_JSON, json.dumps(payload, indent=2) + "\n")
    header = (
        f"# Label-fraction experiment\n\nTask `{cfg.task.value}`, head `{cfg.head.value}`, "
        f"trained on {', '.join(map(str, cfg.stores))}, tested on "
        f"{', '.join(map(str, cfg.test_stores))}.\n\n"
    )
    write_text(out / RESULTS_MD, header + results_markdown(rows))
    tested_on = ", ".join(Path(p).name for p in cfg.test_stores)
    figure = label_fraction_figure(rows, title=f"task {cfg.task.value}, tested on {tested_on}")
    write_figure(figure, out / RESULTS_PNG)


def run_experiment(cfg: ExperimentConfig) -> Path:
    """Run the grid; returns ``cfg.out / "results.md"``."""
    from cloudkit.eval.evaluate import evaluate_checkpoint
    from cloudkit.train.finetune import finetune, load_init

    cfg.validate()
    for init in cfg.inits:  # fail before hours of training, not in the middle
        if init != RANDOM_INIT:
            load_init(init)
    out = cfg.out
    require_writable(out, "--out")
    options = {f.name: getattr(cfg, f.name) for f in fields(FinetuneOptions)}
    rows: list[dict[str, Any]] = []
    for init, name in zip(cfg.inits, cell_names(cfg.inits), strict=True):
        for percent in cfg.fractions:
            run_dir = out / f"{name}-{_fraction_label(percent)}pct"
            eval_path = run_dir / EVAL_JSON
            if eval_path.is_file():
                metrics = json.loads(eval_path.read_text())
            else:
                run_cfg = FinetuneConfig(
                    stores=cfg.stores,
                    out=run_dir,
                    init=init,
                    fraction=percent / 100.0,
                    resume=(run_dir / LAST).is_file(),
                    **options,
                )
                best = finetune(run_cfg)
                if not best.is_file():
                    raise CheckpointError(f"{run_dir}: fine-tuning left no {BEST}")
                metrics = evaluate_checkpoint(
                    best,
                    cfg.test_stores,
                    batch_size=cfg.batch_size,
                    device=cfg.device.value,
                )
                write_text(eval_path, json.dumps(metrics, indent=2) + "\n")
            history = read_metrics(run_dir)
            best_epoch = max(
                (r for r in history if r.get("best")), key=lambda r: r["epoch"], default={}
            ).get("epoch")
            positive, f1, iou = _positive(metrics)
            rows.append(
                {
                    "init": name,
                    "init_path": init,
                    "fraction": percent,
                    "positive": positive,
                    "f1": f1,
                    "iou": iou,
                    "overall_accuracy": metrics["overall_accuracy"],
                    "balanced_overall_accuracy": metrics["balanced_overall_accuracy"],
                    "mean_iou": metrics["mean_iou"],
                    "best_epoch": best_epoch,
                    "epochs_run": len(history),
                    "run": str(run_dir),
                }
            )
            _write_results(out, cfg, rows)
    return out / RESULTS_MD
