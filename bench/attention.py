"""Row 2: vit-pytorch's explicit softmax attention against SDPA in the same Backbone.

Forward + backward of one batch of random images, bf16 autocast on CUDA as the trainer runs it.
Both modes hold the same weights (explicit's state_dict loaded into the SDPA backbone) and are
timed alternately, so a change in the machine's load hits both.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import torch

from bench.timing import synchronize
from core.config import ModelConfig
from core.model.backbone import Backbone

MODES = ("explicit", "sdpa")


def _fwd_bwd(net: Backbone, images: torch.Tensor, device: torch.device) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        loss = net(images).float().square().mean()
    loss.backward()
    net.zero_grad(set_to_none=True)


def measure(model: ModelConfig, channels: int, batch: int, device: torch.device, warmup: int,
            repeats: int) -> dict[str, float]:
    """Median seconds per forward + backward of a (batch, channels, S, S) batch, per mode."""
    torch.manual_seed(0)
    nets = {mode: Backbone(dataclasses.replace(model, attention=mode), channels).to(device).train()
            for mode in MODES}
    nets["sdpa"].load_state_dict(nets["explicit"].state_dict())
    size = model.image_size
    images = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    for net in nets.values():
        for _ in range(warmup):
            _fwd_bwd(net, images, device)
    seconds = {mode: [] for mode in MODES}
    for _ in range(repeats):
        for mode, net in nets.items():
            synchronize(device)
            start = time.perf_counter()
            _fwd_bwd(net, images, device)
            synchronize(device)
            seconds[mode].append(time.perf_counter() - start)
    return {mode: statistics.median(times) for mode, times in seconds.items()}
