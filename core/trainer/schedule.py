"""Learning-rate schedule, precomputed for every step (DINO style): linear warmup, then cosine; and a run's
length with the warmup that fits it."""
from __future__ import annotations

import dataclasses
import math

import torch

from core.config import TrainConfig


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


WARMUP_SHARE = 0.25  # the most of a run its warmup may take


def with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    """`config` for a run of `epochs`, its warmup cut to a quarter of a run too short for it (what a recipe's
    length and a time budget's fixed length both get), so a 1-epoch run is a valid schedule, not an error."""
    return dataclasses.replace(config, epochs=epochs, warmup_epochs=min(config.warmup_epochs, epochs * WARMUP_SHARE))
