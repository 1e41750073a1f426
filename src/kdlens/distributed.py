"""Several processes (``torchrun``): process group, who writes files, and what is shared.

Launched by ``torchrun --nproc-per-node N -m kdlens run ...`` every process runs the same
pipeline on the same data with the same seed. Training wraps the distiller in
DistributedDataParallel and each process trains on its share of every global batch (see
``BatchLoader``); only the main process (rank 0) writes files and evaluates. A plain
``kdlens run`` is a world of one, where every helper here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from kdlens.errors import KdlensError


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched() -> bool:
    """Started by torchrun (or any launcher that sets the env:// variables) with 2+ processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched_main() -> bool:
    """The process that reports and writes, told from the launcher's env (before :func:`setup`
    has joined the process group, when :func:`is_main` would say every process is)."""
    return not launched() or int(os.environ.get("RANK", "0")) == 0


def setup(device: torch.device) -> torch.device:
    """Join the process group torchrun describes; returns this process's device.

    gloo on CPU, NCCL on CUDA, where each process takes the GPU of its ``LOCAL_RANK``.
    """
    if not launched():
        return device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            dist.init_process_group(backend, device_id=device)
        else:
            dist.init_process_group(backend)
    return device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module) -> nn.Module:
    """DistributedDataParallel around ``module`` when there are several processes.

    ``device_ids`` stays None: the module already sits on this process's single device.
    """
    if world_size() == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module)


def sum_across(values: Sequence[float], device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all processes (float64, so counts stay exact)."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def agree(value: Any, problem: str) -> None:
    """Raise ``KdlensError(problem)`` unless every process holds the same ``value``.

    Used where processes decide from files, which only rank 0 writes: on machines without a
    shared file system they would otherwise take different paths and wait on each other forever.
    """
    if world_size() == 1:
        return
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise KdlensError(problem)


def sync_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm statistics) to every process.

    DDP syncs them before each forward, but the last training step leaves each process with
    statistics of its own share; validation must see one model, or processes pick different
    best epochs.
    """
    if world_size() == 1:
        return
    for buf in module.buffers():
        dist.broadcast(buf, src=0)


def broadcast(value: Any) -> Any:
    """Rank 0's ``value``, in every process (a search's rank 0 decides, the others follow)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
