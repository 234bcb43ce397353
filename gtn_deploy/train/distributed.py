"""Process group set-up for ``torchrun``: gloo on CPU, nccl on CUDA; rank 0 writes.

Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from gtn_deploy.errors import UsageError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


TORCH_DEVICES = ("auto", "cpu", "cuda")


def pick_device(preference: str = "auto", local_rank: int = 0) -> str:
    if preference not in TORCH_DEVICES:
        raise UsageError(f"--torch-device {preference}: not a device this trains on; valid: "
                         f"{', '.join(TORCH_DEVICES)}")
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise UsageError("--torch-device cuda asked for, but torch sees no CUDA GPU")
    return f"cuda:{local_rank}"


def init_distributed(preference: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one; choose this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world <= 1:
        return DistInfo(device=device)
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over processes (in place, returned); identity when not distributed."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op when not distributed)."""
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
