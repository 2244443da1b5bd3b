"""Training on several devices with PyTorch's own DistributedDataParallel.

`torchrun --nproc_per_node=N -m core train ...` starts N copies of the trainer; each computes gradients on
its share of the micro-batches and DDP averages them. The global batch stays what the run's config says
(batch_size x grad_accum): each process does grad_accum / N of the micro-batches. Every process draws the
same sequence of micro-batches from the same seeded generator and keeps its own share, so N processes see
exactly the windows one process would. Process 0 alone writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from core.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup() -> DistInfo:
    """Join the process group torchrun describes in the environment (NCCL on GPUs, gloo on CPUs); a plain
    single process gets DistInfo() and nothing is initialised."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return current()


def current() -> DistInfo:
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(
        rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )


def local_micro_batches(grad_accum: int, info: DistInfo) -> list[int]:
    """Which of the step's micro-batches this process computes."""
    if grad_accum % info.world:
        raise ConfigError(
            f"With {info.world} processes, grad_accum ({grad_accum}) must be a multiple of "
            f"{info.world} so that the global batch stays the same; set --grad-accum accordingly."
        )
    return [i for i in range(grad_accum) if i % info.world == info.rank]


def sum_across(value: float, info: DistInfo, device) -> float:
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def each_any_across(flags: list[bool], info: DistInfo, device) -> list[bool]:
    """For each flag, True if any process says so: every process then takes the same branch (stop, time up).
    All flags go in one collective: one round trip per training step."""
    if not info.enabled:
        return list(flags)
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v > 0) for v in t.tolist()]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
