"""Fine-tuning: the loop (freeze, resume, checkpoints, metrics), initial weights, CLI errors,
and a real-data check that a model trained on one part of T29UNU detects clouds on another."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cloudkit.cli import main
from cloudkit.config import FinetuneConfig
from cloudkit.data.tasks import IGNORE, get_task
from cloudkit.errors import BandMismatchError, CheckpointError, CloudkitError, OptionError
from cloudkit.models.checkpoint import FINE_TUNING, PRETRAINING, load_finetuned, save_checkpoint
from cloudkit.models.encoder import Encoder, encoder_state
from cloudkit.models.segmentation import load_segmenter
from cloudkit.plots import training_figure
from cloudkit.train.distributed import Dist
from cloudkit.train.finetune import FineTuning, finetune, load_init, targets_of
from cloudkit.train.metrics import read_metrics
from tests.helpers.cli import fails_with_one_line
from tests.helpers.finetune_stores import real_store_64, spatial_split
from tests.helpers.png import is_png
from tests.helpers.pretrain_stores import BANDS, real_store, subset_store
from tests.helpers.training import diverging


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return subset_store(real_store(tmp_path_factory), tmp_path_factory.mktemp("s") / "s.zarr", 24)


def _cfg(store: Path, out: Path, **changes) -> FinetuneConfig:
    base = dict(
        stores=[store],
        out=out,
        epochs=2,
        batch_size=4,
        crop=32,
        freeze_epochs=1,
        lr=1e-3,
        workers=0,
        device="cpu",
    )
    return FinetuneConfig(**{**base, **changes})


class _Killed(Exception):
    pass


def _kill_after_first_epoch(epoch: int, record: dict) -> None:
    if epoch == 1:
        raise _Killed


def _encoder_file(path: Path, bands=BANDS, *, bare: bool = False) -> Path:
    torch.manual_seed(123)
    state = encoder_state(Encoder(bands))
    if bare:
        torch.save(state, path)
        return path
    return save_checkpoint({**PRETRAINING.header(), "method": "moco", "encoder": state}, path)


@pytest.fixture(scope="module")
def runs(store, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    finetune(_cfg(store, root / "a"))
    with pytest.raises(_Killed):
        finetune(_cfg(store, root / "b"), on_epoch_end=_kill_after_first_epoch)
    finetune(_cfg(store, root / "b", resume=True))
    return {"a": root / "a", "b": root / "b"}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]["state_dict"]


class TestLoop:
    def test_resume_continues_exactly(self, runs):
        a, b = _weights(runs["a"] / "last.pt"), _weights(runs["b"] / "last.pt")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
        losses = [[r["train_loss"] for r in read_metrics(runs[k])] for k in "ab"]
        assert losses[0] == losses[1] and len(losses[0]) == 2

    def test_checkpoint_contents(self, runs, store):
        last = torch.load(runs["a"] / "last.pt", weights_only=True)
        best = torch.load(runs["a"] / "best.pt", weights_only=True)
        for ckpt in (last, best):
            assert ckpt["format"] == FINE_TUNING.format
            assert ckpt["task"] == "cloud" and ckpt["classes"] == ["clear", "cloud"]
            assert ckpt["bands"] == list(BANDS) and ckpt["head"] == "unet"
            assert ckpt["normalisation"]["kind"] == "store-reflectance"
            assert ckpt["crop"] == 32 and ckpt["init"] == "random" and ckpt["fraction"] == 1.0
            assert ckpt["made_for"] == 60.0  # the store's pixels: predict checks scenes by it
            assert ckpt["config"]["batch_size"] == 4
            assert set(ckpt["splits"]["train"]).isdisjoint(ckpt["splits"]["val"])
            assert ckpt["model"]["extra"] == {}  # each fact once, at the top
        assert {"optimizer", "scheduler", "rng", "loader", "early_stopping"} <= last.keys()
        assert "optimizer" not in best
        model = load_segmenter(best["model"]).eval()
        assert model(torch.zeros(1, len(BANDS), 32, 32)).shape == (1, 1, 32, 32)

    def test_metrics_lines(self, runs):
        records = read_metrics(runs["a"])
        assert [r["epoch"] for r in records] == [1, 2]
        for r in records:
            for key in ("train_loss", "val_loss", "val_iou", "val_f1", "lr", "images_per_s"):
                assert isinstance(r[key], float), key
        assert records[0]["frozen"] and not records[1]["frozen"]
        assert records[0]["backbone_lr"] == 0.0 < records[1]["backbone_lr"]
        assert records[0]["best"]  # the first epoch always is

    def test_metrics_figure_shows_the_metrics_lines(self, runs):
        assert is_png(runs["a"] / "metrics.png")
        figure = training_figure(read_metrics(runs["a"]), "run")
        shown = {
            line.get_label(): list(line.get_ydata()) for ax in figure.axes for line in ax.lines
        }
        assert shown["IoU"] == [r["val_iou"] for r in read_metrics(runs["a"])]
        assert not [p.name for p in runs["a"].iterdir() if p.name.startswith(".")]

    def test_frozen_backbone_keeps_conv_weights_but_bn_adapts(self, store, tmp_path):
        finetune(_cfg(store, tmp_path / "f", epochs=1))
        weights = _weights(tmp_path / "f" / "last.pt")
        torch.manual_seed(0)
        start = Encoder(BANDS).backbone.state_dict()
        assert torch.equal(weights["encoder.backbone.conv1.weight"], start["conv1.weight"])
        conv = "layer3.0.conv1.weight"
        assert torch.equal(weights[f"encoder.backbone.{conv}"], start[conv])
        assert not torch.equal(
            weights["encoder.backbone.bn1.running_mean"], start["bn1.running_mean"]
        )

    def test_out_with_a_run_needs_resume(self, runs, store):
        with pytest.raises(CloudkitError, match="--resume"):
            finetune(_cfg(store, runs["a"]))

    def test_resume_with_other_options_refused(self, runs, store, tmp_path):
        with pytest.raises(CloudkitError, match="other options"):
            finetune(_cfg(store, runs["a"], resume=True, epochs=3, lr=5e-4))

    def test_resume_without_a_run_refused(self, store, tmp_path):
        with pytest.raises(CheckpointError, match=f"--resume but {tmp_path} holds no last.pt"):
            finetune(_cfg(store, tmp_path, resume=True))


def _as_written_before(path: Path) -> Path:
    """The checkpoint as cloudkit wrote it before each fact was stored once: classes,
    normalisation, crop, init and fraction a second time in ``model["extra"]``."""
    ckpt = torch.load(path, weights_only=True)
    duplicated = ("classes", "normalisation", "crop", "init", "fraction")
    ckpt["model"]["extra"] = {key: ckpt[key] for key in duplicated}
    torch.save(ckpt, path)
    return path


class TestOldCheckpoints:
    def test_load_and_predict(self, runs, tmp_path):
        from cloudkit.predict.model import CheckpointPredictor

        old = _as_written_before(shutil.copy(runs["a"] / "best.pt", tmp_path / "best.pt"))
        payload, model = load_finetuned(old)
        assert payload["model"]["extra"]["crop"] == 32
        _, new = load_finetuned(runs["a"] / "best.pt")
        weights = new.state_dict()
        assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
        info = CheckpointPredictor(old, device="cpu").info
        assert info == replace(
            CheckpointPredictor(runs["a"] / "best.pt", device="cpu").info, path=old
        )

    def test_resume_continues_exactly(self, runs, store, tmp_path):
        with pytest.raises(_Killed):
            finetune(_cfg(store, tmp_path), on_epoch_end=_kill_after_first_epoch)
        _as_written_before(tmp_path / "last.pt")
        finetune(_cfg(store, tmp_path, resume=True))
        a, old = _weights(runs["a"] / "last.pt"), _weights(tmp_path / "last.pt")
        assert all(torch.equal(a[k], old[k]) for k in a)


def test_targets_ignore_nodata_and_invalid():
    labels = torch.tensor([[[[0, 1], [2, 255]], [[3, 1], [0, 0]]]], dtype=torch.uint8)
    labels = labels.reshape(2, 1, 2, 2)
    valid = torch.ones(2, 1, 2, 2, dtype=torch.bool)
    valid[1, 0, 1, 1] = False
    t = targets_of({"labels": labels, "valid": valid}, get_task("cloud"), torch.device("cpu"))
    assert t.tolist() == [[[0, 1], [1, IGNORE]], [[0, 1], [0, IGNORE]]]


class TestInit:
    def test_pretraining_checkpoint_and_bare_state(self, tmp_path):
        ref = _encoder_file(tmp_path / "last.pt")
        bare = _encoder_file(tmp_path / "enc.pt", bare=True)
        for path in (ref, bare):
            enc = load_init(str(path))
            torch.manual_seed(123)
            expected = Encoder(BANDS).backbone.state_dict()
            assert all(torch.equal(enc.backbone.state_dict()[k], v) for k, v in expected.items())

    def test_encoder_loaded_into_the_model(self, store, tmp_path):
        ckpt = _encoder_file(tmp_path / "last.pt")
        finetune(_cfg(store, tmp_path / "r", epochs=1, init=str(ckpt)))
        weights = _weights(tmp_path / "r" / "best.pt")
        expected = load_init(str(ckpt)).backbone.state_dict()["conv1.weight"]
        assert torch.equal(weights["encoder.backbone.conv1.weight"], expected)  # frozen epoch

    def test_not_a_checkpoint(self, tmp_path):
        junk = tmp_path / "junk.pt"
        junk.write_text("not a checkpoint")
        with pytest.raises(CheckpointError, match="--init"):
            load_init(str(junk))
        with pytest.raises(CheckpointError, match="no such file"):
            load_init(str(tmp_path / "missing.pt"))

    def test_band_mismatch(self, store, tmp_path):
        ckpt = _encoder_file(tmp_path / "last.pt", bands=("B02", "B03", "B04"))
        with pytest.raises(BandMismatchError, match="B02,B03,B04"):
            finetune(_cfg(store, tmp_path / "r", init=str(ckpt)))


# ---------------------------------------------------------------------------------------------
# CLI


def _one_line_error(capsys, *args) -> str:
    return fails_with_one_line(capsys, "finetune", *args)


class TestCli:
    @pytest.mark.parametrize("head", ["unet", "light"])
    def test_run_prints_best(self, store, tmp_path, capsys, head):
        out = tmp_path / "cli"
        args = [store, "--out", out, "--epochs", "1", "--batch-size", "4", "--crop", "32"]
        args += ["--head", head, "--workers", "0", "--device", "cpu"]
        code = main([str(a) for a in ["finetune", *args]])
        assert code == 0
        assert capsys.readouterr().out.strip() == str(out / "best.pt")
        assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["epoch"] == 1
        assert torch.load(out / "best.pt", weights_only=True)["head"] == head

    def test_class_weights_train_and_are_recorded(self, store, tmp_path, capsys):
        out = tmp_path / "weighted"
        args = [store, "--out", out, "--epochs", "1", "--batch-size", "4", "--crop", "32"]
        args += ["--task", "multi", "--class-weights", "1,1,2,3", "--workers", "0"]
        assert main([str(a) for a in ["finetune", *args, "--device", "cpu"]]) == 0
        config = torch.load(out / "best.pt", weights_only=True)["config"]
        assert config["class_weights"] == [1.0, 1.0, 2.0, 3.0]

    def test_hard_negatives_lengthen_the_epoch(self, store, tmp_path):
        plain = FineTuning(_cfg(store, tmp_path / "a"), device=torch.device("cpu"), dist=Dist())
        cfg = _cfg(store, tmp_path / "b", hard_negatives=3.0)
        hard = FineTuning(cfg, device=torch.device("cpu"), dist=Dist())
        assert len(plain.sampled.indices) == len(plain.train_idx) and "hard" not in plain.summary()
        assert len(hard.sampled.indices) > len(hard.train_idx)
        assert hard.steps_per_epoch > plain.steps_per_epoch
        assert f"{len(hard.sampled.indices)} crops/epoch" in hard.summary()

    def test_best_by_loss_keeps_the_epoch_of_the_lowest_val_loss(self, store, tmp_path, capsys):
        out = tmp_path / "by-loss"
        args = [store, "--out", out, "--epochs", "4", "--batch-size", "4", "--crop", "32"]
        args += ["--freeze-epochs", "0", "--workers", "0", "--device", "cpu", "--best-by", "loss"]
        assert main([str(a) for a in ["finetune", *args]]) == 0
        records = read_metrics(out)
        lowest_so_far = float("inf")
        for r in records:  # an epoch is best exactly when its val loss is a new low
            assert r["best"] == (r["val_loss"] < lowest_so_far), r
            lowest_so_far = min(lowest_so_far, r["val_loss"])
        lowest = min(records, key=lambda r: r["val_loss"])["epoch"]
        saved = torch.load(out / "best.pt", weights_only=True)
        assert saved["epoch"] == lowest and saved["config"]["best_by"] == "loss"

    def test_split_seed_validates_seeds_on_the_same_tiles(self, store, tmp_path):
        def split(**changes):
            cfg = _cfg(store, tmp_path / str(changes), **changes)
            run = FineTuning(cfg, device=torch.device("cpu"), dist=Dist())
            return sorted(run.val_idx.tolist())

        assert split(seed=1, split_seed=0) == split(seed=0) == split(seed=2, split_seed=0)
        assert any(split(seed=s) != split(seed=0) for s in (1, 2, 3))  # each its own, without

    @pytest.mark.parametrize(
        ("extra", "message"),
        [
            (["--fraction", "0"], "--fraction must be in (0, 1]"),
            (["--fraction", "1.5"], "--fraction must be in (0, 1]"),
            (["--init", "nowhere.pt"], "--init nowhere.pt: no such file"),
            (["--batch-size", "16", "--fraction", "0.25"], "--batch-size 16"),
            (["--crop", "64"], "--crop 64"),
            (["--val-fraction", "0"], "--val-fraction"),
            (["--class-weights", "1,2,3"], "task cloud needs 2 positive weights"),
            (["--class-weights", "1,0"], "needs 2 positive weights, one per class (clear"),
            (["--class-weights", "1,nan"], "needs 2 positive weights"),
            (["--class-weights", "one,two"], "expected one number per class"),
        ],
    )
    def test_errors(self, store, tmp_path, capsys, extra, message):
        line = _one_line_error(capsys, store, "--out", tmp_path / "o", "--crop", "32", *extra)
        assert message in line

    def test_band_mismatch_and_junk_init(self, store, tmp_path, capsys):
        other = _encoder_file(tmp_path / "other.pt", bands=("B02", "B03", "B04"))
        line = _one_line_error(capsys, store, "--out", tmp_path / "o", "--init", other)
        assert "bands" in line
        junk = tmp_path / "junk.pt"
        junk.write_bytes(b"\x00" * 10)
        line = _one_line_error(capsys, store, "--out", tmp_path / "o", "--init", junk)
        assert "not a readable cloudkit checkpoint" in line

    @pytest.mark.parametrize("batch", ["4", "16"])
    def test_non_finite_loss_stops_before_writing(
        self, store, tmp_path, capsys, monkeypatch, batch
    ):
        """Diverging weights; 5 steps an epoch: the loss becomes NaN; 1 step: the loss is
        finite, the weights are not. Either way one error line (after the run's opening
        line), no checkpoint."""
        diverging(monkeypatch, torch.optim.Adam)
        args = [store, "--out", tmp_path / "o", "--crop", "32", "--batch-size", batch]
        args += ["--lr", "0.001", "--workers", "0", "--device", "cpu"]
        code = main(["finetune", *(str(a) for a in args)])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("cloudkit: error: ")]
        assert code == 1 and len(errors) == 1 and "Traceback" not in err, err
        assert errors[0].endswith("lower --lr (now 0.001) or turn off --amp; nothing was saved")
        assert "in epoch 1" in errors[0]
        assert not list((tmp_path / "o").glob("*.pt"))

    def test_store_without_labels(self, tmp_path_factory, tmp_path, capsys):
        plain = subset_store(real_store(tmp_path_factory), tmp_path / "u.zarr", 8, labels=False)
        line = _one_line_error(capsys, plain, "--out", tmp_path / "o", "--crop", "32")
        assert "no labels" in line


# ---------------------------------------------------------------------------------------------
# real data


def test_real_data_cloud_f1_beats_trivial_predictors(tmp_path_factory):
    """Train on the east of T29UNU (60 m, SCL labels), test on the western strip it never saw:
    the cloud F1 must clearly beat both trivial masks (all cloud: 2p/(1+p); all clear: 0)."""
    from cloudkit.eval.evaluate import evaluate_checkpoint

    folder = tmp_path_factory.mktemp("real")
    train, test = spatial_split(real_store_64(tmp_path_factory), folder)
    cfg = FinetuneConfig(
        stores=[train],
        out=folder / "run",
        init="random",
        task="cloud",
        head="unet",
        fraction=1.0,
        epochs=2,
        batch_size=8,
        crop=32,
        lr=1e-3,
        freeze_epochs=0,
        patience=0,
        workers=0,
        device="cpu",
    )
    best = finetune(cfg)
    result = evaluate_checkpoint(best, [test], batch_size=16, device="cpu")
    (clear_clear, _), (cloud_clear, cloud_cloud) = result["confusion_matrix"]
    p = (cloud_clear + cloud_cloud) / result["pixels"]
    all_cloud_f1 = 2 * p / (1 + p)
    f1 = result["per_class"]["cloud"]["f1"]
    print(f"cloud prevalence {p:.3f}: F1 {f1:.3f} vs all-cloud {all_cloud_f1:.3f}, all-clear 0")
    assert 0.2 < p < 0.8  # a test set where the trivial masks are not already good
    assert f1 > all_cloud_f1 + 0.1
    assert result["balanced_overall_accuracy"] > 0.75


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lr": float("nan")}, "--lr must be positive, got nan"),
        ({"backbone_lr_scale": float("nan")}, "--backbone-lr-scale must be >= 0, got nan"),
        ({"batch_size": 1}, "--batch-size 1: training needs at least 2 samples"),
        ({"hard_negatives": -1.0}, "--hard-negatives must be 0 or more, got -1"),
        ({"hard_negatives": float("inf")}, "--hard-negatives must be 0 or more, got inf"),
        ({"workers": 100_000}, "--workers 100000: more than 4 DataLoader processes per"),
    ],
)
def test_options_that_would_train_on_nothing_or_fork_a_thousand(tmp_path, changes, message):
    with pytest.raises(OptionError, match=message):
        _cfg(tmp_path / "s.zarr", tmp_path / "run", **changes).validate()


def test_a_val_set_without_the_positive_class_keeps_the_lowest_val_loss(tmp_path):
    """Val IoU of cloud is 0 in every epoch when no val tile has cloud: best.pt must follow
    the val loss, not stay at epoch 1 (which would ship a barely trained model)."""
    from cloudkit.config import TileOptions
    from cloudkit.sample.synthetic import write_l1c_safe
    from cloudkit.tiler.writer import tile_paths
    from tests.peers.test_teacher import _grid_20m, _mask

    product = write_l1c_safe(tmp_path / "in", size_10m=192, seed=2).path
    scene_id, h, w, transform = _grid_20m(product)
    clear = np.zeros((h, w), np.uint8)  # every pixel clear: no cloud anywhere
    _mask(tmp_path / "masks", scene_id, clear, ("clear", "cloud"), transform)
    store = tmp_path / "s.zarr"
    options = TileOptions(resolution=20, tile_size=32, labels_from=str(tmp_path / "masks"))
    tile_paths([product], store, options)
    cfg = _cfg(store, tmp_path / "run", epochs=4, batch_size=4, crop=32, freeze_epochs=0)
    finetune(cfg)
    records = read_metrics(tmp_path / "run")
    assert all(r["val_iou"] == 0.0 for r in records)
    best = [r["epoch"] for r in records if r["best"]][-1]
    lowest = min(records, key=lambda r: r["val_loss"])["epoch"]
    assert best == lowest
    assert torch.load(tmp_path / "run" / "best.pt", weights_only=True)["epoch"] == lowest
