"""Segmentation heads: training-step cost of the paper's all-stride-1 head against the U-Net
and the light head.

For each head, one forward + backward (dice + BCE loss, no optimiser step) on random
13-band input of --size x --size pixels, timed over --steps after --warmup steps, reported as
seconds per step, milliseconds per sample and nanoseconds per pixel, plus GFLOP per sample
(forward + backward, counted by torch.utils.flop_counter during one warm-up step), the
parameter counts and the peak memory:

- CUDA: torch.cuda.max_memory_allocated over the timed steps, minus what was allocated before;
- CPU: the peak resident set size (VmHWM) of the process, minus its size before the first
  step; each head runs in its own subprocess so neither sees the other's peak.

On either device each head's own peak RSS (MB) is printed too: the whole worker process's
VmHWM, which starts afresh at exec (peak_memory.py), imports and model included.

Per-pixel figures are comparable across sizes (both heads are convolutional); the summary
line gives the paper/unet per-pixel cost ratio (the target is a U-Net at least 20x cheaper),
and the unet/light one.
The paper head takes ~24 s per 256x256 step on a 2-core CPU, hence --size 128 there.

    python benches/bench_heads.py --size 128                 # CPU, batch 1
    python benches/bench_heads.py --device cuda --batch-size 16 --size 256
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import hwm_mb  # noqa: E402

BANDS = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
)
HEADS = ("paper", "unet", "light")


def measure(args: argparse.Namespace, head: str) -> dict:
    """Run in a fresh process: build the head, time its steps, return the figures."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cloudkit.models.encoder import Encoder
    from cloudkit.models.losses import dice_bce_loss
    from cloudkit.models.segmentation import backbone_parameters, build_segmenter, head_parameters

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_segmenter(Encoder(BANDS), head=head, num_classes=2, binary=True)
    model.to(device).train()
    n, size = args.batch_size, args.size
    x = torch.rand(n, len(BANDS), size, size, device=device)
    targets = torch.randint(0, 2, (n, size, size), device=device)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        dice_bce_loss(model(x), targets).backward()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        sync()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        # VmHWM, not ru_maxrss: the latter may carry the parent's peak across the exec
        base = hwm_mb() * 2**20

    flops = FlopCounterMode(display=False)
    with flops:
        step()
    for _ in range(args.warmup - 1):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / args.steps

    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = hwm_mb() * 2**20 - base
    count = sum(p.numel() for p in model.parameters())
    return {
        "head": head,
        "device": str(device),
        "batch_size": n,
        "size": size,
        "seconds_per_step": seconds,
        "ms_per_sample": 1e3 * seconds / n,
        "ns_per_pixel": 1e9 * seconds / (n * size * size),
        "gflop_per_sample": flops.get_total_flops() / n / 1e9,
        "peak_mib_per_sample": peak / n / 2**20,
        "peak_rss_mb": hwm_mb(),
        "params": count,
        "backbone_params": sum(p.numel() for p in backbone_parameters(model)),
        "head_params": sum(p.numel() for p in head_parameters(model)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--size", type=int, default=256, help="input height and width (px)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per head")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps (>= 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--heads", default=",".join(HEADS), help="comma-separated heads")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--worker", choices=HEADS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.warmup = max(args.warmup, 1)
    if args.batch_size * (args.size // 32) ** 2 < 2:
        # BatchNorm in train mode needs 2+ values per channel at layer4 (1/32 scale)
        parser.error("the U-Net trains on batch_size * (size // 32)**2 >= 2; raise --size")

    if args.worker:
        print(json.dumps(measure(args, args.worker)))
        return

    results = []
    for head in args.heads.split(","):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--worker", head]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"the {head} head failed:\n{proc.stderr}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"device {args.device}, {len(BANDS)} bands, {args.size}x{args.size} px, "
        f"batch {args.batch_size}, forward+backward, mean of {args.steps} steps"
    )
    header = (
        f"{'head':<6} {'s/step':>8} {'ms/sample':>10} {'ns/pixel':>9} {'GFLOP/sample':>13} "
        f"{'peak MiB/sample':>16} {'params':>11} {'of which head':>14} {'peak RSS MB':>12}"
    )
    print(header)
    for r in results:
        print(
            f"{r['head']:<6} {r['seconds_per_step']:>8.3f} {r['ms_per_sample']:>10.1f} "
            f"{r['ns_per_pixel']:>9.1f} {r['gflop_per_sample']:>13.1f} "
            f"{r['peak_mib_per_sample']:>16.1f} {r['params']:>11,} {r['head_params']:>14,} "
            f"{r['peak_rss_mb']:>12.0f}"
        )
    by_head = {r["head"]: r for r in results}
    if {"paper", "unet"} <= by_head.keys():
        time_ratio = by_head["paper"]["ns_per_pixel"] / by_head["unet"]["ns_per_pixel"]
        flop_ratio = by_head["paper"]["gflop_per_sample"] / by_head["unet"]["gflop_per_sample"]
        mem_ratio = by_head["paper"]["peak_mib_per_sample"] / max(
            by_head["unet"]["peak_mib_per_sample"], 1e-9
        )
        verdict = "meets" if time_ratio >= 20 else "MISSES"
        print(
            f"paper/unet per-pixel cost: time {time_ratio:.1f}x, FLOP {flop_ratio:.1f}x, "
            f"peak memory {mem_ratio:.1f}x ({verdict} the >= 20x target)"
        )
    if {"unet", "light"} <= by_head.keys():
        time_ratio = by_head["unet"]["ns_per_pixel"] / by_head["light"]["ns_per_pixel"]
        flop_ratio = by_head["unet"]["gflop_per_sample"] / by_head["light"]["gflop_per_sample"]
        print(f"unet/light per-pixel cost: time {time_ratio:.1f}x, FLOP {flop_ratio:.1f}x")


if __name__ == "__main__":
    main()
