"""`cloudkit experiment`: a tiny label-fraction grid (random and a pretrained encoder, 50 and
100 %, one epoch, 32 px crops) run through the CLI, its results table, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cloudkit.cli import main
from cloudkit.models.checkpoint import PRETRAINING, save_checkpoint
from cloudkit.models.encoder import Encoder, encoder_state
from tests.helpers.pretrain_stores import BANDS, real_store, subset_store

TINY = ["--epochs", "1", "--batch-size", "4", "--crop", "32", "--freeze-epochs", "0"]
TINY += ["--workers", "0", "--device", "cpu", "--lr", "1e-3"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    src = real_store(tmp_path_factory)
    folder = tmp_path_factory.mktemp("exp")
    return subset_store(src, folder / "train.zarr", 24), subset_store(
        src, folder / "test.zarr", 8, seed=1
    )


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    """What `cloudkit pretrain` leaves for fine-tuning: a checkpoint with key "encoder"."""
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("moco") / "moco" / "last.pt"
    payload = {**PRETRAINING.header(), "method": "moco"}
    return save_checkpoint({**payload, "encoder": encoder_state(Encoder(BANDS))}, path)


@pytest.fixture(scope="module")
def grid(stores, pretrained, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grid") / "g"
    train, test = stores
    args = [train, "--test-store", test, "--inits", f"random,{pretrained}"]
    args += ["--fractions", "50,100", "--out", out, *TINY]
    assert main(["experiment", *(str(a) for a in args)]) == 0
    return out


def test_results_table_and_json(grid):
    results = json.loads((grid / "results.json").read_text())["results"]
    assert [(r["init"], r["fraction"]) for r in results] == [
        ("random", 50.0),
        ("random", 100.0),
        ("moco", 50.0),
        ("moco", 100.0),
    ]
    for r in results:
        assert r["positive"] == "cloud"
        for key in ("f1", "iou", "overall_accuracy", "balanced_overall_accuracy"):
            assert 0.0 <= r[key] <= 1.0
        assert (Path(r["run"]) / "best.pt").is_file()
        assert (Path(r["run"]) / "eval.json").is_file()
    table = (grid / "results.md").read_text()
    assert "| init | fraction (%) | F1 (cloud) | IoU (cloud) | OA | balanced OA |" in table
    assert table.count("| moco |") == 2 and table.count("| random |") == 2


def test_rerun_keeps_finished_cells(grid, stores, pretrained, capsys):
    before = (grid / "results.json").read_text()
    train, test = stores
    args = [train, "--test-store", test, "--inits", f"random,{pretrained}"]
    args += ["--fractions", "50,100", "--out", grid, *TINY]
    assert main(["experiment", *(str(a) for a in args)]) == 0
    assert json.loads((grid / "results.json").read_text()) == json.loads(before)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fractions", "0,50"], "percentages in (0, 100]"),
        (["--fractions", "150"], "percentages in (0, 100]"),
        (["--inits", "random,nowhere.pt"], "--init nowhere.pt: no such file"),
        (["--fractions", "5,5.0,10"], "--fractions names 5.0 twice"),
        (["--inits", "random,random"], "--inits names random twice"),
    ],
)
def test_errors(stores, tmp_path, capsys, extra, message):
    train, test = stores
    args = [train, "--test-store", test, "--out", tmp_path / "o", *TINY, *extra]
    code = main(["experiment", *(str(a) for a in args)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and message in lines[0], err
