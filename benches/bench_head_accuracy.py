"""Do the efficient heads (U-Net, light) and the paper's stride-1 head reach the same accuracy?

The heads are fine-tuned with identical settings (random init, same seed, same tiles, same
crops, same epochs) on the real T29UNU L2A product at 60 m with Sen2Cor SCL cloud labels, east
of a buffer column, and scored on the spatially separate western strip (see
tests/helpers/finetune_stores.py). Reported per head: cloud F1 and IoU, balanced accuracy, wall
time and peak RSS of the fine-tuning (its own `cloudkit finetune` process: peak_memory.py),
and the ratio of times.

    python benches/bench_head_accuracy.py --fraction 0.25 --epochs 2 --crop 32
    python benches/bench_head_accuracy.py --heads unet,light --epochs 10 --crop 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the project root: tests.helpers
sys.path.insert(0, str(HERE))

from peak_memory import measure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fraction", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--heads", default="unet,light,paper", help="comma-separated heads")
    args = parser.parse_args()

    from tests.helpers.finetune_stores import TILE_64, spatial_split
    from tests.helpers.pretrain_stores import BANDS
    from tests.helpers.shared_data import L2A_T29UNU

    from cloudkit.config import TileOptions
    from cloudkit.tiler.writer import tile_paths

    work = Path(tempfile.mkdtemp(prefix="cloudkit-heads-"))
    full = work / "t29unu.zarr"
    options = TileOptions(resolution=60, bands=BANDS, tile_size=TILE_64, scl_labels=True)
    tile_paths([L2A_T29UNU], full, options)
    train, test = spatial_split(full, work)
    rows = {}
    for head in args.heads.split(","):
        out = work / head
        cmd = [
            "cloudkit", "finetune", str(train), "--out", str(out), "--init", "random",
            "--head", head, "--task", "cloud", "--fraction", str(args.fraction),
            "--epochs", str(args.epochs), "--crop", str(args.crop), "--batch-size",
            str(args.batch_size), "--freeze-epochs", "0", "--seed", str(args.seed),
            "--device", args.device, "--workers", "0",
        ]  # fmt: skip
        seconds, peak_mb = measure(cmd, stdout=subprocess.DEVNULL)
        report = out / "eval.json"
        subprocess.run(
            ["cloudkit", "evaluate", str(out / "best.pt"), str(test), "--out", str(report)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        metrics = json.loads(report.read_text())
        cloud = metrics["per_class"]["cloud"]
        rows[head] = (
            cloud["f1"],
            cloud["iou"],
            metrics["balanced_overall_accuracy"],
            seconds,
            peak_mb,
        )
    print(
        f"T29UNU 60 m, cloud task, fraction {args.fraction}, {args.epochs} epochs, "
        f"crop {args.crop}, batch {args.batch_size}, seed {args.seed}"
    )
    for head, (f1, iou, bacc, sec, peak_mb) in rows.items():
        print(
            f"  {head:6s} F1 {f1:.3f}  IoU {iou:.3f}  balanced OA {bacc:.3f}  fine-tune {sec:7.1f} s"
            f"  peak RSS {peak_mb:6.0f} MB"
        )
    for slow, fast in (("paper", "unet"), ("unet", "light")):
        if slow in rows and fast in rows:
            print(f"  fine-tune time {slow}/{fast}: {rows[slow][3] / rows[fast][3]:.1f}x")


if __name__ == "__main__":
    main()
