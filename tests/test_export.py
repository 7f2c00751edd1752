"""`cloudkit export`: a fine-tuned model as cloudkit ships them, and the resolution it works at."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloudkit.cli import main
from cloudkit.io.discover import discover_scenes
from cloudkit.io.grid import plan_grid
from cloudkit.predict.model import Predictor
from tests.helpers.predict_models import untrained_checkpoint
from tests.helpers.shared_data import L2A_T29UNU, T29UNU_60M_BANDS


def test_export_halves_the_weights_and_predicts_the_same(tmp_path, capsys):
    source = untrained_checkpoint(tmp_path / "best.pt", task="multi")
    out = tmp_path / "shipped.pt"
    assert main(["export", str(source), str(out), "--resolution", "20"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(out)) and "sha256 " in line
    assert out.stat().st_size < 0.6 * source.stat().st_size
    payload = torch.load(out, weights_only=True)
    assert "optimizer" not in payload and payload["resolution"] == 20.0
    weights = payload["model"]["state_dict"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    a, b = Predictor(source, device="cpu"), Predictor(out, device="cpu")
    assert (a.info.resolution, b.info.resolution) == (None, 20.0)
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
