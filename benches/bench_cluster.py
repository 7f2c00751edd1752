"""`cloudkit tile` and `cloudkit predict` over N scenes on one machine, and on local Dask
clusters of 1, 2 and 4 worker processes (`--cluster local:K`): wall time, scenes per minute
(per worker too), and the scaling curve.

The scenes are synthetic L1C products (``--size`` px at 10 m, different seeds and tiles),
made once and cached in ~/.cache/cloudkit/bench. Every run is its own `cloudkit` process: tile
into its own store (every worker committing into that one store, tiles of 384 px at 10 m),
predict with the default model into its own folder; peak RSS is the largest process of the
run (the client, or a worker). On the 2-core development machine the curve flattens at 2
workers: each worker gets an equal share of the cores, so more workers only split them.

    python benches/bench_cluster.py                    # 8 scenes of 2304 px, both commands
    python benches/bench_cluster.py --scenes 4 --size 768 --workers 1,2 --commands tile
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_tile import CACHE, measure  # noqa: E402


def scenes(count: int, size: int) -> list[Path]:
    from cloudkit.sample.synthetic import write_l1c_safe

    folder = CACHE / f"cluster-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    # distinct tile ids: distinct scene names and outputs
    return [
        write_l1c_safe(folder, size_10m=size, seed=k, tile_id=f"T31T{chr(65 + k % 26)}J").path
        for k in range(count)
    ]


def run_command(command: str, paths: list[str], out: Path, extra: list[str]) -> dict:
    """One run of ``command`` over ``paths`` into ``out``: seconds and peak RSS; exits when
    its output does not hold every scene."""
    cloudkit = shutil.which("cloudkit") or "cloudkit"
    if command == "tile":
        seconds, peak_mb = measure([cloudkit, "tile", *paths, str(out), *extra])
        from cloudkit.io.store import StoreReader

        done = StoreReader.open(out).num_scenes
    else:
        seconds, peak_mb = measure([cloudkit, "predict", *paths, "-o", str(out), *extra])
        done = len(list(out.glob("*_mask.tif")))
    if done != len(paths):
        raise SystemExit(f"{command} {' '.join(extra)}: {done} of {len(paths)} scenes written")
    return {"seconds": seconds, "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--size", type=int, default=2304, help="10 m size (a multiple of 6)")
    parser.add_argument("--workers", default="1,2,4", help="local cluster sizes")
    parser.add_argument("--commands", default="tile,predict")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    paths = [str(p) for p in scenes(args.scenes, args.size)]
    workers = [int(k) for k in args.workers.split(",")]
    runs = {"one process": ([], 1)} | {f"local:{k}": (["--cluster", f"local:{k}"], k)
                                       for k in workers}  # fmt: skip
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="cloudkit-bench-cluster-") as tmp:
        for command in args.commands.split(","):
            figures[command] = {}
            for name, (extra, _) in runs.items():
                out = Path(tmp) / f"{command}-{name.replace(':', '-').replace(' ', '-')}"
                figures[command][name] = run_command(command, paths, out, extra)
    print(f"{args.scenes} scenes of {args.size} px at 10 m, 2 cores")
    for command, by_run in figures.items():
        base = by_run["one process"]["seconds"]
        what = "into one store" if command == "tile" else "default model"
        print(f"{command} ({what}):")
        for name, f in by_run.items():
            per_minute = 60 * args.scenes / f["seconds"]
            count = runs[name][1]
            print(
                f"  {name:12s} {f['seconds']:7.1f} s  {per_minute:6.1f} scenes/min "
                f"({per_minute / count:5.1f} per worker)  {base / f['seconds']:.2f}x one "
                f"process  peak RSS {f['peak_mb']:6.0f} MB"
            )
    if args.json:
        args.json.write_text(json.dumps({"scenes": args.scenes, "size": args.size, **figures}))


if __name__ == "__main__":
    main()
