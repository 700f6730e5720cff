"""Process-group helpers for single-process and ``torchrun`` (DistributedDataParallel) runs.

``torchrun --nproc_per_node N -m odssam train ...`` sets ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE``; :func:`init_distributed` reads them and joins the group with NCCL when the
process owns a GPU and gloo otherwise. Without those variables everything here degrades to
no-ops for a single process, so the training loop has one code path.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from odssam.utils.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the (possibly trivial) process group.

    Attributes:
        rank: Global rank (0 in a single-process run).
        world_size: Number of processes.
        local_rank: Rank on this host; picks the GPU.
        device: The device this process computes on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints; the others stay quiet."""
        return self.rank == 0


def process_device(name: str | None, local_rank: int = 0) -> torch.device:
    """This process's device: :func:`~odssam.utils.device.resolve_device`, then a CUDA device
    without an index becomes ``cuda:LOCAL_RANK`` (one GPU per process on a host) and current."""
    device = resolve_device(name or None)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def init_distributed(device: str | None = "auto", timeout_minutes: float = 30.0) -> DistInfo:
    """Join the process group described by ``torchrun``'s environment, if any.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; with several processes on one host
            each takes ``cuda:LOCAL_RANK``.
        timeout_minutes: Collective timeout; building the embedding cache on one rank can
            keep the others waiting at a barrier for a while.

    Returns:
        The :class:`DistInfo` of this process.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = process_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.is_distributed:
        if info.device.type == "cuda":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def broadcast_buffers(module: torch.nn.Module, info: DistInfo, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (e.g. BatchNorm running statistics) to every rank.

    DistributedDataParallel keeps parameters equal, but each process updates its running
    statistics from its own part of the batch; this makes the state identical again.
    """
    if info.is_distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=src)


def all_reduce_mean(value: float, info: DistInfo) -> float:
    """Mean of a Python float over all ranks."""
    if not info.is_distributed:
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / info.world_size


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Element-wise sum of a tensor over all ranks (returns a new tensor on its device)."""
    if not info.is_distributed:
        return values.clone()
    values = values.to(info.device).clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's picklable ``obj``, in rank order."""
    if not info.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank."""
    if not info.is_distributed:
        return obj
    box = [obj if info.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]
