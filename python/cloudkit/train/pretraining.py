"""Self-supervised pretraining on tile stores: what every SSL method shares.

`cloudkit pretrain` (pretrain.py) runs a :class:`Pretraining` subclass (MoCo v2 in
pretrain_moco.py, DeepCluster v2 in pretrain_deepcluster.py) on the training engine
(engine.py). Shared here:
two views of every tile (TwoViews, or CloudinessPairs with ``--views cloudiness-pair``), the
checks of the options against the data and the checkpoint, resume (options left unset take
the checkpoint's values), the collapse and kNN monitors of the embeddings, the epoch line and
what the checkpoint says of the run.

A third method is one more file: a subclass setting ``method`` (its ``config.Method``) with
``ssl_model``, ``build_optimizer`` and ``forward`` (two views in, loss and embeddings out),
listed in pretrain.py's METHODS; its paper defaults go in ``config.METHOD_DEFAULTS``.

One process per device; under ``torchrun`` the model is wrapped in DistributedDataParallel and
every rank reads its own share of the tiles. On CPU a fixed ``--seed`` gives a bit-identical
run, whatever ``--workers``, and a resumed run continues exactly where the killed one stopped.
"""

from __future__ import annotations

import abc
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from cloudkit.config import Method, PretrainConfig, Views
from cloudkit.data import CloudinessPairs, TileDataset, TwoViews, ssl_view_transform
from cloudkit.errors import (
    BandMismatchError,
    CheckpointError,
    OptionError,
    StoreError,
    TileShapeError,
)
from cloudkit.models.checkpoint import PRETRAINING
from cloudkit.models.encoder import Encoder, encoder_state
from cloudkit.ssl.monitor import collapse_threshold, embedding_std, knn_accuracy
from cloudkit.train import distributed
from cloudkit.train.engine import Engine, EpochStats

if TYPE_CHECKING:
    from cloudkit.ssl.deepcluster import DeepClusterV2
    from cloudkit.ssl.moco import MoCo

#: embeddings kept per epoch for the collapse and kNN monitors (the first batches, which the
#: shuffle makes a random sample); kNN is O(n^2)
MONITOR_SAMPLES = 4096
KNN_NEIGHBOURS = 20


class Pretraining(Engine):
    """An SSL method on the engine: views of the tiles in, an encoder out.

    ``cfg`` must be resolved against the data: build it with :meth:`create`.
    """

    kind = PRETRAINING
    multi_process = True
    model: MoCo | DeepClusterV2  # ssl_model()'s
    #: the ``--method`` this class runs
    method: ClassVar[Method]

    def __init__(
        self,
        cfg: PretrainConfig,
        *,
        device: torch.device,
        dist: distributed.Dist,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        self.tiles = TileDataset(cfg.stores, min_valid=cfg.min_valid, any_bands=cfg.any_bands)
        if checkpoint is not None:
            cfg = _inherit(cfg, checkpoint)
        cfg = cfg.resolved(tile_size=self.tiles.tile_size, device_type=device.type)
        self.stores = ", ".join(str(s) for s in cfg.stores)
        self.check_data(cfg, dist)
        assert cfg.crop is not None  # resolved with the tile size
        transform = ssl_view_transform(cfg.crop, any_bands=cfg.any_bands)
        if cfg.views is Views.cloudiness_pair:
            views: Dataset = CloudinessPairs(self.tiles, transform, seed=cfg.seed)
        else:
            views = TwoViews(self.tiles, transform)
        self._kept_z: list[Tensor] = []
        self._kept_bins: list[Tensor] = []
        self._compiled = False
        super().__init__(cfg, views, device=device, dist=dist, checkpoint=checkpoint)

    @classmethod
    def method_for(cls, cfg: PretrainConfig) -> type[Pretraining]:
        # each method is a subclass, defined once pretrain.py has imported its module
        return {c.method: c for c in Pretraining.__subclasses__()}[cfg.method]

    # -- what each SSL method supplies ---------------------------------------------------------

    @abc.abstractmethod
    def ssl_model(self) -> nn.Module:
        """The SSL model (an ``nn.Module`` with ``encoder()``), on the CPU."""

    @abc.abstractmethod
    def forward(
        self, view1: Tensor, view2: Tensor, batch: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """(loss, embeddings of ``view1``) of a batch, through ``self.module``."""

    def check_data(self, cfg: PretrainConfig, dist: distributed.Dist) -> None:
        """Refuse options the data cannot serve (CloudkitError naming the option)."""
        n = len(self.tiles)
        assert cfg.crop is not None and cfg.batch_size is not None  # cfg is resolved
        if cfg.crop > self.tiles.tile_size:
            raise TileShapeError(
                f"--crop {cfg.crop} but the tiles of {self.stores} are {self.tiles.tile_size} "
                "px; lower --crop or tile with a larger --tile-size"
            )
        if cfg.batch_size * dist.world_size > n:
            raise OptionError(
                f"--batch-size {cfg.batch_size}{processes(dist)} but {self.stores} has {n} "
                f"usable tiles (valid fraction >= {cfg.min_valid:g}); lower --batch-size"
            )
        if cfg.views is Views.cloudiness_pair and not (self.tiles.cloud_bins() >= 0).any():
            raise StoreError(
                f"--views cloudiness-pair needs labelled tiles (cloud fractions) but "
                f"{self.stores} has none; tile labelled scenes (e.g. --scl-labels) or use "
                "--views two-augmentations"
            )

    # -- the engine's hooks --------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        model = self.ssl_model().to(self.device)
        if self.on_gpu:
            model = model.to(memory_format=torch.channels_last)
        return model

    def schedule(self) -> tuple[int, float]:
        return self.cfg.warmup_epochs, self.cfg.final_lr / self.cfg.lr

    def check_resume(self, checkpoint: dict[str, Any], path: Path) -> None:
        cfg = self.cfg
        if checkpoint["method"] != cfg.method.value:
            raise CheckpointError(
                f"--resume: {path} is a {checkpoint['method']} run but --method is "
                f"{cfg.method.value}; pass --method {checkpoint['method']} or start a new run"
            )
        saved_arch = checkpoint.get("config", {}).get("arch", "resnet18")
        if saved_arch != cfg.arch.value:
            raise CheckpointError(
                f"--resume: {path} pretrains a {saved_arch} encoder; resume with --arch "
                f"{saved_arch}"
            )
        saved_any = bool(checkpoint.get("config", {}).get("any_bands", False))
        if saved_any != cfg.any_bands:
            flag = "--any-bands" if saved_any else "--store-bands"
            raise CheckpointError(f"--resume: {path} was trained with {flag}; resume with it")
        bands = tuple(checkpoint["bands"])
        if bands != self.tiles.bands:
            raise BandMismatchError(
                f"--resume: {path} was trained on bands {','.join(bands)} but {self.stores} "
                f"holds bands {','.join(self.tiles.bands)}; resume on stores of the same bands"
            )

    def prepare(self) -> None:
        """Compile the encoders (``--compile``), then wrap in DDP (under torchrun)."""
        if self.cfg.compile and not self._compiled:
            for module in self.model.modules():
                if isinstance(module, Encoder):
                    module.compile()
            self._compiled = True
        super().prepare()

    def before_epoch(self, epoch: int) -> None:
        self._kept_z, self._kept_bins = [], []

    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        view1 = self.to_device(batch["view1"])
        view2 = self.to_device(batch["view2"])
        with self.autocast:
            loss, z = self.forward(view1, view2, batch)
        self._keep(z.detach(), batch["cloud_bin"])
        return loss

    def _keep(self, z: Tensor, bins: Tensor) -> None:
        """The first embeddings of the epoch (and their cloudiness bins), for the monitors."""
        kept = sum(len(k) for k in self._kept_z)
        take = min(math.ceil(MONITOR_SAMPLES / self.dist.world_size) - kept, z.shape[0])
        if take > 0:
            self._kept_z.append(z[:take].float())
            self._kept_bins.append(bins[:take].to(self.device))

    def epoch_record(self, stats: EpochStats) -> dict[str, Any]:
        z_all = distributed.all_gather_cat(torch.cat(self._kept_z))
        bins_all = distributed.all_gather_cat(torch.cat(self._kept_bins))
        record: dict[str, Any] = {
            "epoch": stats.epoch,
            "loss": stats.loss,
            "lr": stats.lrs[0],
            "images_per_s": stats.images_per_s,
            "seconds": stats.seconds,
        }
        record.update(_monitor(z_all, bins_all))
        return record

    def epoch_figures(self, record: dict[str, Any]) -> list[str]:
        parts = [
            f"loss {record['loss']:.4f}",
            *self.pace_figures(record),
            f"embedding std {record['embedding_std']:.4f}",
        ]
        if record.get("knn_accuracy") is not None:
            parts.append(f"kNN cloudiness {record['knn_accuracy']:.3f}")
        return parts

    def epoch_warning(self, record: dict[str, Any]) -> str | None:
        if not record["collapse_warning"]:
            return None
        return (
            f"[bold red]WARNING: representation collapse?[/] embedding std "
            f"{record['embedding_std']:.4g} is below {record['collapse_threshold']:.4g} in "
            f"epoch {record['epoch']}: the embeddings are nearly all alike. Check the "
            "learning rate, the batch size and the views."
        )

    def summary(self) -> str:
        cfg, tiles = self.cfg, self.tiles
        return (
            f"{cfg.method.value}: {len(tiles)} tiles of {tiles.tile_size} px, "
            f"{len(tiles.bands)} bands, views {cfg.crop} px, batch {cfg.batch_size}"
            f"{processes(self.dist)}, {self.steps_per_epoch} steps/epoch on {self.device}"
        )

    def checkpoint_info(self) -> dict[str, Any]:
        return {
            "method": self.cfg.method.value,
            "config": self.cfg.to_dict(),
            "bands": list(self.tiles.bands),
            "tile_size": self.tiles.tile_size,
            "num_samples": len(self.tiles),
            "encoder": encoder_state(self.model.encoder()),
        }


def processes(dist: distributed.Dist) -> str:
    """`` x N processes`` under torchrun, for messages about batches."""
    return f" x {dist.world_size} processes" if dist.enabled else ""


def _monitor(z: Tensor, bins: Tensor) -> dict[str, Any]:
    """Collapse and kNN-probe figures of one epoch's embeddings."""
    threshold = collapse_threshold(z.shape[1])
    std = embedding_std(z) if z.shape[0] >= 2 else float("nan")
    out: dict[str, Any] = {
        "embedding_std": std,
        "collapse_threshold": threshold,
        "collapse_warning": bool(std < threshold),
        "knn_accuracy": None,
    }
    labelled = int((bins >= 0).sum())
    if labelled >= 2:
        out["knn_accuracy"] = knn_accuracy(z, bins, k=KNN_NEIGHBOURS)
        out["knn_samples"] = labelled
    return out


def _inherit(cfg: PretrainConfig, checkpoint: dict[str, Any]) -> PretrainConfig:
    """Options left unset on a resumed run take the values of the run that is resumed."""
    saved = checkpoint.get("config", {})
    if saved.get("method") != cfg.method.value:
        return cfg  # refused by check_resume with a clear message
    inherited = (
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "momentum",
        "queue_size",
        "moco_momentum",
        "temperature",
        "prototypes",
        "warmup_epochs",
        "final_lr",
        "crop",
    )
    changes: dict[str, Any] = {}
    for name in inherited:
        if getattr(cfg, name) is None and saved.get(name) is not None:
            value = saved[name]
            changes[name] = tuple(value) if isinstance(value, list) else value
    return replace(cfg, **changes)
