"""The process group under ``torchrun`` and the few collectives training needs (gloo on CPU, NCCL
on CUDA). One process is a world of size 1: every helper then does nothing."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from create_bench.errors import ConfigError
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.models.alwig.model import World


def setup_world(device: str) -> tuple[World, str]:
    """Initialise torch.distributed under torchrun (WORLD_SIZE > 1); returns the world and device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not (dist.is_available() and dist.is_initialized()):
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    world = World()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}" if world.distributed else device
        if device == "cuda":
            device = f"cuda:{torch.cuda.current_device()}"  # set_device needs an index
        torch.cuda.set_device(torch.device(device))
    elif device != "cpu":
        raise ConfigError(f"device must be cpu or cuda[:N], got {device!r}")
    return world, device


def all_min(value: int, world: World, device: str) -> int:
    """The smallest ``value`` over the ranks (collective)."""
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def barrier(world: World) -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if world.distributed:
        dist.barrier()


def wrap_ddp(net: torch.nn.Module, cfg: ALWIGConfig, world: World, device: str) -> Any:
    """The network as the training step calls it: wrapped in DDP under torchrun, else itself."""
    unused = not cfg.use_align or cfg.align_weight == 0 or cfg.gen_weight == 0
    return ddp(net, world, device, find_unused=unused)


def ddp(net: torch.nn.Module, world: World, device: str, *, find_unused: bool) -> Any:
    """``net`` wrapped in DDP under torchrun (``find_unused``: some parameters may get no gradient
    in a step, e.g. RCG's generator while its retriever trains), else ``net`` itself."""
    if not world.distributed:
        return net
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(
        net,
        device_ids=[torch.device(device).index] if device.startswith("cuda") else None,
        find_unused_parameters=find_unused,
    )
