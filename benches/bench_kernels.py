"""Rust kernels vs the plain numpy reference: resample + stack + scale + tile of one scene.

Each variant runs in its own process on the same arrays: a full 10980 x 10980 13-band scene
by default (4 bands at 10 m, 6 at 20 m, 3 at 60 m, random DN with a no-data corner).
Reported: wall time of the kernel, each variant's own peak RSS (its process's VmHWM, which
starts afresh at exec: peak_memory.py), and the ratios.

The Rust side is `_core.reflectance_tiles`, a whole-scene kernel the product does not use (it
streams tile rows), so the extension only has it when built with the `whole-raster` feature:

    cargo build --release --manifest-path rust/py/Cargo.toml \
        --features pyo3/extension-module,whole-raster
    cp target/release/lib_core.so python/cloudkit/_core.cpython-*.so   # the installed one

    python benches/bench_kernels.py            # full scene (needs ~25 GiB for numpy... see --size)
    python benches/bench_kernels.py --size 2196 --repeat 3

Build again without the feature (and copy) to go back to the product's extension.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the project root: tests.helpers
sys.path.insert(0, str(HERE))

from peak_memory import hwm_mb  # noqa: E402

FACTORS = (6, 1, 1, 1, 2, 2, 2, 1, 2, 6, 6, 2, 2)  # ESA order, relative to 10 m
OFFSETS = (-1000.0,) * 13


def make_bands(size: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    bands = []
    for f in FACTORS:
        n = size // f
        b = rng.integers(1, 12000, size=(n, n), dtype=np.uint16)
        b[: n // 5, : n // 5] = 0  # outside the swath
        bands.append(b)
    return bands


def run_variant(variant: str, size: int, tile: int, repeat: int, threads: int | None) -> dict:
    bands = make_bands(size)
    times = []
    checksum = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        if variant == "numpy":
            from tests.helpers import numpy_reference

            out = numpy_reference.reflectance_tiles(
                bands, FACTORS, size, size, 10000.0, OFFSETS, tile, 0
            )
        else:
            from cloudkit import _core

            out = _core.reflectance_tiles(
                bands, list(FACTORS), size, size, 10000.0, list(OFFSETS), tile, 0, threads
            )
        times.append(time.perf_counter() - t0)
        checksum = float(
            np.nansum(out[:: max(1, out.shape[0] // 7), :, ::37, ::41], dtype=np.float64)
        )
        del out
    peak_mb = hwm_mb()  # not ru_maxrss: it may carry the parent's peak across the exec
    return {"variant": variant, "seconds": min(times), "peak_rss_mb": peak_mb, "checksum": checksum}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10980, help="10 m grid size (multiple of 6)")
    parser.add_argument("--tile", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--variant", choices=("numpy", "rust"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from cloudkit import _core

    if not hasattr(_core, "reflectance_tiles"):
        raise SystemExit(
            "cloudkit._core has no reflectance_tiles: build it with the whole-raster feature "
            "(see the top of benches/bench_kernels.py)"
        )
    if args.variant:
        print(
            json.dumps(run_variant(args.variant, args.size, args.tile, args.repeat, args.threads))
        )
        return
    # baseline data generation costs the same in both processes; measure it once to report RSS fairly
    results = {}
    for variant in ("numpy", "rust"):
        cmd = [
            sys.executable,
            __file__,
            "--variant",
            variant,
            "--size",
            str(args.size),
            "--tile",
            str(args.tile),
            "--repeat",
            str(args.repeat),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
    base = make_bands_rss(args.size)
    n, r = results["numpy"], results["rust"]
    if not np.isclose(n["checksum"], r["checksum"], rtol=1e-6):
        raise SystemExit(f"outputs differ: numpy checksum {n['checksum']} vs rust {r['checksum']}")
    print(
        f"scene {args.size}x{args.size}, 13 bands, tile {args.tile} (input DN arrays alone: {base:.0f} MB RSS)"
    )
    for v in (n, r):
        print(f"  {v['variant']:5s}  {v['seconds']:7.3f} s   peak RSS {v['peak_rss_mb']:8.0f} MB")
    print(
        f"  speed-up rust vs numpy: {n['seconds'] / r['seconds']:.2f}x; "
        f"peak memory numpy/rust: {n['peak_rss_mb'] / r['peak_rss_mb']:.2f}x"
    )


def make_bands_rss(size: int) -> float:
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_kernels as b; "
        f"b.make_bands({size}); print(b.hwm_mb())"
    )
    return float(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )


if __name__ == "__main__":
    main()
