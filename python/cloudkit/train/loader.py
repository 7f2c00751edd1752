"""The training DataLoader: items keyed ``(epoch, index)``, each drawn under its own seed.

The random views (or crops) of a sample depend only on ``(seed, epoch, index)``
(:class:`SeededViews`) and the shuffle only on ``(seed, epoch)`` (DistributedSampler), so on
CPU a fixed seed gives the same batches whatever the number of workers or processes, and the
loader's generator (saved in checkpoints) makes a resumed epoch draw what an uninterrupted
one would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from cloudkit.train import distributed
from cloudkit.train.seeding import sample_seed, seed_worker

#: most DataLoader workers picked by default, per process
MAX_DEFAULT_WORKERS = 8


class SeededViews(Dataset):
    """Wraps a dataset of random items (TwoViews, CloudinessPairs, crops); items are keyed
    ``(epoch, index)``.

    Each item is made under torch's global generator seeded from ``(seed, epoch, index)`` and
    restored afterwards, so it does not depend on which process or worker draws it, nor on
    what was drawn before. The epoch travels with the key, so CloudinessPairs gets its
    ``set_epoch`` inside persistent DataLoader workers too.
    """

    def __init__(self, views: Dataset, seed: int) -> None:
        self.views = views
        self.seed = seed
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.views)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        if epoch != self._epoch and hasattr(self.views, "set_epoch"):
            self.views.set_epoch(epoch)
        self._epoch = epoch
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, index))
            return self.views[index]


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys for :class:`SeededViews` from a DistributedSampler."""

    def __init__(self, base: DistributedSampler) -> None:
        self.base = base
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(i)) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)


def epoch_sampler(views: SeededViews, dist: distributed.Dist, seed: int) -> EpochSampler:
    """This rank's share of the items, shuffled from ``(seed, epoch)``."""
    return EpochSampler(
        DistributedSampler(
            views,
            num_replicas=dist.world_size,
            rank=dist.rank,
            shuffle=True,
            seed=seed,
            drop_last=False,
        )
    )


def seeded_loader(
    dataset: Dataset,
    sampler: Sampler,
    batch_size: int,
    *,
    workers: int,
    seed: int,
    pin_memory: bool,
) -> tuple[DataLoader, torch.Generator]:
    """A DataLoader whose shuffling and workers are seeded; its generator goes in checkpoints.
    Whole batches only: the tail of the shuffled items sits out each epoch."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=True,
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker,
        generator=generator,
    )
    return loader, generator


def default_workers(local_processes: int = 1) -> int:
    """DataLoader workers per process: the cores left after the training processes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = (cores or 1) // max(1, local_processes)
    return max(0, min(MAX_DEFAULT_WORKERS, per_process - 1))
