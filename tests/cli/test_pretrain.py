"""`cloudkit pretrain` through the CLI: a small run, and every user error as one stderr line
with exit code 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cloudkit.io.store import StoreLayout, TileStore
from cloudkit.models.checkpoint import PRETRAINING, load_checkpoint, save_checkpoint
from cloudkit.train.metrics import read_metrics
from tests.helpers.cli import fails_with_one_line, run
from tests.helpers.pretrain_stores import BANDS, TILE, real_store, subset_store
from tests.helpers.training import diverging

MOCO = ["--method", "moco", "--batch-size", "8", "--queue-size", "16", "--crop", "32"]
MOCO += ["--workers", "0"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return subset_store(real_store(tmp_path_factory), tmp_path_factory.mktemp("s") / "s.zarr", 24)


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("u")
    return subset_store(real_store(tmp_path_factory), folder / "u.zarr", 24, labels=False)


def _forged_checkpoint(path: Path, *, method: str = "moco", bands=BANDS) -> Path:
    """The fields the resume checks read, as a real checkpoint holds them."""
    return save_checkpoint(
        {
            **PRETRAINING.header(),
            "method": method,
            "bands": list(bands),
            "num_samples": 24,
            "epoch": 1,
            "config": {"method": method},
        },
        path / "last.pt",
    )


def test_help_imports_no_torch():
    code = (
        "import sys; from cloudkit.cli import main; rc = main(['pretrain', '--help']); "
        "assert 'torch' not in sys.modules, 'heavy import'; sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for flag in ("--method", "--queue-size", "--prototypes", "--resume", "--views", "--amp"):
        assert flag in out.stdout


def test_run_then_resume(store, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "pretrain", store, *MOCO, "--epochs", "1", "--out", out)
    assert code == 0, err
    assert stdout.strip() == str(out / "last.pt")
    assert "epoch 1/1" in err
    # continue to 2 epochs: options left out come from the checkpoint (queue, crop, batch)
    code, stdout, err = run(
        capsys, "pretrain", store, "--workers", "0", "--epochs", "2", "--out", out, "--resume"
    )
    assert code == 0, err
    state = load_checkpoint(out)
    assert state["epoch"] == 2 and state["config"]["queue_size"] == 16
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]


def test_empty_store(tmp_path, capsys):
    empty = tmp_path / "empty.zarr"
    TileStore.open(
        empty, StoreLayout(bands=BANDS, tile_size=TILE, overlap=0, resolution=60)
    ).close()
    line = fails_with_one_line(capsys, "pretrain", empty, *MOCO, "--out", tmp_path / "o")
    assert "empty.zarr" in line and "no tile with valid fraction" in line


def test_missing_store(tmp_path, capsys):
    line = fails_with_one_line(capsys, "pretrain", tmp_path / "nope.zarr", "--out", tmp_path / "o")
    assert "nope.zarr" in line


def test_batch_larger_than_the_data(store, tmp_path, capsys):
    line = fails_with_one_line(
        capsys, "pretrain", store, "--batch-size", "64", "--crop", "32", "--out", tmp_path / "o"
    )
    assert f"--batch-size 64 but {store} has 24 usable tiles" in line
    assert line.endswith("lower --batch-size")


def test_more_prototypes_than_tiles(store, tmp_path, capsys):
    args = ["--method", "deepcluster", "--batch-size", "8", "--prototypes", "30,30"]
    line = fails_with_one_line(capsys, "pretrain", store, *args, "--out", tmp_path / "o")
    assert "--prototypes 30,30" in line and "24 usable tiles" in line


def test_queue_not_a_multiple_of_the_batch(store, tmp_path, capsys):
    args = ["--batch-size", "8", "--queue-size", "20", "--crop", "32"]
    line = fails_with_one_line(capsys, "pretrain", store, *args, "--out", tmp_path / "o")
    assert "--queue-size 20" in line and "--queue-size 16" in line


def test_crop_larger_than_the_tiles(store, tmp_path, capsys):
    line = fails_with_one_line(capsys, "pretrain", store, "--crop", "64", "--out", tmp_path / "o")
    assert "--crop 64" in line and "32 px" in line


def test_cloudiness_pairs_with_moco(store, tmp_path, capsys):
    args = ["--views", "cloudiness-pair", "--out", tmp_path / "o"]
    line = fails_with_one_line(capsys, "pretrain", store, *MOCO, *args)
    assert "cloudiness-pair is for --method deepcluster" in line


def test_cloudiness_pairs_without_labels(unlabelled, tmp_path, capsys):
    args = ["--method", "deepcluster", "--batch-size", "8", "--prototypes", "4", "--crop", "32"]
    args += ["--views", "cloudiness-pair", "--out", tmp_path / "o"]
    line = fails_with_one_line(capsys, "pretrain", unlabelled, *args)
    assert "needs labelled tiles" in line and "u.zarr" in line


def test_option_of_the_other_method(store, tmp_path, capsys):
    line = fails_with_one_line(
        capsys, "pretrain", store, *MOCO, "--prototypes", "8", "--out", tmp_path / "o"
    )
    assert "--prototypes applies to --method deepcluster only" in line


def test_bad_prototypes(store, tmp_path, capsys):
    args = ["--method", "deepcluster", "--prototypes", "8,x", "--out", tmp_path / "o"]
    line = fails_with_one_line(capsys, "pretrain", store, *args)
    assert "--prototypes '8,x'" in line


def test_resume_with_other_bands(store, tmp_path, capsys):
    _forged_checkpoint(tmp_path, bands=("B02", "B03", "B04", "B08"))
    line = fails_with_one_line(capsys, "pretrain", store, *MOCO, "--out", tmp_path, "--resume")
    assert "bands B02,B03,B04,B08" in line and ",".join(BANDS) in line


def test_resume_with_other_method(store, tmp_path, capsys):
    _forged_checkpoint(tmp_path, method="deepcluster")
    line = fails_with_one_line(capsys, "pretrain", store, *MOCO, "--out", tmp_path, "--resume")
    assert "is a deepcluster run but --method is moco" in line


def test_resume_from_nothing(store, tmp_path, capsys):
    line = fails_with_one_line(capsys, "pretrain", store, *MOCO, "--out", tmp_path, "--resume")
    assert f"--resume but {tmp_path} holds no last.pt" in line


@pytest.mark.parametrize("batch", ["8", "24"])
def test_non_finite_loss_stops_before_writing(store, tmp_path, capsys, monkeypatch, batch):
    """Diverging weights: with 3 steps an epoch the loss becomes NaN; with one step the loss
    of the epoch is still finite but the weights are not. Either way the run stops with one
    error line (after the run's opening line) and writes no checkpoint of NaN weights."""
    diverging(monkeypatch, torch.optim.SGD)
    args = ["--batch-size", batch, "--queue-size", "24" if batch == "24" else "16"]
    args += ["--crop", "32", "--workers", "0", "--lr", "0.03", "--out", tmp_path / "o"]
    code, _, err = run(capsys, "pretrain", store, *args)
    errors = [line for line in err.splitlines() if line.startswith("cloudkit: error: ")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].endswith("lower --lr (now 0.03) or turn off --amp; nothing was saved")
    assert "in epoch 1" in errors[0]
    assert not (tmp_path / "o" / "last.pt").exists()


def test_existing_run_is_not_overwritten(store, tmp_path, capsys):
    _forged_checkpoint(tmp_path)
    line = fails_with_one_line(capsys, "pretrain", store, *MOCO, "--out", tmp_path)
    assert f"{tmp_path} already holds a checkpoint (last.pt); pass --resume" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(store, tmp_path, capsys):
    line = fails_with_one_line(
        capsys, "pretrain", store, *MOCO, "--device", "cuda", "--out", tmp_path / "o"
    )
    assert "--device cuda but no CUDA device" in line


def test_unknown_method(store, tmp_path, capsys):
    code, _, err = run(capsys, "pretrain", store, "--method", "simclr", "--out", tmp_path)
    assert code == 2 and "simclr" in err and "moco" in err
