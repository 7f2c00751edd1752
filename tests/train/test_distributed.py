"""`cloudkit pretrain` under torchrun: two CPU processes (Gloo), DistributedDataParallel.

Rank 0 alone writes: the run folder ends with exactly one checkpoint and one metrics line per
epoch, whose monitors saw the embeddings of both ranks.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudkit.models.checkpoint import load_checkpoint
from cloudkit.train.metrics import read_metrics
from tests.helpers.pretrain_stores import real_store, subset_store

METHOD_ARGS = {
    "moco": ["--queue-size", "16"],
    "deepcluster": ["--prototypes", "4,4", "--warmup-epochs", "1"],
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return subset_store(real_store(tmp_path_factory), tmp_path_factory.mktemp("s") / "s.zarr", 24)


@pytest.mark.parametrize("method", ["moco", "deepcluster"])
def test_two_processes(store, tmp_path, method):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free local port chosen by torchrun
        "--nproc-per-node",
        "2",
        "-m",
        "cloudkit.cli",
        "pretrain",
        str(store),
        "--method",
        method,
        *METHOD_ARGS[method],
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--crop",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # shared test machine: no thread contention
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(out / "last.pt")  # printed by rank 0 only
    assert "batch 4 x 2 processes" in done.stderr
    # rank 0 alone writes: one checkpoint, one metrics file and its figure
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "metrics.jsonl", "metrics.png"]
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["knn_samples"] == 24 for r in records)  # both ranks' embeddings
    state = load_checkpoint(out)
    assert state["epoch"] == 2 and state["method"] == method
    if method == "deepcluster":
        assert records[0]["loss"] == 0.0 and records[1]["loss"] > 0.0
        # the clustering saw every tile of the epoch, whichever rank embedded it
        assert all(sum(1 for a in head if a >= 0) == 24 for head in state["model"]["assignments"])
