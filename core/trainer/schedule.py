"""Learning-rate schedule, precomputed for every step (DINO style): linear warmup, then cosine."""
from __future__ import annotations

import math

import torch


def warmup_cosine(base: float, final: float, total_steps: int, warmup_steps: int) -> torch.Tensor:
    """(total_steps,) float64: 0 -> base linearly over warmup_steps, then cosine from base to final."""
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps ({warmup_steps}) <= total_steps ({total_steps}), total >= 1")
    steps = torch.arange(total_steps, dtype=torch.float64)
    warm = base * (steps + 1) / max(warmup_steps, 1)
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = (steps - warmup_steps) / decay_steps
    cosine = final + 0.5 * (base - final) * (1 + torch.cos(math.pi * progress))
    return torch.where(steps < warmup_steps, warm, cosine)
