"""benches/gpu_suite.py on a machine without CUDA: it refuses cleanly, its plan holds every GPU
measurement, its steps are recorded whatever happens to them, and its table is laid out from
the records. The CUDA calls themselves run only on a GPU (see the README's "GPU suite")."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHES = Path(__file__).resolve().parents[1] / "benches"
SUITE = BENCHES / "gpu_suite.py"


def _load_suite():
    """benches/ is no package: load the script as the module ``gpu_suite``."""
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


suite = _load_suite()


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine with one
    return subprocess.run(
        [sys.executable, str(SUITE), *args], capture_output=True, text=True, timeout=120, env=env
    )


class TestWithoutCuda:
    def test_refuses_with_one_line_and_exit_code_1(self, tmp_path):
        out = _run("--out", str(tmp_path / "results"))
        assert out.returncode == 1
        assert out.stderr == suite.NO_CUDA + "\n"
        assert "Traceback" not in out.stderr and out.stdout == ""
        assert not (tmp_path / "results").exists()

    def test_dry_run_prints_every_step_without_cuda(self, tmp_path):
        out = _run("--dry-run", "--out", str(tmp_path))
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        names = [line.split(" ")[0].rstrip(":") for line in lines]
        assert names == [
            "prepare",
            "pretrain-eager",
            "kmeans",
            "predict-light",
            "predict-unet",
            "predict-default",
            "paper-crop",
            "ddp",
            "pretrain-compiled",
        ]
        assert "ddp: not run (1 GPU: DDP not measured)" in lines
        assert not (tmp_path / "logs").exists()  # a dry run writes nothing


class TestPlan:
    def commands(self, gpus: int) -> dict[str, str]:
        return {s.name: " ".join(s.cmd or ()) for s in suite.plan(Path("out"), gpus)}

    def test_pretraining_at_256_px_batch_128_bf16_compile_off_and_on(self):
        cmds = self.commands(1)
        for name, flag in (("pretrain-eager", "--no-compile"), ("pretrain-compiled", "--compile")):
            cmd = cmds[name]
            assert "bench_pretrain.py --device cuda --crop 256 --batch-size 128 --amp" in cmd
            assert "--methods moco,deepcluster" in cmd
            assert f" {flag} " in cmd and f"--json {Path('out/logs') / name}.json" in cmd
            assert f"--store {suite.store_path()}" in cmd

    def test_kmeans_with_faiss_on_the_gpu(self):
        cmd = self.commands(1)["kmeans"]
        assert "bench_kmeans.py --device cuda --n 100000 --dim 128 --k 3000 --iters 10" in cmd

    def test_predict_per_head_on_the_full_scene_and_the_paper_crop(self):
        cmds = self.commands(1)
        for head in ("light", "unet", "default"):
            cmd = cmds[f"predict-{head}"]
            assert "bench_predict.py --size 10980 --device cuda --precisions bf16" in cmd
            assert f"--heads {head} --json out/logs/predict-{head}.json" in cmd
        assert "--paper-crop 2048 --json out/logs/paper-crop.json" in cmds["paper-crop"]

    def test_ddp_through_torchrun_on_every_gpu(self):
        (ddp,) = [s for s in suite.plan(Path("out"), 4) if s.name == "ddp"]
        cmd = " ".join(ddp.cmd)
        assert "-m torch.distributed.run --standalone --nproc-per-node 4 " in cmd
        assert "bench_pretrain.py --device cuda" in cmd and "--batch-size 128" in cmd
        (single,) = [s for s in suite.plan(Path("out"), 1) if s.name == "ddp"]
        assert single.cmd is None and single.note == "1 GPU: DDP not measured"

    def test_prepare_alone_is_outside_the_budget(self):
        steps = suite.plan(Path("out"), 1)
        assert [s.name for s in steps if not s.budgeted] == ["prepare"]
        assert all(s.timeout <= suite.BUDGET_S for s in steps if s.budgeted)


def _step(cmd: str, kind: str = "paper-crop", timeout: int = 30, figures: Path | None = None):
    return suite.Step("demo", kind, "demo", (sys.executable, "-c", cmd), timeout, figures)


def _paper_crop_step(folder: Path, crop: int, seconds: float):
    """A step that writes a paper-crop figure as bench_predict.py --json does."""
    figures = folder / "figures.json"
    text = json.dumps({"paper_crop": {"crop": crop, "seconds": seconds}})
    return _step(f"open({str(figures)!r}, 'w').write({text!r})", figures=figures)


class TestRunStep:
    def test_a_failed_step_is_recorded_with_its_last_line(self, tmp_path):
        record = suite.run_step(_step("print('half way'); raise SystemExit('boom')"), tmp_path, 60)
        assert record["status"] == "failed" and record["returncode"] == 1
        assert record["note"] == "exit 1: boom"
        assert record["output_tail"] == ["half way", "boom"]
        assert (tmp_path / "demo.log").read_text() == "half way\nboom\n"

    def test_a_step_past_its_timeout_is_killed(self, tmp_path, monkeypatch):
        monkeypatch.setattr(suite, "MIN_STEP_S", 1)
        cmd = "import time; print('waiting', flush=True); time.sleep(60)"
        record = suite.run_step(_step(cmd, timeout=1), tmp_path, 60)
        assert record["status"] == "timeout" and record["returncode"] is None
        assert record["note"] == "killed after 1 s: waiting"
        assert record["seconds"] < 30

    def test_the_budget_caps_a_timeout_and_skips_a_step_it_cannot_hold(self, tmp_path):
        record = suite.run_step(_paper_crop_step(tmp_path, 8, 0.5), tmp_path, 12)
        assert record["status"] == "ok" and record["timeout_s"] == 12
        assert record["results"] == {"crop": 8, "seconds": 0.5}
        skipped = suite.run_step(_step("print('never')"), tmp_path, 5)
        assert skipped["status"] == "over-budget" and "budget" in skipped["note"]
        assert suite.rows(skipped) == [("NOT RUN", "the time budget (--budget) was spent")]
        assert "returncode" not in skipped

    def test_exit_0_without_figures_is_a_failure(self, tmp_path):
        record = suite.run_step(_step("print('done')", kind="predict"), tmp_path, 60)
        assert record["status"] == "failed" and "unreadable" in record["note"]


def test_the_suite_goes_on_after_a_failed_step_and_writes_its_report(tmp_path):
    steps = [
        suite.Step("broken", "paper-crop", "broken", (sys.executable, "-c", "1 / 0"), 30),
        _paper_crop_step(tmp_path, 2048, 1.25),
    ]
    report = suite.run_suite(steps, tmp_path, {"gpus": ["a GPU"]}, budget=100)
    assert [r["status"] for r in report["steps"]] == ["failed", "ok"]
    assert report["steps"][0]["note"] == "exit 1: ZeroDivisionError: division by zero"
    assert report["seconds"] == sum(r["seconds"] for r in report["steps"])
    assert json.loads((tmp_path / "gpu_suite.json").read_text()) == report
    table = (tmp_path / "gpu_suite.md").read_text()
    assert "| broken | FAILED | exit 1: ZeroDivisionError: division by zero |" in table
    assert "| demo | paper head, one 2048 x 2048 px crop, forward | 1.25 s |" in table


def test_the_environment_names_versions_and_commit():
    env = suite.environment(0)
    assert env["gpus"] == [] and env["torch"] and env["cloudkit"]
    assert env["commit"] is None or env["commit"]  # None outside a git checkout


PREDICT_FIGURES = {
    "scene": "S2B_MSIL1C_20230615T104031_N0400_R008_T31TCJ_20230615T131517.SAFE",
    "resolution": 10.0,
    "floors": {
        "decode": {"wall_s": 10.0, "peak_mb": 1100.0},
        "decode-20m-reduced": {"wall_s": 6.0, "peak_mb": 900.0},
    },
    "runs": {
        "light-bf16": {
            "wall_s": 15.0,
            "peak_mb": 2500.0,
            "read_s": 3.0,
            "preprocess_s": 2.0,
            "model_s": 4.0,
            "write_s": 1.0,
            "windows": 851,
            "windows_per_s": 60.0,
            "model_windows_per_s": 212.8,
            "over_decode": 1.5,
        }
    },
    "model_only": {"light": {"windows": 851, "seconds": 2.0}},
    "paper_crop": None,
}


def test_predict_and_paper_crop_figures_come_from_bench_predicts_json(tmp_path):
    figures = tmp_path / "predict.json"
    figures.write_text(json.dumps(PREDICT_FIGURES))
    assert suite.PARSERS["predict"]("", figures) == PREDICT_FIGURES
    with pytest.raises(ValueError, match="paper_crop"):
        suite.parse_paper_crop("", figures)
    figures.write_text(
        json.dumps({**PREDICT_FIGURES, "paper_crop": {"crop": 2048, "seconds": 1.5}})
    )
    assert suite.parse_paper_crop("", figures) == {"crop": 2048, "seconds": 1.5}
    with pytest.raises(ValueError, match="wrote no"):
        suite.PARSERS["predict"]("", tmp_path / "absent.json")


def _report() -> dict:
    pretrain = {
        "device": "cuda:0", "gpu": "NVIDIA H200", "world_size": 1, "batch_size": 128,
        "crop": 256, "amp": True, "compile": False, "channels_last": True, "workers": 8,
        "tiles": 1551, "steps": 20, "train_step_images_per_s": {"moco": 2500.0,
        "deepcluster": 2000.0}, "loader_images_per_s": 3000.0,
        "loader_over_step": {"moco": 1.2, "deepcluster": 1.5},
    }  # fmt: skip
    kmeans = {
        "device": "NVIDIA H200", "n": 100000, "dim": 128, "k": 3000, "iterations": 10,
        "repeat": 3, "faiss_gpus": 1, "seconds": {"faiss": 0.412, "torch": 0.9},
    }  # fmt: skip
    predict = PREDICT_FIGURES

    def step(name: str, kind: str, title: str, status: str, note: str = "", results=None):
        return {"name": name, "kind": kind, "title": title, "status": status, "note": note,
                "results": results}  # fmt: skip

    return {
        "started": "2026-01-02T03:04:05+00:00",
        "budget_s": 480,
        "seconds": 301.4,
        "environment": {"gpus": ["NVIDIA H200"], "torch": "2.15.0", "cuda": "13.2",
                        "faiss": "1.15.1", "faiss_gpus": 1, "cpus": 16,
                        "commit": "abc1234"},  # fmt: skip
        "steps": [
            step("pretrain-eager", "pretrain", "pretraining, compile off", "ok", results=pretrain),
            step("kmeans", "kmeans", "DeepCluster k-means", "ok", results=kmeans),
            step("predict-light", "predict", "predict, light", "ok", results=predict),
            step("paper-crop", "paper-crop", "paper head, 2048 px crop", "failed",
                 "exit 1: torch.OutOfMemoryError: CUDA out of memory"),
            step("ddp", "pretrain", "pretraining, DDP", "skipped", "1 GPU: DDP not measured"),
            step("pretrain-compiled", "pretrain", "pretraining, compile on", "timeout",
                 "killed after 180 s: compiling | still"),
        ],
    }  # fmt: skip


EXPECTED_TABLE = """\
GPU suite, 2026-01-02T03:04:05+00:00: 1 x NVIDIA H200, torch 2.15.0 (CUDA 13.2), faiss 1.15.1 \
(GPUs: 1), 16 CPUs, commit abc1234; 301 s, budget 480 s (prepare excluded)

| step | measurement | result |
|---|---|---|
| pretraining, compile off | MoCo v2 train step (256 px, batch 128, bf16, channels_last, \
compile off) | 2,500 img/s |
| pretraining, compile off | DeepCluster v2 train step (256 px, batch 128, bf16, channels_last, \
compile off) | 2,000 img/s |
| pretraining, compile off | loader (8 workers, 1,551 tiles) | 3,000 img/s, 1.20x the MoCo v2 \
step, 1.50x the DeepCluster v2 step: keeps the GPU busy |
| DeepCluster k-means | k-means, faiss on NVIDIA H200: 100,000 x 128, k 3000, 10 iterations \
(best of 3) | 0.41 s |
| DeepCluster k-means | k-means, torch on NVIDIA H200: 100,000 x 128, k 3000, 10 iterations \
(best of 3) | 0.90 s |
| predict, light | decoding floor | 10.0 s |
| predict, light | decoding floor (decode-20m-reduced) | 6.0 s |
| predict, light | light head end to end, bf16, 851 windows | 15.0 s wall, 1.50x decode (10.0 \
s); read 3.0, preprocess 2.0, model 4.0, write 1.0 s; 212.8 windows/s model; peak 2,500 MB |
| predict, light | light head model only, 851 windows on the GPU | 2.00 s (426 windows/s) |
| paper head, 2048 px crop | FAILED | exit 1: torch.OutOfMemoryError: CUDA out of memory |
| pretraining, DDP | not run | 1 GPU: DDP not measured |
| pretraining, compile on | TIMED OUT | killed after 180 s: compiling \\| still |
"""


def test_the_table_of_a_report_with_a_failed_a_skipped_and_a_timed_out_step():
    assert suite.markdown(_report()) == EXPECTED_TABLE


def test_the_report_is_written_as_json_and_markdown(tmp_path):
    report = _report()
    suite.write_report(report, tmp_path)
    assert json.loads((tmp_path / "gpu_suite.json").read_text()) == report
    assert (tmp_path / "gpu_suite.md").read_text() == EXPECTED_TABLE
