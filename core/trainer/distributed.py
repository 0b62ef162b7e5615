"""Process-group set-up for `torchrun` (DDP): NCCL on GPUs, gloo on CPU; a no-op for one process. And the
one module DDP wraps: backbone and objective together."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, value: int, device: torch.device) -> int:
        """Rank 0's `value` on every rank (e.g. the epochs a time budget allows, which each rank would
        time differently); the value itself for one process."""
        if not self.enabled:
            return value
        shared = torch.tensor([value], dtype=torch.long, device=device)
        dist.broadcast(shared, src=0)
        return int(shared.item())


def init_from_env(device_type: str) -> Dist:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1), once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' picks cuda > mps > cpu; an explicit device that is not available is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device 'mps' was asked for but MPS is not available")
    return torch.device(name, local_rank) if name == "cuda" else torch.device(name)


class Joint(nn.Module):
    """Backbone and objective as one module, so DDP sees every parameter of a step."""

    def __init__(self, backbone: nn.Module, objective: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.objective = objective

    def forward(self, groups: list, targets: torch.Tensor) -> torch.Tensor:
        loss = torch.zeros((), device=targets.device)
        for mixed in groups:  # one loss per crop group (global, local), summed as in the paper
            # (n_views*B,): row r of a view-major group belongs to image r % B
            target = targets.repeat(len(mixed.images) // len(targets))
            loss = loss + self.objective(self.backbone(mixed.images), target, target[mixed.partner], mixed.lam)
        return loss
