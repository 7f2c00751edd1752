"""Smoke runs of the benchmark scripts on small inputs, so they cannot rot.

The real figures come from running them at full size (see the README's performance section).
"""

from __future__ import annotations

import json
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
    assert "images/s" in out and "peak RSS" in out


def test_kmeans_benchmark_smoke(tmp_path):
    pytest.importorskip("faiss")
    figures = tmp_path / "kmeans.json"
    out = _run(
        str(BENCHES / "bench_kmeans.py"),
        "--n",
        "2000",
        "--k",
        "50",
        "--iters",
        "2",
        "--json",
        str(figures),
    )
    assert "ratio faiss / torch" in out and out.count("peak RSS") == 2
    assert set(json.loads(figures.read_text())["seconds"]) == {"faiss", "torch"}
    assert set(json.loads(figures.read_text())["peak_rss_mb"]) == {"faiss", "torch"}


def _pretrain_bench(store: Path, figures: Path) -> list[str]:
    """bench_pretrain.py's arguments for a few CPU steps on a small store."""
    return [
        str(BENCHES / "bench_pretrain.py"),
        "--device", "cpu", "--crop", "32", "--batch-size", "4", "--steps", "1",
        "--warmup", "1", "--workers", "0", "--batches", "2", "--threads", "1",
        "--store", str(store), "--json", str(figures),
    ]  # fmt: skip


@pytest.mark.shared_data
def test_pretrain_benchmark_smoke(tmp_path, tmp_path_factory):
    from tests.helpers.pretrain_stores import real_store, subset_store

    store = subset_store(real_store(tmp_path_factory), tmp_path / "tiles.zarr", 64)
    out = _run(*_pretrain_bench(store, tmp_path / "pretrain.json"))
    assert "loader / step" in out and out.count("peak RSS") == 3
    figures = json.loads((tmp_path / "pretrain.json").read_text())
    assert figures["world_size"] == 1 and figures["tiles"] == 64
    assert set(figures["train_step_images_per_s"]) == {"moco", "deepcluster"}
    assert set(figures["train_step_peak_rss_mb"]) == {"moco", "deepcluster"}
    assert figures["loader_peak_rss_mb"] > 0
    assert set(figures["loader_over_step"]) == {"moco", "deepcluster"}


@pytest.mark.shared_data
def test_pretrain_benchmark_under_torchrun(tmp_path, tmp_path_factory):
    """The DDP path of the GPU suite, on two CPU processes (Gloo)."""
    from tests.helpers.pretrain_stores import real_store, subset_store

    store = subset_store(real_store(tmp_path_factory), tmp_path / "tiles.zarr", 64)
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    out = _run(*torchrun, *_pretrain_bench(store, tmp_path / "ddp.json"))
    assert "2 processes (DDP)" in out and "loader: not timed under torchrun" in out
    figures = json.loads((tmp_path / "ddp.json").read_text())
    assert figures["world_size"] == 2 and figures["loader_images_per_s"] is None
    assert set(figures["train_step_images_per_s"]) == {"moco", "deepcluster"}


def test_heads_benchmark_smoke():
    out = _run(str(BENCHES / "bench_heads.py"), "--size", "64", "--steps", "1", "--warmup", "1")
    assert "paper" in out and "unet" in out and "peak RSS MB" in out


def test_network_benchmark_smoke():
    out = _run(str(BENCHES / "bench_network.py"), "--batch", "1", "--window", "64",
               "--repeat", "1", "--threads", "1")  # fmt: skip
    assert "default fp32" in out and "s/Mpx" in out and "peak RSS" in out


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

    from cloudkit.models.zoo import SHIPPED

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
    # the geometric shadow check (predict's default) is never worse than the model's shadow
    for name, row in results.items():
        checked, plain = row["cloudkit (default)"], row["cloudkit (default), no shadow check"]
        assert checked["cloud_f1"] == pytest.approx(plain["cloud_f1"], abs=1e-3), name
        assert checked["shadow_share"] <= plain["shadow_share"], name
        if plain.get("shadow_f1"):
            assert checked["shadow_f1"] >= plain["shadow_f1"], name
            assert checked["shadow_precision"] >= plain["shadow_precision"], name


@pytest.mark.shared_data
def test_reduced_decoding_bench_finds_levels_close_to_the_average(tmp_path):
    """Real 10 m pixels: JPEG 2000 level 1 is near the 2 x 2 mean, and the default model's
    masks and scores on the human labels barely move."""
    figures = tmp_path / "reduced.json"
    out = _run(str(BENCHES / "bench_reduced_decode.py"), "--json", str(figures))
    assert "peak RSS of the run" in out
    results = json.loads(figures.read_text())
    for name, diff in results["reflectance"].items():
        assert 0 < diff["mean_abs"] < 0.02, name
        assert diff["relative_mean_abs"] < 0.1, name
    masks = results["masks"]
    assert masks["changed_fraction"] < 0.02
    for labels in ("dense", "scribbles"):
        full, reduced = masks[labels]["full"], masks[labels]["reduced"]
        assert reduced["cloud_f1"] == pytest.approx(full["cloud_f1"], abs=0.02)
        assert reduced["mean_iou"] == pytest.approx(full["mean_iou"], abs=0.02)


def test_loader_scale_benchmark_smoke():
    out = _run(
        str(BENCHES / "bench_loader_scale.py"),
        "--stores", "12", "--skip-huge", "--images", "64",
    )  # fmt: skip
    assert "dataset of 348 tiles from 12 store(s)" in out  # 29 of 36 half valid
    assert "num_workers=2" in out and "peak RSS" in out


def test_cluster_benchmark_smoke(tmp_path):
    pytest.importorskip("distributed", reason="the cluster extra is not installed")
    out = _run(
        str(BENCHES / "bench_cluster.py"), "--scenes", "2", "--size", "384", "--workers", "1",
        env_extra={"CLOUDKIT_BENCH_CACHE": str(tmp_path)},
    )  # fmt: skip
    assert "one process" in out and "local:1" in out and "scenes/min" in out
    assert "tile (into one store):" in out and "predict (default model):" in out


def test_store_commit_benchmark_smoke():
    out = _run(str(BENCHES / "bench_store_commit.py"), "--tiles", "4", "--scenes", "1",
               "--skip-s3")  # fmt: skip
    assert "local store (rename)" in out and "scenes/hour into one store" in out
    assert "peak RSS" in out


def test_quality_seeds_gives_the_mean_and_spread_of_runs(tmp_path):
    def run(name: str, f1: float) -> Path:
        figures = {"cloud_f1": f1, "shadow_f1": 0.5, "mean_iou": 0.3}
        methods = {
            f"cloudkit ({name})": figures,
            f"cloudkit ({name}), no shadow check": {**figures, "cloud_f1": 0.0},
            "all cloud": {"cloud_f1": 0.9},
        }
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"results": {"T29UNU L2A 60 m": methods}}))
        return path

    a, b = run("a", 0.8), run("b", 0.9)
    out = _run(str(BENCHES / "quality_seeds.py"), f"light={a},{b}", f"one={a}")
    assert "| light (2) | 0.850 ± 0.071 | 0.500 ± 0.000 |" in out
    assert "| one (1) | 0.800 | 0.500 |" in out


def test_label_fractions_gives_mean_and_spread_per_start_and_fraction(tmp_path):
    def score(name: str, f1: float) -> None:
        figures = {"cloud_f1": f1, "mean_iou": 0.3}
        methods = {f"cloudkit ({name})": figures, "all cloud": {"cloud_f1": 0.6}}
        held_out = {"CloudSEN12 dense (6 patches)": methods, "s2cloudless test arrays L1C": methods}
        (tmp_path / f"{name}.json").write_text(json.dumps({"results": held_out}))

    score("random-f10-s0", 0.4)
    score("random-f10-s1", 0.6)
    score("moco-f100-s0", 0.8)
    (tmp_path / "notes.json").write_text("{}")  # not a grid run's name: left alone
    out = _run(
        str(BENCHES / "label_fractions.py"), str(tmp_path), "--figure", str(tmp_path / "r.png")
    )
    assert "| moco | 100 % | 1 | 0.800 ± 0.000 | 0.300 ± 0.000 | – | 0.800 ± 0.000 |" in out
    assert "| random | 10 % | 2 | 0.500 ± 0.141 |" in out
    assert "| all cloud | – | – | 0.600 | – | – | 0.600 |" in out
    assert (tmp_path / "r.png").stat().st_size > 1000
