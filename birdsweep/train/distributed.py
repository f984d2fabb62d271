"""Multi-process training helpers (``torchrun``): ranks, the DDP wrapper, gathering.

Gradients are averaged by :class:`torch.nn.parallel.DistributedDataParallel` (see
:func:`data_parallel`); everything else here is a no-op in a single process, so the loop calls
these unconditionally.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str = "gloo") -> DistInfo:
    """Join the process group that ``torchrun`` set up (``WORLD_SIZE`` > 1), else single.

    Args:
        backend: ``gloo`` (CPU) or ``nccl`` (CUDA: each rank then uses GPU ``LOCAL_RANK``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if backend == "nccl":  # trainer.device=cuda means this rank's own GPU
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    log.info("distributed: rank %d of %d (%s)", info.rank, info.world_size, backend)
    return info


def current() -> DistInfo:
    """The process group this process is in (single-process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
        )
    return DistInfo()


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if current().enabled:
        dist.barrier()


def data_parallel(module: nn.Module) -> nn.Module:
    """``module`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` when this
    process is one of several (else ``module`` itself).

    DDP copies rank 0's parameters and buffers to every rank when it wraps, then averages the
    gradients of each backward pass through the wrapper's ``forward`` (in buckets, overlapping
    the backward pass) and copies rank 0's buffers to the others before each forward.
    ``find_unused_parameters``: timm backbones keep layers that ``forward_features`` does not
    run (e.g. MobileNetV3's ``conv_head``); their gradients stay ``None``, as in one process.
    """
    if not current().enabled:
        return module
    return DistributedDataParallel(module, find_unused_parameters=True)


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank (no-op in one process):
    after a training step each rank's statistics hold its own last batch."""
    if current().enabled:
        for t in module.buffers():
            dist.broadcast(t.data, src=0)


def mean_across_ranks(value: float) -> float:
    """The mean of a Python float over ranks."""
    info = current()
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item() / info.world_size)


def shard_indices(n: int) -> np.ndarray:
    """This rank's contiguous share of ``range(n)`` (concatenated in rank order = all)."""
    info = current()
    return np.array_split(np.arange(n), info.world_size)[info.rank]


def gather_rows(array: np.ndarray) -> np.ndarray:
    """Concatenate each rank's rows in rank order (every rank gets the result)."""
    info = current()
    if not info.enabled:
        return array
    parts: list[np.ndarray | None] = [None] * info.world_size
    dist.all_gather_object(parts, array)
    return np.concatenate([p for p in parts if p is not None and len(p)])
