"""predict/model.py: a checkpoint's fields that prediction relies on are checked on load."""

from __future__ import annotations

import pytest
import torch

from cloudkit.errors import CheckpointError
from cloudkit.predict.model import CheckpointPredictor
from tests.helpers.predict_models import untrained_checkpoint


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("tile_size", -5, "tile_size -5 is no tile edge in pixels"),
        ("tile_size", 10**9, "tile_size 1000000000 is no tile edge"),
        ("resolution", float("nan"), "resolution nan is no pixel size in metres"),
        ("resolution", -20.0, "resolution -20.0 is no pixel size"),
        ("task", "banana", "unknown task 'banana'"),
    ],
)
def test_absurd_fields_are_refused_in_one_line(tmp_path, field, value, message):
    path = untrained_checkpoint(tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload[field] = value
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        CheckpointPredictor(path, device="cpu")
