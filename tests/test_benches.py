"""Smoke runs of the benchmark scripts on small inputs, so they cannot rot.

The real figures come from running them at full size (see the README's performance section).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cloudkit import _core

BENCHES = Path(__file__).resolve().parents[1] / "benches"


def _run(*args: str, env_extra: dict | None = None) -> str:
    import os

    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.skipif(
    not hasattr(_core, "reflectance_tiles"),
    reason="bench_kernels.py needs _core built with the whole-raster feature (see its docstring)",
)
def test_kernel_benchmark_smoke():
    out = _run(str(BENCHES / "bench_kernels.py"), "--size", "1200", "--tile", "128")
    assert "speed-up rust vs numpy" in out


def test_tile_benchmark_smoke(tmp_path):
    out = _run(
        str(BENCHES / "bench_tile.py"),
        "--size",
        "600",
        env_extra={"CLOUDKIT_BENCH_CACHE": str(tmp_path)},
    )
    assert "tile / best decode" in out


@pytest.mark.shared_data
def test_loader_benchmark_smoke():
    out = _run(
        str(BENCHES / "bench_loader.py"),
        "--tile-size",
        "64",
        "--size",
        "48",
        "--images",
        "64",
    )
    assert "images/s" in out


def test_heads_benchmark_smoke():
    out = _run(str(BENCHES / "bench_heads.py"), "--size", "64", "--steps", "1", "--warmup", "1")
    assert "paper" in out and "unet" in out


def test_predict_benchmark_smoke(tmp_path):
    out = _run(
        str(BENCHES / "bench_predict.py"),
        "--size",
        "384",
        "--window",
        "64",
        "--overlap",
        "16",
        "--precisions",
        "fp32",
        env_extra={"CLOUDKIT_BENCH_CACHE": str(tmp_path)},
    )
    assert "decode (floor)" in out and "decode floor" in out
    assert "light-fp32" in out and "unet-fp32" in out and "unet / light" in out


@pytest.mark.shared_data
def test_quality_bench_measures_what_the_default_models_card_says(tmp_path):
    """The shipped weights score what their card says, and beat the trivial masks and the
    brightness threshold chosen on other data on both sets of human labels."""
    import json

    from cloudkit.model_zoo import SHIPPED

    figures = tmp_path / "quality.json"
    _run(str(BENCHES / "bench_quality.py"), "--no-peers", "--json", str(figures))
    results = json.loads(figures.read_text())["results"]
    card = {(s.metric, s.data): s.value for s in SHIPPED[0].card.scores}
    dense = results["CloudSEN12 dense (6 patches)"]
    ours = dense["cloudkit (default)"]
    cs12 = next(data for metric, data in card if data.startswith("CloudSEN12 human labels, 6"))
    assert ours["cloud_f1"] == pytest.approx(card["cloud F1 against human labels", cs12], abs=0.01)
    assert ours["mean_iou"] == pytest.approx(card["mean IoU of the 4 classes", cs12], abs=0.01)
    for name in ("CloudSEN12 dense (6 patches)", "CloudSEN12 scribbles (10 patches)"):
        row = results[name]
        threshold = next(v for k, v in row.items() if k.startswith("brightness B"))
        for baseline in (row["all clear"], row["all cloud"], threshold):
            assert row["cloudkit (default)"]["cloud_f1"] > baseline["cloud_f1"]
            assert row["cloudkit (default)"]["mean_iou"] > baseline["mean_iou"]
