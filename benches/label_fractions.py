"""What pretraining buys, as the paper measures it: the label-fraction grid's scores on the
held-out sets, mean and spread over seeds, as a table and a figure.

    python benches/label_fractions.py SCORES/ [--markdown OUT.md] [--figure OUT.png]

SCORES holds one `bench_quality.py --json` file per fine-tuning, named INIT-fFRACTION-sSEED.json
(``random-f10-s0.json``: from random weights, 10 % of the labelled tiles, seed 0), as the
recipe's grid (`recipes/default_model.py --fractions 10,25,50,100 --inits
random,deepcluster,moco`) and its scoring make them. Only sets no run was trained on count
here: the human CloudSEN12 patches and the s2cloudless arrays.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from quality_seeds import summarise

#: (set, figure, header): the held-out sets only
COLUMNS = (
    ("CloudSEN12 dense (6 patches)", "cloud_f1", "CloudSEN12 dense cloud F1"),
    ("CloudSEN12 dense (6 patches)", "mean_iou", "dense mean IoU"),
    ("CloudSEN12 scribbles (10 patches)", "cloud_f1", "CloudSEN12 scribbles cloud F1"),
    ("s2cloudless test arrays L1C", "cloud_f1", "s2cloudless arrays cloud F1"),
)
#: the trivial masks every run's file also scores, shown under the grid
BASELINES = ("all cloud", "brightness B02 > 0.09", "brightness, best on this set (oracle)")
NAME = re.compile(r"(?P<init>[a-z0-9]+)-f(?P<fraction>\d+)-s(?P<seed>\d+)\.json")

Cell = tuple[float, float, int]  # mean, sample standard deviation, runs


def grid(folder: Path) -> dict[tuple[str, int], dict[str, Cell]]:
    """(init, fraction) -> header -> cell, over the seeds found in ``folder``."""
    runs: dict[tuple[str, int], list[Path]] = defaultdict(list)
    for path in sorted(folder.glob("*.json")):
        match = NAME.fullmatch(path.name)
        if match:
            runs[(match["init"], int(match["fraction"]))].append(path)
    out = {key: summarise(paths, COLUMNS) for key, paths in runs.items()}
    return dict(sorted(out.items()))


def baselines(folder: Path) -> dict[str, dict[str, float]]:
    """Baseline -> header -> figure, from the first score file (they do not depend on the run)."""
    paths = sorted(p for p in folder.glob("*.json") if NAME.fullmatch(p.name))
    results = json.loads(paths[0].read_text())["results"] if paths else {}
    out: dict[str, dict[str, float]] = {}
    for set_name, figure, header in COLUMNS:
        for name in BASELINES:
            value = results.get(set_name, {}).get(name, {}).get(figure)
            if value is not None:
                out.setdefault(name, {})[header] = value
    return out


def markdown(
    table: dict[tuple[str, int], dict[str, Cell]], trivial: dict[str, dict[str, float]]
) -> str:
    headers = [h for _, _, h in COLUMNS]
    lines = [
        "| start | labels | seeds | " + " | ".join(headers) + " |",
        "|---|---:|---:|" + "---|" * len(headers),
    ]
    for (init, fraction), cells in table.items():
        n = max((c[2] for c in cells.values()), default=0)
        text = [f"{cells[h][0]:.3f} ± {cells[h][1]:.3f}" if h in cells else "–" for h in headers]
        lines.append(f"| {init} | {fraction} % | {n} | " + " | ".join(text) + " |")
    for name, figures in trivial.items():
        text = [f"{figures[h]:.3f}" if h in figures else "–" for h in headers]
        lines.append(f"| {name} | – | – | " + " | ".join(text) + " |")
    return "\n".join(lines) + "\n"


def figure(
    table: dict[tuple[str, int], dict[str, Cell]],
    trivial: dict[str, dict[str, float]],
    path: Path,
) -> None:
    from matplotlib.figure import Figure

    headers = [h for _, figure_name, h in COLUMNS if figure_name == "cloud_f1"]
    fig = Figure(figsize=(4.0 * len(headers), 3.6), layout="constrained")
    fig.suptitle("cloud F1 on held-out labels against the share of labelled tiles (mean ± sd)")
    inits = list(dict.fromkeys(init for init, _ in table))
    for ax, header in zip(fig.subplots(1, len(headers)), headers, strict=True):
        for init in inits:
            points = sorted(
                (f, c[header]) for (i, f), c in table.items() if i == init and header in c
            )
            if points:
                ax.errorbar(
                    [f for f, _ in points],
                    [c[0] for _, c in points],
                    yerr=[c[1] for _, c in points],
                    fmt="-o",
                    capsize=3,
                    label=init,
                )
        for (name, figures), style in zip(trivial.items(), (":", "-.", "--"), strict=False):
            if header in figures:
                ax.axhline(figures[header], color="grey", linestyle=style, lw=1, label=name)
        ax.set_xscale("log")
        ax.set_xticks([10, 25, 50, 100], ["10", "25", "50", "100"])
        ax.set_xlabel("labelled tiles used (%)")
        ax.set_title(header.replace(" cloud F1", ""), fontsize="medium")
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="x-small")
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args(argv)
    table = grid(args.scores)
    if not table:
        print(f"{args.scores}: no INIT-fFRACTION-sSEED.json scores", file=sys.stderr)
        return 1
    trivial = baselines(args.scores)
    text = markdown(table, trivial)
    print(text, end="")
    if args.markdown:
        args.markdown.write_text(text)
    if args.figure:
        figure(table, trivial, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
