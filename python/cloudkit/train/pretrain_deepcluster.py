"""DeepCluster v2 pretraining: embeddings trained to predict last epoch's k-means clusters.

The model is ``ssl.deepcluster.DeepClusterV2``; LARS with warm-up at the paper's rates
(config.METHOD_DEFAULTS). Every epoch after the first starts with a k-means of the previous
epoch's embeddings (one per head); the first epoch has no targets, so its loss is 0 and has no
gradient.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cloudkit.config import Method, PretrainConfig
from cloudkit.errors import CheckpointError, OptionError
from cloudkit.ssl.deepcluster import DeepClusterV2
from cloudkit.ssl.lars import LARS, param_groups
from cloudkit.train import distributed
from cloudkit.train.engine import EpochStats
from cloudkit.train.pretraining import Pretraining


class DeepClusterPretraining(Pretraining):
    method = Method.deepcluster
    model: DeepClusterV2  # ssl_model()'s

    _has_targets = False
    _clusters: list[dict[str, Any]] | None = None

    def ssl_model(self) -> nn.Module:
        cfg = self.cfg
        return DeepClusterV2(
            self.tiles.bands,
            len(self.tiles),
            any_bands=cfg.any_bands,
            arch=cfg.arch.value,
            n_prototypes=tuple(cfg.prototypes),
            temperature=cfg.temperature,
        )

    def build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        return LARS(
            param_groups(self.model, cfg.weight_decay),
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )

    def forward(
        self, view1: Tensor, view2: Tensor, batch: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        indices = batch["index"].to(self.device, non_blocking=True)
        return self.module(view1, view2, indices)

    def before_epoch(self, epoch: int) -> None:
        super().before_epoch(epoch)
        # k-means on last epoch's embeddings; cluster stats per head
        self._clusters = None
        if epoch > 1:
            result = self.model.cluster(seed=self.cfg.seed + epoch)
            self._clusters = [dict(stats) for stats in result.values()]
        self._has_targets = bool((self.model.assignments >= 0).any())

    def loss_has_gradient(self) -> bool:
        """No targets before the first clustering: the loss is 0 without gradient."""
        return self._has_targets

    def epoch_record(self, stats: EpochStats) -> dict[str, Any]:
        record = super().epoch_record(stats)
        record["clusters"] = self._clusters
        return record

    def epoch_figures(self, record: dict[str, Any]) -> list[str]:
        heads = [
            f"head {h}: {stats.get('empty_clusters', '?')} empty"
            for h, stats in enumerate(record.get("clusters") or [])
        ]
        return [*super().epoch_figures(record), *heads]

    def check_data(self, cfg: PretrainConfig, dist: distributed.Dist) -> None:
        super().check_data(cfg, dist)
        n = len(self.tiles)
        assert cfg.prototypes is not None and cfg.batch_size is not None  # cfg is resolved
        k = max(cfg.prototypes)
        flag = f"--prototypes {','.join(map(str, cfg.prototypes))}"
        per_step = cfg.batch_size * dist.world_size
        # whole batches only: the tail of the shuffled tiles sits out each epoch
        seen = min(n, math.ceil(n / dist.world_size) // cfg.batch_size * per_step)
        if k > n:
            raise OptionError(
                f"{flag} but {self.stores} has {n} usable tiles; k-means needs at least one "
                "tile per prototype: lower --prototypes"
            )
        if k > seen:
            raise OptionError(
                f"{flag} but an epoch uses only {seen} of the {n} tiles of {self.stores} "
                f"(whole batches of {per_step}); k-means needs at least one tile per "
                "prototype: lower --prototypes or --batch-size"
            )

    def check_resume(self, checkpoint: dict[str, Any], path: Path) -> None:
        super().check_resume(checkpoint, path)
        if checkpoint["num_samples"] != len(self.tiles):
            raise CheckpointError(
                f"--resume: {path} was trained on {checkpoint['num_samples']} tiles but "
                f"{self.stores} now gives {len(self.tiles)}; DeepCluster keeps one embedding "
                "per tile, so resume with the same stores and --min-valid"
            )
