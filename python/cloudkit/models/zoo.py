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
from typing import TYPE_CHECKING, TypedDict

from cloudkit.errors import CheckpointError
from cloudkit.models.card import ModelCard, Score
from cloudkit.peers.registry import PEERS

if TYPE_CHECKING:  # torch loads only when a model does
    from cloudkit.predict.model import Predictor

#: where shipped weights are installed, inside the package
WEIGHTS = Path(__file__).parents[1] / "weights"


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


_CS12 = "CloudSEN12 human labels, 6 dense patches, B02 B03 B04 only (never trained on)"
_CS12_SCRIBBLES = "CloudSEN12 human scribbles, 10 patches, B02 B03 B04 only (never trained on)"
_S2C = "the s2cloudless 1.2.2 test arrays, L1C 13 bands (never trained on)"
_T29UNU = "T29UNU L2A at 60 m (its image and these labels were trained on)"

#: The models shipped inside cloudkit, the first one the default. Scores: benches/bench_quality.py
SHIPPED: tuple[ShippedModel, ...] = (
    ShippedModel(
        name="default",
        weights="default.pt",
        sha256="4923dc0d9a232072d412d73796c5c5b110562c0e5eab4c1924fc94c9d793f5ad",
        card=ModelCard(
            name="default",
            version="0.2.0",
            bands="any subset of the 13 holding B02 B03 B04, L1C or L2A (absent bands are "
            "flagged, not guessed); more bands help",
            classes=("clear", "thick cloud", "thin cloud", "cloud shadow"),
            resolution="20 m (finer products are read at 20 m); trained on crops seen at 10 "
            "to 60 m from products of 10 to 160 m",
            training_data="fine-tuned from random weights on every real Sentinel-2 sample of "
            "../shared/data but the CloudSEN12 patches and the s2cloudless arrays: T29UNU and "
            "the Sahara tile with Sen2Cor's SCL; the T19UDP preview, BigEarthNet and eo-learn "
            "with ukis-csmask's classes (Apache-2.0); 80 % of crops with synthetic clouds, "
            "shadows cast by each tile's sun, haze and snow. Seed 0 of three (0, 1, 2), the "
            "lowest loss on the same held-out tiles (recipes/default_model.py)",
            licence="MIT",
            source="cloudkit: ResNet-18 U-Net with a band-presence stem, fp16, 28.8 MB "
            "(recipes/default_model.py)",
            scores=(
                Score("cloud F1 against human labels", 0.550, _CS12),
                Score("cloud shadow F1 against human labels", 0.0, _CS12),
                Score("mean IoU of the 4 classes", 0.243, _CS12),
                Score("cloud F1 against human labels", 0.800, _CS12_SCRIBBLES),
                Score("cloud F1 against s2cloudless", 0.867, _S2C),
                Score("cloud F1 against Sen2Cor's SCL", 0.947, _T29UNU),
                Score("cloud shadow F1 against Sen2Cor's SCL", 0.702, _T29UNU),
            ),
            note="far from the targets of a production masker on human labels: cloud F1 0.55 "
            "with true colour only, where the best brightness threshold chosen on those very "
            "patches reaches 0.55; it finds no shadow from true colour alone, and calls no pixel "
            "of those patches thin cloud. The recipe's three seeds score CloudSEN12 dense cloud "
            "F1 0.555 +/- 0.019, scribbles 0.823 +/- 0.022, s2cloudless 0.761 +/- 0.096 and "
            "T29UNU shadow F1 0.719 +/- 0.021 (with predict's shadow check); these weights are "
            "the seed of the lowest validation loss. Against the weights shipped before "
            "(model 0.1.0, shipped until 2026-12-07: one seed of the recipe at commit "
            "1562a15): more cloud (CloudSEN12 dense 0.550 vs 0.502, scribbles 0.800 vs 0.781, "
            "s2cloudless 0.867 vs 0.842), weaker shadows (T29UNU 0.712 vs 0.774, synthetic "
            "products 0.395 vs 0.546). docs/models.md has every figure beside the baselines and "
            "the peers",
        ),
    ),
)


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


class _PredictorOptions(TypedDict):
    """What every predictor takes besides its model."""

    device: str
    precision: str
    compile: bool


def load_predictor(
    model: str | Path, *, device: str = "auto", precision: str = "auto", compile: bool = False
) -> Predictor:
    """The predictor `--model` means: a checkpoint file first, then a shipped model's name,
    then a peer's; anything else is a one-line CheckpointError listing the names."""
    from cloudkit.predict.model import CheckpointPredictor

    options: _PredictorOptions = {"device": device, "precision": precision, "compile": compile}
    spec = str(model)
    if Path(spec).is_file():
        return CheckpointPredictor(Path(spec), **options)
    shipped = shipped_model(spec)
    if shipped is not None:
        return CheckpointPredictor(verified_weights(shipped), **options)
    if spec in PEERS:
        from cloudkit.peers.predictor import PeerPredictor

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
