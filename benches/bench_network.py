"""The network's own time per megapixel: models as `cloudkit predict` runs them (BatchNorm
folded, channels_last, bf16 weights on request), on windows of 384 px with all 13 bands,
fp32 and bf16, against the shipped default model in the same command.

Only the forward pass is timed (no reading, no blending): the figure that decides how much of
a full-scene predict a network costs. Each run is a batch of ``--batch`` windows after a
warm-up, best of ``--repeat``; beside it the run's own peak RSS (peak_memory.py).

    python benches/bench_network.py [MODEL ...] [--batch 8] [--threads 2]

MODEL: a shipped name or a checkpoint (`cloudkit finetune`'s best.pt, an export); the default
model is always the baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import measure_here  # noqa: E402

WINDOW = 384


def seconds_per_batch(model: str, precision: str, x: torch.Tensor, repeat: int) -> float:
    from cloudkit.models.zoo import load_predictor

    predictor = load_predictor(model, device="cpu", precision=precision)
    images = x.to(memory_format=torch.channels_last)
    predictor.probabilities(images)  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        predictor.probabilities(images)
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--window", type=int, default=WINDOW)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 13, args.window, args.window) * 0.3
    megapixels = args.batch * args.window * args.window / 1e6
    rows = {}
    for model in ["default", *args.models]:
        for precision in ("fp32", "bf16"):
            with measure_here() as run:
                seconds = seconds_per_batch(model, precision, x, args.repeat)
            rows[(model, precision)] = (seconds, run.peak_mb)
    print(f"{args.batch} windows of {args.window} px, 13 bands, {args.threads} threads")
    for (model, precision), (seconds, peak_mb) in rows.items():
        base = rows[("default", precision)][0]
        print(
            f"  {model} {precision}: {seconds:.3f} s, {seconds / megapixels:.3f} s/Mpx, "
            f"{base / seconds:.2f}x the default's speed, peak RSS {peak_mb:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
