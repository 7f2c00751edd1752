"""`cloudkit export`: a fine-tuned model as cloudkit ships them, and the resolution it works at."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloudkit.cli import main
from cloudkit.io.discover import discover_scenes
from cloudkit.io.grid import plan_grid
from cloudkit.predict.model import CheckpointPredictor
from tests.helpers.predict_models import untrained_checkpoint
from tests.helpers.shared_data import L2A_T29UNU, T29UNU_60M_BANDS


def test_export_halves_the_weights_and_predicts_the_same(tmp_path, capsys):
    source = untrained_checkpoint(tmp_path / "best.pt", task="multi", extra={"made_for": 60.0})
    out = tmp_path / "shipped.pt"
    assert main(["export", str(source), str(out), "--resolution", "20"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(out)) and "sha256 " in line
    assert out.stat().st_size < 0.6 * source.stat().st_size
    payload = torch.load(out, weights_only=True)
    assert "optimizer" not in payload and payload["resolution"] == 20.0
    weights = payload["model"]["state_dict"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    a, b = CheckpointPredictor(source, device="cpu"), CheckpointPredictor(out, device="cpu")
    assert (a.info.resolution, b.info.resolution) == (None, 20.0)
    assert payload["made_for"] == b.info.made_for == 60.0  # what fine-tuning saw, kept
    rng = np.random.default_rng(0)
    dn = rng.integers(1000, 4000, (2, len(T29UNU_60M_BANDS), 64, 64)).astype(np.uint16)
    valid = np.ones((2, 1, 64, 64), np.uint8)
    pa = a.probabilities(a.inputs(dn, valid, T29UNU_60M_BANDS))
    pb = b.probabilities(b.inputs(dn, valid, T29UNU_60M_BANDS))
    assert np.abs(pa - pb).max() < 0.02


def test_export_refuses_what_is_not_a_fine_tuned_model(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["export", str(junk), str(tmp_path / "o.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "junk.pt" in err
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.usefixtures("shared_data")
def test_a_model_s_resolution_is_a_floor_of_the_default_grid():
    """A model working at 20 m reads a 60 m-only product at 60 m (not finer), and an explicit
    --resolution still wins."""
    (scene,) = discover_scenes([L2A_T29UNU])
    assert plan_grid(scene, bands=T29UNU_60M_BANDS, at_least=20).resolution == 60
    assert plan_grid(scene, bands=T29UNU_60M_BANDS, at_least=120).resolution == 120
    assert plan_grid(scene, resolution=60, bands=T29UNU_60M_BANDS, at_least=120).resolution == 60


def _absurd(path, **state):
    """A fine-tuned checkpoint whose model state says ``state`` (a million classes, say)."""
    source = untrained_checkpoint(path)
    payload = torch.load(source, weights_only=True)
    payload["model"].update(state)
    torch.save(payload, source)
    return source


IMPOSSIBLE = [
    ({"num_classes": 1_000_000}, "num_classes 1000000; a model predicts 2 to 255 classes"),
    ({"num_classes": 3}, "binary True with num_classes 3; a binary model has 2 classes"),
    ({"num_classes": "2"}, "num_classes '2', not a number"),
    ({"bands": ["B99"]}, "segmenter state cannot be rebuilt: encoder bands B99"),
]


@pytest.mark.parametrize("state, says", IMPOSSIBLE)
def test_a_checkpoint_of_an_impossible_model_is_one_line(state, says, tmp_path, capsys):
    from tests.helpers.cli import fails_with_one_line

    ckpt = _absurd(tmp_path / "best.pt", **state)
    for args in (
        ("export", ckpt, tmp_path / "o.pt"),
        ("predict", "--sample", "--model", ckpt, "-o", tmp_path / "masks"),
    ):
        line = fails_with_one_line(capsys, *args)
        assert str(ckpt) in line and says in line, line
    assert not (tmp_path / "o.pt").exists() and not list(tmp_path.glob("masks/*_mask.tif"))


@pytest.mark.shared_data
@pytest.mark.parametrize("state, says", IMPOSSIBLE)
def test_evaluate_opens_its_stores_then_says_the_model_is_impossible(
    state, says, tmp_path_factory, tmp_path, capsys, monkeypatch
):
    from cloudkit.models import checkpoint
    from tests.helpers.cli import fails_with_one_line
    from tests.helpers.finetune_stores import real_store_64

    ckpt = _absurd(tmp_path / "best.pt", **state)
    store = real_store_64(tmp_path_factory)
    line = fails_with_one_line(capsys, "evaluate", ckpt, store, "--device", "cpu")
    assert str(ckpt) in line and says in line, line
    # a store that is not there is said before the (slow) model is built
    built: list = []
    monkeypatch.setattr(checkpoint, "load_finetuned", lambda *args: built.append(args))
    missing = tmp_path / "no-store.zarr"
    line = fails_with_one_line(capsys, "evaluate", ckpt, store, missing, "--device", "cpu")
    assert str(missing) in line and built == []


def test_export_to_a_folder_it_cannot_write_is_one_line(tmp_path, capsys):
    from tests.helpers.cli import fails_with_one_line
    from tests.test_unwritable_outputs import small_disk

    source = untrained_checkpoint(tmp_path / "best.pt")
    with small_disk(tmp_path / "ro", "64k", read_only=True) as ro:
        line = fails_with_one_line(capsys, "export", source, ro / "o.pt")
        assert f"{ro / 'o.pt'}: cannot write the checkpoint (Read-only file system)" in line
        assert not list(ro.iterdir())
    # a path below a file: no folder can be made there
    line = fails_with_one_line(capsys, "export", source, source / "o.pt")
    assert f"{source / 'o.pt'}: cannot write the checkpoint" in line


@pytest.mark.parametrize("resolution", ["0", "1e9"])
def test_export_refuses_a_resolution_predict_would_refuse(resolution, tmp_path, capsys):
    from tests.helpers.cli import fails_with_one_line

    source = untrained_checkpoint(tmp_path / "best.pt")
    out = tmp_path / "o.pt"
    line = fails_with_one_line(capsys, "export", source, out, "--resolution", resolution)
    assert line.startswith("cloudkit: error: --resolution ") and "not a pixel size" in line
    assert not out.exists()
