"""MoCo v2 pretraining: a query and a momentum key encoder, a queue of negative keys.

The model is ``ssl.moco.MoCo``; SGD with momentum at the paper's rates (config.METHOD_DEFAULTS).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cloudkit.config import Method, PretrainConfig
from cloudkit.errors import OptionError
from cloudkit.ssl.moco import MoCo
from cloudkit.train import distributed
from cloudkit.train.pretraining import Pretraining, processes


class MoCoPretraining(Pretraining):
    method = Method.moco
    model: MoCo  # ssl_model()'s

    def ssl_model(self) -> nn.Module:
        cfg = self.cfg
        return MoCo(
            self.tiles.bands,
            any_bands=cfg.any_bands,
            arch=cfg.arch.value,
            queue_size=cfg.queue_size,
            momentum=cfg.moco_momentum,
            temperature=cfg.temperature,
        )

    def build_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )

    def forward(
        self, view1: Tensor, view2: Tensor, batch: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        return self.module(view1, view2)

    def check_data(self, cfg: PretrainConfig, dist: distributed.Dist) -> None:
        super().check_data(cfg, dist)
        # every step replaces a whole slice of the queue with the keys of all ranks
        assert cfg.batch_size is not None and cfg.queue_size is not None  # cfg is resolved
        per_step = cfg.batch_size * dist.world_size
        if cfg.queue_size < per_step or cfg.queue_size % per_step:
            multiple = max(per_step, cfg.queue_size // per_step * per_step)
            raise OptionError(
                f"--queue-size {cfg.queue_size} is not a multiple of the keys per step "
                f"(--batch-size {cfg.batch_size}{processes(dist)} = {per_step}); use e.g. "
                f"--queue-size {multiple}"
            )
