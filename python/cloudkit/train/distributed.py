"""Data-parallel plumbing: one process per device, started by ``torchrun``.

``torchrun --nproc-per-node N -m cloudkit.cli pretrain ...`` sets RANK, LOCAL_RANK and
WORLD_SIZE (plus MASTER_ADDR / MASTER_PORT) in every process; :func:`setup` reads them and
joins the process group (NCCL on CUDA, Gloo on CPU). Without those variables, or with a world
of one, nothing is initialised and the helpers below degrade to single-process no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cloudkit.errors import DeviceError


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def from_env() -> Dist:
    """Read the torchrun variables; a plain process is rank 0 of a world of 1."""
    env = os.environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", "0"))
        local_world = int(env.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError as err:
        raise DeviceError(f"bad torchrun environment: {err}") from None
    return Dist(rank=rank, local_rank=local_rank, world_size=world, local_world_size=local_world)


def setup(device_type: str) -> Dist:
    """Join the process group described by the environment (if any) and pick this rank's GPU."""
    info = from_env()
    if not info.enabled:
        return info
    if device_type == "cuda":
        if info.local_rank >= torch.cuda.device_count():
            raise DeviceError(
                f"LOCAL_RANK {info.local_rank} but only {torch.cuda.device_count()} CUDA "
                "device(s); lower --nproc-per-node"
            )
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        if device_type == "cuda":
            dist.init_process_group(backend="nccl", device_id=torch.device("cuda", info.local_rank))
        else:
            dist.init_process_group(backend="gloo")
    return info


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate (along dim 0) the same-shaped tensors of every rank, in rank order.

    The result lives where the input lives. NCCL needs GPU tensors, so a CPU tensor is moved
    to this rank's GPU for the exchange when the backend is NCCL.
    """
    if not _active():
        return tensor
    home = tensor.device
    work = tensor.contiguous()
    if dist.get_backend() == "nccl" and work.device.type != "cuda":
        work = work.to(torch.device("cuda", torch.cuda.current_device()))
    parts = [torch.empty_like(work) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, work)
    return torch.cat(parts).to(home)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a new tensor; the input is left alone)."""
    if not _active():
        return tensor.clone()
    home = tensor.device
    work = tensor.detach().clone()
    if dist.get_backend() == "nccl" and work.device.type != "cuda":
        work = work.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(home)
