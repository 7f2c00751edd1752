"""What `--model` names (model_zoo.py): a checkpoint file, a shipped model (weights checked by
SHA-256 before loading), a peer; anything else is one line listing the names."""

from __future__ import annotations

import json

import pytest

from cloudkit.cli import main
from cloudkit.errors import CheckpointError
from cloudkit.models import zoo as model_zoo
from cloudkit.models.card import ModelCard, Score
from cloudkit.models.zoo import ShippedModel, file_sha256, load_predictor, verified_weights
from cloudkit.predict.model import CheckpointPredictor, Predictor
from tests.helpers.predict_models import untrained_checkpoint
from tests.helpers.shared_data import AWS_T19UDP

CARD = ModelCard(
    name="tiny",
    version="0.0.1",
    bands="B01 B02 B03 B04 B05 B06 B07 B8A B09 B11 B12",
    classes=("clear", "cloud"),
    resolution="60 m",
    training_data="none: untrained, for the tests",
    licence="MIT",
    source="tests/test_model_zoo.py",
    scores=(Score("cloud F1", 0.5, "nothing"),),
)


@pytest.fixture
def shipped(tmp_path, monkeypatch) -> ShippedModel:
    """A shipped model 'tiny' whose weights (an untrained checkpoint) lie in tmp_path."""
    weights = untrained_checkpoint(tmp_path / "tiny.pt")
    model = ShippedModel("tiny", "tiny.pt", file_sha256(weights), CARD)
    monkeypatch.setattr(model_zoo, "WEIGHTS", tmp_path)
    monkeypatch.setattr(model_zoo, "SHIPPED", (model,))
    return model


def test_ships_the_default_and_names_the_peers():
    assert [m.name for m in model_zoo.SHIPPED] == ["default"]
    assert model_zoo.model_names() == ["default", "ukis-csmask", "s2cloudless", "dl-l8s2-uv"]


def test_shipped_model_by_name(shipped, tmp_path):
    predictor = load_predictor("tiny", device="cpu")
    assert isinstance(predictor, CheckpointPredictor)
    assert isinstance(predictor, Predictor)
    assert predictor.info.path == tmp_path / "tiny.pt"
    assert model_zoo.model_names() == ["tiny", "ukis-csmask", "s2cloudless", "dl-l8s2-uv"]


def test_a_file_comes_before_a_name(shipped, tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    untrained_checkpoint(tmp_path / "elsewhere" / "tiny", task="shadow")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_predictor("tiny", device="cpu").info.task == "shadow"


def test_damaged_weights_stop_before_loading(shipped, tmp_path, monkeypatch):
    (tmp_path / "tiny.pt").write_bytes(b"replaced")
    with pytest.raises(CheckpointError, match=r"model tiny: .*tiny.pt has SHA-256 [0-9a-f]{64}, "):
        verified_weights(shipped)
    loaded = []
    monkeypatch.setattr("torch.load", lambda *a, **k: loaded.append(a))
    with pytest.raises(CheckpointError, match="damaged or was replaced: reinstall cloudkit"):
        load_predictor("tiny")
    assert loaded == []
    (tmp_path / "tiny.pt").unlink()
    with pytest.raises(CheckpointError, match="model tiny: its weights .* are missing"):
        load_predictor("tiny")


def test_predict_with_a_shipped_model(shipped, tmp_path, capsys, shared_data):
    out = tmp_path / "masks"
    assert main(["predict", str(AWS_T19UDP), "--model", "tiny", "-o", str(out)]) == 0
    summary = json.loads((out / f"{AWS_T19UDP.name}.json").read_text())
    assert summary["model"]["checkpoint"] == str(tmp_path / "tiny.pt")


def test_unknown_model_is_one_line_listing_the_names(tmp_path, capsys):
    code = main(["predict", str(tmp_path), "--model", "fmask"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("cloudkit: error: --model fmask: no such checkpoint file, nor a model")
    assert "one of default, ukis-csmask, s2cloudless, dl-l8s2-uv" in err


def test_models_lists_shipped_and_peers(shipped, monkeypatch, capsys):
    from cloudkit.peers.registry import S2Cloudless

    monkeypatch.setattr(S2Cloudless, "package", "no_such_package_for_cloudkit")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "none yet" not in out
    assert out.index("tiny 0.0.1 (MIT)  [shipped, the default]") < out.index("ukis-csmask 1.0.0")
    assert "cloud F1: 0.500 on nothing" in out
    assert "s2cloudless 1.7.3 (CC BY-SA 4.0)  [peer, not installed]" in out
    assert "install: pip install 'cloudkit[peers]'" in out


def test_models_without_shipped_ones(monkeypatch, capsys):
    monkeypatch.setattr(model_zoo, "SHIPPED", ())
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("shipped with cloudkit: none yet")
    assert "cloud F1 against Sen2Cor's SCL: 0.945 on T29UNU" in out


def test_one_models_card_in_full(capsys):
    assert main(["models", "s2cloudless"]) == 0
    out = capsys.readouterr().out
    for field in ("bands:", "classes:", "resolution:", "training data:", "licence:       CC BY-SA"):
        assert field in out
    assert "share-alike" in out and "status:" in out
    assert main(["models", "fmask"]) == 1
    err = capsys.readouterr().err
    assert (
        err == "cloudkit: error: no model called 'fmask'; expected one of default, ukis-csmask, "
        "s2cloudless, dl-l8s2-uv\n"
    )


def test_a_peer_is_a_predictor():
    pytest.importorskip("s2cloudless", reason="the peers extra is not installed")
    from cloudkit.peers.predictor import PeerPredictor

    predictor = load_predictor("s2cloudless")
    assert isinstance(predictor, PeerPredictor)
    assert isinstance(predictor, Predictor)  # one protocol: the pipeline runs either
