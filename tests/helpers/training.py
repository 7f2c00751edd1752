"""What tests of the training commands share."""

from __future__ import annotations

import torch


def diverging(monkeypatch, optimizer: type) -> None:
    """Every step of ``optimizer`` leaves NaN weights, as a diverging run does (an option
    value cannot do it: NaN and absurd learning rates are refused before training)."""
    step = optimizer.step

    def poisoned(self, *args, **kwargs):
        result = step(self, *args, **kwargs)
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.fill_(float("nan"))
        return result

    monkeypatch.setattr(optimizer, "step", poisoned)
