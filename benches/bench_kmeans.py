"""Spherical k-means on CPU: faiss vs cloudkit's torch backend, to choose ``backend="auto"``.

DeepCluster v2 clusters a memory bank of 128-d unit embeddings into 3,000 prototypes with 10
iterations at the start of every epoch (WHUS2-CD+: ~14,600 training patches; CloudSEN12 more).
This times ``cloudkit.ssl.kmeans.spherical_kmeans`` with each backend on the same random unit
vectors (each run includes the k-means++ seeding and the final assignment pass), best of
``--repeat`` runs, and prints both wall-clock times (with the CPU time of the process, a hint
of contention on a shared machine) and their ratio. ``CPU_DEFAULT`` in kmeans.py holds the
faster one.

    python benches/bench_kmeans.py                         # 100,000 x 128, k 3000, 10 iterations
    python benches/bench_kmeans.py --n 2000 --k 50 --iters 2   # smoke run
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cloudkit.ssl.kmeans import spherical_kmeans


def best_time(
    x: torch.Tensor, k: int, iters: int, backend: str, repeat: int
) -> tuple[float, float]:
    """Best wall-clock seconds over ``repeat`` runs, and the process CPU seconds of that run."""
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        spherical_kmeans(x, k, iterations=iters, seed=0, backend=backend)
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of vectors")
    parser.add_argument("--dim", type=int, default=128, help="vector dimension")
    parser.add_argument("--k", type=int, default=3000, help="number of clusters")
    parser.add_argument("--iters", type=int, default=10, help="k-means iterations")
    parser.add_argument("--repeat", type=int, default=1, help="runs per backend (best kept)")
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(args.n, args.dim, generator=generator), dim=1)
    print(
        f"spherical k-means on CPU: {args.n} x {args.dim} unit vectors, k = {args.k}, "
        f"{args.iters} iterations, {torch.get_num_threads()} torch threads"
    )
    faiss_s, faiss_cpu = best_time(x, args.k, args.iters, "faiss", args.repeat)
    print(f"faiss: {faiss_s:.2f} s ({faiss_cpu:.1f} s CPU)")
    torch_s, torch_cpu = best_time(x, args.k, args.iters, "torch", args.repeat)
    print(f"torch: {torch_s:.2f} s ({torch_cpu:.1f} s CPU)")
    print(f"ratio faiss / torch: {faiss_s / torch_s:.2f} (> 1: torch is faster)")


if __name__ == "__main__":
    main()
