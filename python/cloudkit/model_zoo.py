"""What `--model` names: a checkpoint file, a model shipped inside cloudkit, or a peer model.

A shipped model's weights live in the package (``cloudkit/weights/``) and are checked against
the SHA-256 recorded here before ``torch.load(weights_only=True)`` reads them, so a damaged or
replaced file stops with one line instead of predicting nonsense. Each has a model card
(`model_card.py`); so has each peer (`peers.py`). `cloudkit models` lists them all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cloudkit.errors import CheckpointError
from cloudkit.model_card import ModelCard
from cloudkit.peers import PEERS

#: where shipped weights are installed, inside the package
WEIGHTS = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ShippedModel:
    """A fine-tuned checkpoint that ships with cloudkit."""

    name: str
    weights: str  # file name in WEIGHTS
    sha256: str
    card: ModelCard

    @property
    def path(self) -> Path:
        return WEIGHTS / self.weights


#: The models shipped inside cloudkit, the first one the default.
SHIPPED: tuple[ShippedModel, ...] = ()


@dataclass(frozen=True)
class Listing:
    """A model as `cloudkit models` shows it: its card and where it stands here."""

    card: ModelCard
    status: str  # "shipped, the default", "shipped", "peer, installed", "peer, not installed"


def listings() -> list[Listing]:
    """Every model `--model` takes by name, shipped ones first."""
    shipped = [
        Listing(m.card, "shipped, the default" if i == 0 else "shipped")
        for i, m in enumerate(SHIPPED)
    ]
    peers = [
        Listing(p.card, "peer, installed" if p.installed() else "peer, not installed")
        for p in PEERS.values()
    ]
    return shipped + peers


def model_names() -> list[str]:
    """Every name `--model` takes: the shipped models, then the peers."""
    return [m.name for m in SHIPPED] + list(PEERS)


#: What `--model` means when it is not given: the first shipped model.
DEFAULT = "default"


def shipped_model(name: str) -> ShippedModel | None:
    if name == DEFAULT and SHIPPED:
        return SHIPPED[0]
    return next((m for m in SHIPPED if m.name == name), None)


def verified_weights(model: ShippedModel) -> Path:
    """The weights file of ``model``, after checking its SHA-256 (CheckpointError if it is
    missing or differs)."""
    path = model.path
    if not path.is_file():
        raise CheckpointError(
            f"model {model.name}: its weights {path} are missing; reinstall cloudkit"
        )
    digest = file_sha256(path)
    if digest != model.sha256:
        raise CheckpointError(
            f"model {model.name}: {path} has SHA-256 {digest}, expected {model.sha256}; the "
            "file is damaged or was replaced: reinstall cloudkit"
        )
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_predictor(
    model: str | Path, *, device: str = "auto", precision: str = "auto", compile: bool = False
):
    """The predictor `--model` means: a checkpoint file first, then a shipped model's name,
    then a peer's; anything else is a one-line CheckpointError listing the names."""
    from cloudkit.predict.model import Predictor

    options = {"device": device, "precision": precision, "compile": compile}
    spec = str(model)
    if Path(spec).is_file():
        return Predictor(Path(spec), **options)
    shipped = shipped_model(spec)
    if shipped is not None:
        return Predictor(verified_weights(shipped), **options)
    if spec in PEERS:
        from cloudkit.predict.peer import PeerPredictor

        return PeerPredictor(spec, **options)
    if spec == DEFAULT:
        raise CheckpointError(
            "this cloudkit ships no model; pass --model with a best.pt of `cloudkit finetune` "
            f"or one of {', '.join(model_names())}"
        )
    raise CheckpointError(
        f"--model {spec}: no such checkpoint file, nor a model name; pass a best.pt of "
        f"`cloudkit finetune` or one of {', '.join(model_names())} (`cloudkit models` tells "
        "them apart)"
    )
