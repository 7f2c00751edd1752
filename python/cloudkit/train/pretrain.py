"""`cloudkit pretrain`: self-supervised pretraining with one of the methods.

Each method is a :class:`~cloudkit.train.pretraining.Pretraining` subclass in its own module,
imported here, so that :meth:`Pretraining.method_for` finds it by its ``config.Method``; what
the methods share is in train/pretraining.py, which imports none of them.
"""

from __future__ import annotations

from pathlib import Path

from cloudkit.config import PretrainConfig
from cloudkit.train.engine import EpochCallback
from cloudkit.train.pretrain_deepcluster import DeepClusterPretraining
from cloudkit.train.pretrain_moco import MoCoPretraining
from cloudkit.train.pretraining import Pretraining

__all__ = ["METHODS", "Pretraining", "pretrain"]

#: every method, by its --method
METHODS = {c.method: c for c in (MoCoPretraining, DeepClusterPretraining)}


def pretrain(
    cfg: PretrainConfig, *, on_epoch_end: EpochCallback | None = None, quiet: bool = False
) -> Path:
    """Pretrain an encoder; returns the checkpoint (``cfg.out / "last.pt"``).

    ``on_epoch_end(epoch, metrics)`` is called on every rank after the epoch's checkpoint is
    written (tests use it to stop a run as if it was killed); ``quiet`` prints nothing.
    """
    return METHODS[cfg.method].run(cfg, on_epoch_end=on_epoch_end, quiet=quiet)
