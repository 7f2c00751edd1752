"""Spherical k-means: faiss vs cloudkit's torch backend, on CPU (to choose ``backend="auto"``)
or on a GPU (``--device cuda``: faiss's GPU index against torch on the GPU).

DeepCluster v2 clusters a memory bank of 128-d unit embeddings into 3,000 prototypes with 10
iterations at the start of every epoch (WHUS2-CD+: ~14,600 training patches; CloudSEN12 more).
This times ``cloudkit.ssl.kmeans.spherical_kmeans`` with each backend on the same random unit
vectors (each run includes the k-means++ seeding and the final assignment pass), best of
``--repeat`` runs, and prints both wall-clock times (with the CPU time of the process, a hint
of contention on a shared machine) and their ratio, and each backend's own peak RSS (the
process's VmHWM reset before it, the input vectors included: peak_memory.py). ``CPU_DEFAULT``
in kmeans.py holds the faster one on CPU. On CUDA the faiss backend must run on the GPU: a
faiss build without GPU support stops the script rather than timing faiss on the CPU.
``--json PATH`` writes the figures for benches/gpu_suite.py.

    python benches/bench_kmeans.py                         # 100,000 x 128, k 3000, 10 iterations
    python benches/bench_kmeans.py --n 2000 --k 50 --iters 2   # smoke run
    python benches/bench_kmeans.py --device cuda --repeat 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cloudkit.ssl.kmeans import spherical_kmeans

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_memory import measure_here  # noqa: E402

BACKENDS = ("faiss", "torch")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(
    x: torch.Tensor, k: int, iters: int, backend: str, repeat: int
) -> tuple[float, float]:
    """Best wall-clock seconds over ``repeat`` runs, and the process CPU seconds of that run."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        _sync(x.device)
        wall, cpu = time.perf_counter(), time.process_time()
        spherical_kmeans(x, k, iterations=iters, seed=0, backend=backend)
        _sync(x.device)
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def faiss_gpus() -> int:
    try:
        import faiss
    except ImportError:
        return 0
    return int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of vectors")
    parser.add_argument("--dim", type=int, default=128, help="vector dimension")
    parser.add_argument("--k", type=int, default=3000, help="number of clusters")
    parser.add_argument("--iters", type=int, default=10, help="k-means iterations")
    parser.add_argument("--repeat", type=int, default=1, help="runs per backend (best kept)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if unknown := set(backends) - set(BACKENDS):
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))}; expected {BACKENDS}")

    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("bench_kmeans: --device cuda but torch.cuda.is_available() is False")
        if "faiss" in backends and faiss_gpus() == 0:
            # timing faiss on the CPU under a "cuda" label would be a wrong figure
            sys.exit(
                "bench_kmeans: --device cuda but this faiss has no GPU support "
                "(faiss.get_num_gpus() is 0): pip install faiss-gpu, or --backends torch"
            )
    generator = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(args.n, args.dim, generator=generator), dim=1).to(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"spherical k-means on {where}: {args.n} x {args.dim} unit vectors, k = {args.k}, "
        f"{args.iters} iterations, {torch.get_num_threads()} torch threads"
    )
    seconds, peak_mb = {}, {}
    for backend in backends:
        with measure_here() as run:
            wall, cpu = best_time(x, args.k, args.iters, backend, args.repeat)
        seconds[backend], peak_mb[backend] = wall, run.peak_mb
        print(f"{backend}: {wall:.2f} s ({cpu:.1f} s CPU)  peak RSS {run.peak_mb:.0f} MB")
    if len(seconds) == 2:
        ratio = seconds["faiss"] / seconds["torch"]
        print(f"ratio faiss / torch: {ratio:.2f} (> 1: torch is faster)")
    if args.json:
        figures = {
            "device": where,
            "n": args.n,
            "dim": args.dim,
            "k": args.k,
            "iterations": args.iters,
            "repeat": args.repeat,
            "faiss_gpus": faiss_gpus(),
            "seconds": seconds,
            "peak_rss_mb": peak_mb,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
