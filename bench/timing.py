"""Timing helpers shared by the benchmark rows: device synchronisation and windows of steps."""
from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so a clock read after it covers that work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_windows(step: Callable[[], object], device: torch.device, warmup: int, windows: int,
                 steps_per_window: int) -> list[float]:
    """`warmup` untimed calls of `step`, then seconds per window of `steps_per_window` calls.

    Whole windows rather than single steps: a pipeline fed by DataLoader workers delivers batches
    in bursts (two workers finish two batches at once), so one step's time says little, while a
    window that spans several deliveries measures the rate.
    """
    for _ in range(warmup):
        step()
    seconds = []
    for _ in range(windows):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps_per_window):
            step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds
