"""The training engine: the loop every kind of training runs, written once.

A method (MoCo and DeepCluster pretraining, segmentation fine-tuning) is an :class:`Engine`
subclass that supplies only what is its own: its data and checks, model and optimiser, the
loss of a batch, what happens around an epoch (clustering, freezing, validation), the record
and line of an epoch, and what its checkpoints describe. The engine owns the rest:

- seeding: items drawn per ``(seed, epoch, index)``, the global generators seeded before the
  model is built (seeding.py, loader.py), so a fixed seed gives the same run on CPU;
- device and precision: bf16 autocast with ``--amp``, channels-last inputs on GPUs,
  DistributedDataParallel under torchrun for methods that run one process per device;
- the schedule: linear warm-up, then half a cosine, stepped per optimiser step;
- exact resume: model, optimiser, schedule, every RNG and the loader's generator in
  ``DIR/last.pt``; ``--resume`` continues the run in ``DIR``, and ``DIR`` already holding a
  ``last.pt`` is refused without it;
- the epoch loop, a guard that stops on a non-finite loss or weights before anything of the
  epoch is written, the metrics line (metrics.py) and atomic checkpoints (cloudkit.models.checkpoint).

Rank 0 alone writes files and prints.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from cloudkit import __version__
from cloudkit.errors import CheckpointError, TrainingDivergedError
from cloudkit.files.disk import require_writable
from cloudkit.models.checkpoint import (
    BEST,
    LAST,
    CheckpointKind,
    load_checkpoint,
    remove_stale_temporaries,
    resolve_device,
    save_checkpoint,
)
from cloudkit.plots import METRICS_PNG, training_figure, write_figure
from cloudkit.train import distributed
from cloudkit.train.display import TrainingDisplay
from cloudkit.train.loader import SeededViews, default_workers, epoch_sampler, seeded_loader
from cloudkit.train.metrics import MetricsWriter, read_metrics
from cloudkit.train.seeding import rng_state, seed_everything, set_rng_state

if TYPE_CHECKING:
    from torch.nn.parallel import DistributedDataParallel

#: ``on_epoch_end(epoch, record)``: called on every rank once the epoch's files are written
EpochCallback = Callable[[int, dict[str, Any]], None]


@dataclass(frozen=True)
class EpochStats:
    """What the engine measured of one epoch's training steps."""

    epoch: int
    loss: float  # mean over the steps (and the ranks)
    lrs: list[float]  # learning rate of each parameter group at the epoch's last step
    images_per_s: float
    seconds: float


def lr_factor(step: int, *, total: int, warmup: int, final_ratio: float) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): linear warm-up over
    ``warmup`` steps, then half a cosine from 1 down to ``final_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, *, total: int, warmup: int, final_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """The :func:`lr_factor` schedule on ``optimizer`` (stepped once per optimizer step)."""

    def factor(step: int) -> float:
        return lr_factor(step, total=total, warmup=warmup, final_ratio=final_ratio)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Engine(abc.ABC):
    """Data, model, optimiser and schedule of one run, and the loop that trains them.

    Subclasses open their data, resolve ``cfg`` against it and run their checks in
    ``__init__(cfg, *, device, dist, checkpoint)``, then call ``super().__init__`` with the
    dataset of training items (random crops or views, drawn under a per-item seed). The
    engine then builds the loader, seeds, and calls :meth:`build_model` and
    :meth:`build_optimizer`. ``cfg`` is a run config (cloudkit.config) with ``out``, ``resume``,
    ``epochs``, ``batch_size``, ``lr``, ``seed``, ``workers``, ``amp`` and ``device``.
    """

    #: the kind of checkpoint the method writes
    kind: ClassVar[CheckpointKind]
    #: the checkpoint a finished run returns (and the CLI prints)
    result: ClassVar[str] = LAST
    #: one process per device under torchrun (else one process, whatever the environment)
    multi_process: ClassVar[bool] = False

    def __init__(
        self,
        cfg: Any,
        items: Dataset,
        *,
        device: torch.device,
        dist: distributed.Dist,
        checkpoint: dict[str, Any] | None = None,
    ) -> None:
        if cfg.workers is None:
            cfg = replace(cfg, workers=default_workers(dist.local_world_size))
        self.cfg = cfg
        self.device = device
        self.dist = dist
        self.on_gpu = device.type == "cuda"
        if checkpoint is not None:
            self.check_resume(checkpoint, cfg.out / LAST)
        self.train_set = SeededViews(items, cfg.seed)
        self.sampler = epoch_sampler(self.train_set, dist, cfg.seed)
        self.loader, self.generator = seeded_loader(
            self.train_set,
            self.sampler,
            cfg.batch_size,
            workers=cfg.workers,
            seed=cfg.seed,
            pin_memory=self.on_gpu,
        )
        self.steps_per_epoch = len(self.loader)
        # the same seed on every rank: identical initial weights, as DDP expects
        seed_everything(cfg.seed)
        self.model = self.build_model()
        self.optimizer = self.build_optimizer()
        warmup_epochs, final_ratio = self.schedule()
        self.scheduler = warmup_cosine(
            self.optimizer,
            total=cfg.epochs * self.steps_per_epoch,
            warmup=warmup_epochs * self.steps_per_epoch,
            final_ratio=final_ratio,
        )
        self.autocast = (
            torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            if cfg.amp
            else contextlib.nullcontext()
        )
        self.ddp: DistributedDataParallel | None = None

    # -- what a method supplies --------------------------------------------------------------

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """The model, on ``self.device`` (the global generators are seeded)."""

    @abc.abstractmethod
    def build_optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of ``self.model``, at the peak learning rates."""

    def schedule(self) -> tuple[int, float]:
        """(warm-up epochs, final lr as a share of the peak) of the learning-rate schedule."""
        return 0, 0.0

    def check_resume(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint this run cannot continue (CheckpointError naming the option)."""
        return None

    @abc.abstractmethod
    def training_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """The loss of one batch (forward under ``self.autocast`` through ``self.module``)."""

    def loss_has_gradient(self) -> bool:
        """False while the loss has no gradient (DDP then must not wait for gradients)."""
        return True

    def before_epoch(self, epoch: int) -> None:
        """Called before each epoch's steps (1-based ``epoch``)."""
        return None

    @abc.abstractmethod
    def epoch_record(self, stats: EpochStats) -> dict[str, Any]:
        """The epoch's metrics line (equal on every rank): ``stats`` plus validation."""

    @abc.abstractmethod
    def epoch_figures(self, record: dict[str, Any]) -> list[str]:
        """The figures of the epoch's line (``loss 0.1234``, ...), in the order shown."""

    @staticmethod
    def pace_figures(record: dict[str, Any]) -> list[str]:
        """Learning rate and throughput, as every epoch line shows them."""
        return [f"lr {record['lr']:.3g}", f"{record['images_per_s']:.0f} img/s"]

    def epoch_warning(self, record: dict[str, Any]) -> str | None:
        """A warning to print in red after the epoch line, if any."""
        return None

    def is_best(self, record: dict[str, Any]) -> bool:
        """Whether the epoch is written to ``DIR/best.pt`` too."""
        return False

    def should_stop(self) -> bool:
        """Stop before ``--epochs`` (early stopping); :meth:`stop_note` says why."""
        return False

    def stop_note(self, epoch: int) -> str:
        return f"stopped after epoch {epoch}"

    @abc.abstractmethod
    def summary(self) -> str:
        """One line on the run: data, batches and device."""

    @abc.abstractmethod
    def checkpoint_info(self) -> dict[str, Any]:
        """What checkpoints say of the model and the run (besides weights and epoch)."""

    def model_state(self) -> dict[str, Any]:
        """The checkpoint's ``model``."""
        return self.model.state_dict()

    def load_model_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)

    def method_state(self) -> dict[str, Any]:
        """Resumable state of the method's own (checkpoint keys and values)."""
        return {}

    def load_method_state(self, checkpoint: dict[str, Any]) -> None:
        """Inverse of :meth:`method_state`."""
        return None

    # -- running ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        cfg: Any,
        *,
        device: torch.device,
        dist: distributed.Dist | None = None,
        checkpoint: dict[str, Any] | None = None,
    ) -> Engine:
        """Open the data, resolve ``cfg`` against it (and the checkpoint) and check everything
        that depends on the data; raises CloudkitError with the option to change."""
        method = cls.method_for(cfg)
        dist = dist or distributed.Dist()
        return method(cfg, device=device, dist=dist, checkpoint=checkpoint)  # type: ignore[call-arg]

    @classmethod
    def method_for(cls, cfg: Any) -> type[Engine]:
        """The class that runs ``cfg``: this one, or the member of a family (``--method``)."""
        return cls

    @classmethod
    def run(
        cls, cfg: Any, *, on_epoch_end: EpochCallback | None = None, quiet: bool = False
    ) -> Path:
        """Train (or continue, with ``cfg.resume``) the run in ``cfg.out``; returns its
        :attr:`result` checkpoint. ``on_epoch_end`` lets tests stop a run as if killed;
        ``quiet`` shows nothing (the Python API reports through ``on_epoch_end``)."""
        cfg.validate()
        checkpoint = _checkpoint_to_resume(cfg, cls.kind)
        info = distributed.from_env() if cls.multi_process else distributed.Dist()
        if info.rank == 0:
            require_writable(cfg.out, "--out")
        device = resolve_device(cfg.device, info.local_rank)
        dist = distributed.setup(device.type) if cls.multi_process else info
        try:
            return cls.create(cfg, device=device, dist=dist, checkpoint=checkpoint).fit(
                checkpoint, on_epoch_end, quiet=quiet
            )
        finally:
            if cls.multi_process:
                distributed.teardown()

    def fit(
        self,
        checkpoint: dict[str, Any] | None,
        on_epoch_end: EpochCallback | None = None,
        *,
        quiet: bool = False,
    ) -> Path:
        """The epochs left, each followed by its metrics line and checkpoints."""
        cfg, dist = self.cfg, self.dist
        last, best = cfg.out / LAST, cfg.out / BEST
        if self.on_gpu:
            torch.backends.cudnn.benchmark = True
        done = 0 if checkpoint is None else self.load_state(checkpoint)
        display = TrainingDisplay(enabled=dist.is_main and not quiet)
        if done >= cfg.epochs or self.should_stop():
            display.note(f"{last}: {done} of {cfg.epochs} epochs done; nothing to do")
            return cfg.out / self.result
        self.prepare()
        if dist.is_main:
            remove_stale_temporaries(last)
            remove_stale_temporaries(best)
        metrics = MetricsWriter(
            cfg.out, enabled=dist.is_main, keep_epochs=None if checkpoint is None else done
        )
        display.note(self.summary() + (f", from epoch {done + 1}" if done else ""))
        with display:
            for epoch in range(done + 1, cfg.epochs + 1):
                record = self.run_epoch(epoch, display)
                if dist.is_main:
                    # metrics, then best, then last: a run killed in between redoes this epoch
                    # on resume and its line is replaced (MetricsWriter keeps only epochs of
                    # the checkpoint)
                    metrics.write(record)
                    _plot_metrics(metrics.path, display)
                    if self.is_best(record):
                        save_checkpoint(self.checkpoint(epoch, record, resumable=False), best)
                    save_checkpoint(self.checkpoint(epoch, record), last)
                figures = [f"epoch {epoch}/{cfg.epochs}", *self.epoch_figures(record)]
                display.note("  ".join(figures))
                warning = self.epoch_warning(record)
                if warning:
                    display.warning(warning)
                if on_epoch_end is not None:
                    on_epoch_end(epoch, record)
                if self.should_stop():
                    display.note(self.stop_note(epoch))
                    break
        return cfg.out / self.result

    def prepare(self) -> None:
        """Wrap the model in DDP under torchrun; after any state loading."""
        if not self.dist.enabled or self.ddp is not None:
            return

        # the methods keep their buffers (MoCo's queue, DeepCluster's bank) equal on every rank
        # themselves; broadcasting buffers from rank 0 before every forward would only cost
        # bandwidth (newer torch renames the option; the sync at construction is harmless)
        accepted = inspect.signature(DistributedDataParallel.__init__).parameters
        no_buffer_sync: dict[str, Any] = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in accepted
            else {"broadcast_buffers": False}
        )
        self.ddp = DistributedDataParallel(
            self.model,
            device_ids=[self.device.index] if self.on_gpu else None,
            **no_buffer_sync,
        )

    @property
    def module(self) -> nn.Module:
        """What forward goes through: the DDP wrapper under torchrun, else the model."""
        return self.ddp if self.ddp is not None else self.model

    def to_device(self, images: Tensor) -> Tensor:
        """A batch of images on the device (channels-last on GPUs)."""
        fmt = torch.channels_last if self.on_gpu else torch.contiguous_format
        return images.to(self.device, non_blocking=True, memory_format=fmt)

    # -- one epoch ------------------------------------------------------------------------------

    def train_step(self, batch: dict[str, Tensor]) -> Tensor:
        """One optimisation step; returns the (detached) loss."""
        no_sync = self.ddp is not None and not self.loss_has_gradient()
        ctx = self.ddp.no_sync() if no_sync else contextlib.nullcontext()  # type: ignore[union-attr]
        with ctx:
            loss = self.training_loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def run_epoch(self, epoch: int, display: TrainingDisplay) -> dict[str, Any]:
        """Train one epoch (1-based); returns its metrics (equal on every rank)."""
        self.before_epoch(epoch)
        self.sampler.set_epoch(epoch)
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        lrs = self._lrs()
        images_per_step = self.cfg.batch_size * self.dist.world_size
        display.epoch_started(epoch, self.cfg.epochs, self.steps_per_epoch)
        start = time.perf_counter()
        for step, batch in enumerate(self.loader, start=1):
            lrs = self._lrs()
            loss = self.train_step(batch)
            loss_sum += loss.double()
            if display.wants_update(step):
                seconds = time.perf_counter() - start
                display.step_done(step, float(loss), step * images_per_step / max(seconds, 1e-9))
        if self.on_gpu:
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        steps = self.steps_per_epoch
        mean_loss = float(distributed.all_reduce_sum(loss_sum)) / (steps * self.dist.world_size)
        self._stop_if_diverged(mean_loss, epoch)
        images_per_s = steps * images_per_step / max(seconds, 1e-9)
        return self.epoch_record(EpochStats(epoch, mean_loss, lrs, images_per_s, seconds))

    def _lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def _stop_if_diverged(self, loss: float, epoch: int) -> None:
        """Stop before a diverged epoch is recorded: its checkpoint would hold NaN weights."""
        if math.isfinite(loss) and self._weights_finite():
            return
        what = (
            f"the loss became {loss}"
            if not math.isfinite(loss)
            else "the weights became NaN or infinite"
        )
        kept = f"{LAST} still holds epoch {epoch - 1}" if epoch > 1 else "nothing was saved"
        raise TrainingDivergedError(
            f"{what} in epoch {epoch}; lower --lr (now {self.cfg.lr:g}) or turn off --amp; {kept}"
        )

    def _weights_finite(self) -> bool:
        # a loss measured before the last update can be finite while the update was not
        checks = [torch.isfinite(p).all() for p in self.model.parameters()]
        return bool(torch.stack(checks).all())

    # -- state ------------------------------------------------------------------------------------

    def checkpoint(
        self, epoch: int, record: dict[str, Any] | None, *, resumable: bool = True
    ) -> dict[str, Any]:
        """The checkpoint after ``epoch``; ``resumable`` adds what ``--resume`` needs."""
        state: dict[str, Any] = {
            **self.kind.header(),
            **self.checkpoint_info(),
            "epoch": epoch,
            "model": self.model_state(),
            "metrics": record,
            "versions": {"cloudkit": __version__, "torch": str(torch.__version__)},
        }
        if resumable:
            state.update(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": rng_state(),
                    "loader": {"generator": self.generator.get_state(), "sampler_epoch": epoch},
                    **self.method_state(),
                }
            )
        return state

    def load_state(self, checkpoint: dict[str, Any]) -> int:
        """Restore everything from a ``last.pt``; returns the epochs already done."""
        path = self.cfg.out / LAST
        try:
            self.load_model_state(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            raise CheckpointError(
                f"--resume: {path} does not fit this run ({first}); resume with the options of "
                "the run that wrote it"
            ) from None
        set_rng_state(checkpoint["rng"])
        self.generator.set_state(checkpoint["loader"]["generator"])
        self.load_method_state(checkpoint)
        return int(checkpoint["epoch"])


def _plot_metrics(path: Path, display: TrainingDisplay) -> None:
    """metrics.png beside metrics.jsonl, drawn from the file itself. A figure that fails to
    draw is a warning, not the end of a run."""
    try:
        figure = training_figure(read_metrics(path), title=str(path.parent))
        write_figure(figure, path.with_name(METRICS_PNG))
    except Exception as err:  # noqa: BLE001 - any plotting failure; the run's data is safe
        display.warning(f"{path.with_name(METRICS_PNG)} not written: {err}")


def _checkpoint_to_resume(cfg: Any, kind: CheckpointKind) -> dict[str, Any] | None:
    """The ``last.pt`` in ``cfg.out`` with ``--resume``; None for a new run, which must not
    overwrite one."""
    last = cfg.out / LAST
    if cfg.resume:
        if not last.is_file():
            raise CheckpointError(
                f"--resume but {cfg.out} holds no {LAST}; drop --resume to start a new run"
            )
        return load_checkpoint(last, kind, option="--resume")
    if last.exists():
        raise CheckpointError(
            f"{cfg.out} already holds a checkpoint ({LAST}); pass --resume to continue that "
            "run, or choose another --out"
        )
    return None
