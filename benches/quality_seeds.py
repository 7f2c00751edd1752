"""Several seeds' quality figures as one table: the mean and spread (sample standard
deviation) of each score over the runs of a group, from `bench_quality.py --json` files.

    python benches/quality_seeds.py NAME=RUN.json[,RUN.json...] [NAME=...] [--markdown OUT.md]

Each NAME is one row (a recipe at several seeds); each set of bench_quality one column group:
cloud F1, and shadow F1 or mean IoU where the set has them. The model's figures are those
with predict's defaults (its geometric shadow check on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

#: (set, figure, header) of the table's columns
COLUMNS = (
    ("CloudSEN12 dense (6 patches)", "cloud_f1", "CloudSEN12 dense cloud F1"),
    ("CloudSEN12 dense (6 patches)", "mean_iou", "dense mean IoU"),
    ("CloudSEN12 scribbles (10 patches)", "cloud_f1", "scribbles cloud F1"),
    ("CloudSEN12 scribbles (10 patches)", "mean_iou", "scribbles mean IoU"),
    ("s2cloudless test arrays L1C", "cloud_f1", "s2cloudless arrays cloud F1"),
    ("T29UNU L2A 60 m", "cloud_f1", "T29UNU cloud F1"),
    ("T29UNU L2A 60 m", "shadow_f1", "T29UNU shadow F1"),
    ("T19UDP L1C 160 m", "cloud_f1", "T19UDP cloud F1"),
    ("Sahara L2A 100 m", "cloud_f1", "Sahara cloud F1"),
    ("synthetic L1C 20 m (3 products)", "cloud_f1", "synthetic cloud F1"),
    ("synthetic L1C 20 m (3 products)", "shadow_f1", "synthetic shadow F1"),
)


def model_figures(path: Path) -> dict[str, dict[str, float]]:
    """Per set, the figures of the run's model with its shadow check (the first cloudkit row)."""
    results = json.loads(path.read_text())["results"]
    out = {}
    for name, methods in results.items():
        key = next(
            k for k in methods if k.startswith("cloudkit (") and not k.endswith("shadow check")
        )
        out[name] = methods[key]
    return out


def summarise(
    runs: list[Path], columns: tuple[tuple[str, str, str], ...] = COLUMNS
) -> dict[str, tuple[float, float, int]]:
    """Header -> (mean, spread, runs) over ``runs``, for each of ``columns`` they have."""
    figures = [model_figures(r) for r in runs]
    table = {}
    for set_name, figure, header in columns:
        values = [f[set_name][figure] for f in figures if figure in f.get(set_name, {})]
        if values:
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            table[header] = (statistics.fmean(values), spread, len(values))
    return table


def markdown(rows: dict[str, dict[str, tuple[float, float, int]]]) -> str:
    headers = [h for _, _, h in COLUMNS if any(h in r for r in rows.values())]
    lines = [
        "| model (runs) | " + " | ".join(headers) + " |",
        "|---" * (len(headers) + 1) + "|",
    ]
    for name, table in rows.items():
        n = max((v[2] for v in table.values()), default=0)
        cells = [
            (f"{table[h][0]:.3f} ± {table[h][1]:.3f}" if table[h][2] > 1 else f"{table[h][0]:.3f}")
            if h in table
            else "–"
            for h in headers
        ]
        lines.append(f"| {name} ({n}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="+", metavar="NAME=RUN.json[,RUN.json...]")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    rows = {}
    for group in args.groups:
        name, _, files = group.partition("=")
        if not files:
            print(f"{group}: expected NAME=RUN.json[,RUN.json...]", file=sys.stderr)
            return 1
        rows[name] = summarise([Path(f) for f in files.split(",")])
    text = markdown(rows)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
