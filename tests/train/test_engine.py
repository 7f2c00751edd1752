"""The training engine on its own: a toy method (a linear regression on seeded random points)
that writes no loop code gets a reproducible run, exact resume, the checks of the run folder
and the non-finite guard."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from cloudkit.errors import CheckpointError, TrainingDivergedError
from cloudkit.models.checkpoint import CheckpointKind, load_checkpoint
from cloudkit.train.engine import Engine, EpochStats
from cloudkit.train.metrics import read_metrics

TOY = CheckpointKind("cloudkit-toy", 1, "toy")


@dataclass(frozen=True)
class ToyConfig:
    out: Path
    epochs: int = 3
    batch_size: int = 4
    lr: float = 0.05
    seed: int = 0
    workers: int | None = 0
    amp: bool = False
    device: str = "cpu"
    resume: bool = False

    def validate(self) -> None:
        pass


class Points(Dataset):
    """Random points (drawn from torch's global generator, which the engine seeds per item)
    and their targets ``3 * (x0 + x1)``."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        x = torch.randn(2)
        return {"x": x, "y": 3 * x.sum(dim=0, keepdim=True)}


class Regression(Engine):
    kind = TOY

    def __init__(self, cfg, *, device, dist, checkpoint=None) -> None:
        super().__init__(cfg, Points(), device=device, dist=dist, checkpoint=checkpoint)

    def build_model(self) -> nn.Module:
        return nn.Linear(2, 1)

    def build_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=self.cfg.lr, momentum=0.9)

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        return F.mse_loss(self.model(batch["x"]), batch["y"])

    def epoch_record(self, stats: EpochStats) -> dict[str, Any]:
        return {"epoch": stats.epoch, "loss": stats.loss, "lr": stats.lrs[0], "images_per_s": 1.0}

    def epoch_figures(self, record: dict[str, Any]) -> list[str]:
        return [f"loss {record['loss']:.4f}", *self.pace_figures(record)]

    def summary(self) -> str:
        return f"toy regression, {self.steps_per_epoch} steps/epoch"

    def checkpoint_info(self) -> dict[str, Any]:
        return {"config": {k: str(v) for k, v in asdict(self.cfg).items()}}


class _Killed(Exception):
    pass


def _kill_after_first_epoch(epoch: int, record: dict) -> None:
    raise _Killed


def _weights(out: Path) -> dict[str, Tensor]:
    return load_checkpoint(out, TOY)["model"]


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_reproducible_and_learning(tmp_path):
    assert Regression.run(ToyConfig(tmp_path / "a")) == tmp_path / "a" / "last.pt"
    Regression.run(ToyConfig(tmp_path / "b"))
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    losses = [r["loss"] for r in read_metrics(tmp_path / "a")]
    assert len(losses) == 3 and losses[-1] < losses[0]
    Regression.run(ToyConfig(tmp_path / "c", seed=1))
    assert not _same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def test_resume_continues_exactly(tmp_path):
    Regression.run(ToyConfig(tmp_path / "a"))
    with pytest.raises(_Killed):
        Regression.run(ToyConfig(tmp_path / "b"), on_epoch_end=_kill_after_first_epoch)
    assert load_checkpoint(tmp_path / "b", TOY)["epoch"] == 1
    Regression.run(ToyConfig(tmp_path / "b", resume=True, workers=1))
    assert _same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")


def test_run_folder_checks(tmp_path):
    with pytest.raises(CheckpointError, match="holds no last.pt; drop --resume"):
        Regression.run(ToyConfig(tmp_path, resume=True))
    Regression.run(ToyConfig(tmp_path, epochs=1))
    with pytest.raises(CheckpointError, match=r"already holds a checkpoint \(last.pt\)"):
        Regression.run(ToyConfig(tmp_path))
    # a finished run has nothing left to do; a larger --epochs continues it
    assert Regression.run(ToyConfig(tmp_path, epochs=1, resume=True)) == tmp_path / "last.pt"
    Regression.run(ToyConfig(tmp_path, epochs=2, resume=True))
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2]


@pytest.mark.parametrize("batch_size", [4, 32])
def test_non_finite_guard(tmp_path, batch_size):
    """8 steps an epoch: the loss becomes NaN; 1 step: the loss is finite, the weights not."""
    with pytest.raises(TrainingDivergedError, match="in epoch 1; lower --lr .* nothing was saved"):
        Regression.run(ToyConfig(tmp_path, lr=float("nan"), batch_size=batch_size))
    assert not (tmp_path / "last.pt").exists()
    assert read_metrics(tmp_path) == []
