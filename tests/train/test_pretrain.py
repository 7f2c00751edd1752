"""The pretraining loop on real tiles (T29UNU at 60 m, 32 px, Sen2Cor labels): reproducibility,
exact resume, checkpoint and metrics contents, loss that falls, collapse warning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cloudkit.config import Device, Method, PretrainConfig, Views
from cloudkit.data import CloudinessPairs, TileDataset, TwoViews, ssl_view_transform
from cloudkit.errors import OptionError
from cloudkit.models.checkpoint import PRETRAINING, load_checkpoint
from cloudkit.models.encoder import load_encoder
from cloudkit.train.engine import lr_factor
from cloudkit.train.loader import SeededViews
from cloudkit.train.metrics import read_metrics
from cloudkit.train.pretrain import Pretraining, pretrain
from tests.helpers.png import is_png
from tests.helpers.pretrain_stores import BANDS, real_store, subset_store

BENCHES = Path(__file__).resolve().parents[2] / "benches"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """24 fully valid, labelled 32 px tiles spread over the cloudiness bins."""
    return subset_store(real_store(tmp_path_factory), tmp_path_factory.mktemp("s") / "s.zarr", 24)


def _config(store: Path, out: Path, method: str, **changes) -> PretrainConfig:
    small = {"queue_size": 16} if method == "moco" else {"prototypes": (4, 4), "warmup_epochs": 1}
    base = dict(stores=(store,), out=out, method=method, epochs=2, batch_size=8, crop=32)
    return PretrainConfig(**{**base, **small, "workers": 0, "seed": 3, **changes})


class _Killed(Exception):
    pass


def _kill_after_first_epoch(epoch: int, record: dict) -> None:
    raise _Killed


@pytest.fixture(scope="module", params=["moco", "deepcluster"])
def runs(request, store, tmp_path_factory) -> dict:
    """Per method: two straight 2-epoch runs with one seed, and a run killed after epoch 1
    then resumed (with a DataLoader worker this time)."""
    method = request.param
    root = tmp_path_factory.mktemp(method)
    a = pretrain(_config(store, root / "a", method))
    b = pretrain(_config(store, root / "b", method))
    with pytest.raises(_Killed):
        pretrain(_config(store, root / "c", method), on_epoch_end=_kill_after_first_epoch)
    killed = load_checkpoint(root / "c")
    c = pretrain(_config(store, root / "c", method, resume=True, workers=1))
    return {"method": method, "a": a, "b": b, "c": c, "killed_epoch": killed["epoch"]}


def _same_weights(x: Path, y: Path) -> bool:
    sx, sy = (torch.load(p, weights_only=True)["model"] for p in (x, y))
    return sx.keys() == sy.keys() and all(torch.equal(sx[k], sy[k]) for k in sx)


def _losses(checkpoint: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(checkpoint.parent)]


class TestReproducible:
    def test_fixed_seed_gives_identical_run(self, runs):
        assert _same_weights(runs["a"], runs["b"])
        assert _losses(runs["a"]) == _losses(runs["b"])

    def test_resume_continues_exactly(self, runs):
        assert runs["killed_epoch"] == 1
        assert _same_weights(runs["a"], runs["c"])
        assert _losses(runs["a"]) == _losses(runs["c"])
        assert [r["epoch"] for r in read_metrics(runs["c"].parent)] == [1, 2]

    def test_views_do_not_depend_on_workers(self, store):
        first = []
        for workers in (0, 2):
            cfg = _config(store, Path("unused"), "moco", workers=workers)
            trainer = Pretraining.create(cfg, device=torch.device("cpu"))
            trainer.sampler.set_epoch(1)
            first.append(next(iter(trainer.loader)))
        assert torch.equal(first[0]["index"], first[1]["index"])
        assert torch.equal(first[0]["view1"], first[1]["view1"])
        assert torch.equal(first[0]["view2"], first[1]["view2"])

    def test_sample_views_are_keyed_by_epoch_and_index(self, store):
        tiles = TileDataset([store])
        views = SeededViews(TwoViews(tiles, ssl_view_transform(24)), seed=0)
        again = views[(1, 5)]["view1"]
        views[(1, 7)]  # drawing something else in between changes nothing
        assert torch.equal(views[(1, 5)]["view1"], again)
        assert not torch.equal(views[(2, 5)]["view1"], again)
        # the epoch reaches CloudinessPairs through the key (persistent workers never see
        # a set_epoch made in the main process)
        pairs = SeededViews(CloudinessPairs(tiles, ssl_view_transform(24), seed=0), seed=0)
        partners = set()
        for epoch in range(1, 6):
            pairs[(epoch, 0)]
            partners.add(pairs.views.partner_of(0))
        assert len(partners) > 1


class TestCheckpoint:
    def test_contents(self, runs):
        state = load_checkpoint(runs["a"])
        assert state["format"] == PRETRAINING.format and state["method"] == runs["method"]
        assert state["epoch"] == 2 and state["bands"] == list(BANDS) and state["num_samples"] == 24
        assert {"optimizer", "scheduler", "rng", "loader", "metrics", "versions"} <= state.keys()
        assert state["config"]["crop"] == 32 and state["config"]["seed"] == 3
        # resolved method defaults (the paper's) are recorded, not left unset
        expected_lr = 0.03 if runs["method"] == "moco" else 0.6
        assert state["config"]["lr"] == expected_lr
        # the encoder state is what fine-tuning loads: it rebuilds the trained encoder
        encoder = load_encoder(state["encoder"])
        prefix = "query.backbone." if runs["method"] == "moco" else "backbone.backbone."
        weights = {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
        own = encoder.backbone.state_dict()
        assert own.keys() == weights.keys()
        assert all(torch.equal(own[k], weights[k]) for k in own)

    def test_metrics(self, runs):
        records = read_metrics(runs["a"].parent)
        assert [r["epoch"] for r in records] == [1, 2]
        for r in records:
            assert r["loss"] >= 0 and r["lr"] > 0 and r["images_per_s"] > 0
            assert 0 < r["embedding_std"] < 1 and isinstance(r["collapse_warning"], bool)
            assert 0 <= r["knn_accuracy"] <= 1  # the store has labels
        if runs["method"] == "deepcluster":
            assert records[0]["clusters"] is None and records[0]["loss"] == 0.0
            heads = records[1]["clusters"]
            assert len(heads) == 2
            assert all(
                {"empty_clusters", "size_min", "size_max", "size_cv"} <= h.keys() for h in heads
            )

    def test_out_holds_only_checkpoint_metrics_and_their_figure(self, runs):
        out = runs["a"].parent
        assert sorted(p.name for p in out.iterdir()) == ["last.pt", "metrics.jsonl", "metrics.png"]
        assert is_png(out / "metrics.png")


@pytest.mark.parametrize("method", ["moco", "deepcluster"])
def test_loss_falls(store, tmp_path, method):
    """Ten epochs on the same 24 real tiles: the last epoch's loss is below the first epoch's
    with real targets (MoCo: the first epoch after the queue's random negatives are gone;
    DeepCluster: the first epoch after a clustering; seeds 0-2 all pass)."""
    out = pretrain(_config(store, tmp_path, method, epochs=10, warmup_epochs=0, seed=0)).parent
    losses = [r["loss"] for r in read_metrics(out)]
    assert len(losses) == 10
    assert losses[-1] < losses[1], losses


def test_collapse_warning(store, tmp_path, capsys, monkeypatch):
    import cloudkit.train.pretraining as loop

    monkeypatch.setattr(loop, "collapse_threshold", lambda dim: 1.0)  # every spread is too low
    pretrain(_config(store, tmp_path, "moco", epochs=1))
    err = capsys.readouterr().err
    assert "WARNING: representation collapse?" in err
    assert read_metrics(tmp_path)[0]["collapse_warning"] is True


def test_cloudiness_pairs_with_workers(store, tmp_path):
    cfg = _config(store, tmp_path, "deepcluster", views=Views.cloudiness_pair, workers=1)
    pretrain(cfg)
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2]


class TestConfig:
    def test_method_defaults_from_the_paper(self, tmp_path):
        moco = PretrainConfig(stores=("s",), out=tmp_path).resolved(tile_size=384)
        assert (moco.lr, moco.momentum, moco.weight_decay, moco.batch_size, moco.epochs) == (
            0.03,
            0.9,
            1e-4,
            64,
            100,
        )
        assert (moco.queue_size, moco.temperature, moco.moco_momentum) == (65536, 0.07, 0.999)
        assert moco.crop == 256 and moco.prototypes is None
        dc = PretrainConfig(stores=("s",), out=tmp_path, method=Method.deepcluster).resolved(
            tile_size=64, device_type="cpu"
        )
        assert (dc.lr, dc.weight_decay, dc.batch_size, dc.warmup_epochs, dc.final_lr) == (
            0.6,
            1e-6,
            128,
            11,
            0.0006,
        )
        assert dc.prototypes == (3000, 3000, 3000) and dc.temperature == 0.1
        assert dc.crop == 64 and dc.amp is False and dc.compile is False and dc.queue_size is None
        unset = PretrainConfig(stores=("s",), out=tmp_path, method=Method.deepcluster, lr=0.3)
        gpu = unset.resolved(device_type="cuda")
        assert gpu.lr == 0.3 and gpu.amp is True and gpu.compile is True

    @pytest.mark.parametrize(
        "changes, message",
        [
            ({"prototypes": (8,)}, "--prototypes applies to --method deepcluster only"),
            ({"views": Views.cloudiness_pair}, "cloudiness-pair is for --method deepcluster"),
            ({"epochs": 0}, "--epochs must be positive"),
            ({"lr": float("nan")}, "--lr must be positive, got nan"),
            ({"lr": float("inf")}, "--lr must be positive, got inf"),
            ({"lr": 1e300}, "--lr 1e\\+300 is no learning rate; at most 1000"),
            ({"weight_decay": float("nan")}, "--weight-decay must be >= 0, got nan"),
            ({"batch_size": 1}, "--batch-size 1: training needs at least 2 samples"),
            ({"workers": 100_000}, "--workers 100000: more than 4 DataLoader processes per"),
            ({"min_valid": 1.5}, "--min-valid must be in"),
            ({"device": Device.cpu, "moco_momentum": 1.0}, "--moco-momentum must be in"),
        ],
    )
    def test_invalid(self, tmp_path, changes, message):
        with pytest.raises(OptionError, match=message):
            PretrainConfig(stores=("s",), out=tmp_path, **changes).validate()

    def test_schedule(self):
        # DeepCluster: linear warm-up to the peak, cosine down to final_lr / lr
        f = [lr_factor(s, total=100, warmup=10, final_ratio=0.001) for s in range(100)]
        assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
        assert f[10] == pytest.approx(1.0) and f[-1] == pytest.approx(0.001, abs=1e-3)
        assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
        # MoCo: plain cosine to 0
        assert lr_factor(0, total=50, warmup=0, final_ratio=0.0) == 1.0
        assert lr_factor(25, total=50, warmup=0, final_ratio=0.0) == pytest.approx(0.5)


def test_benchmark_smoke(store):
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHES / "bench_pretrain.py"),
            "--store",
            str(store),
            "--crop",
            "32",
            "--batch-size",
            "8",
            "--steps",
            "2",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "loader / step" in out.stdout
