"""End-to-end latency of classifying one upload on CPU: `python -m bench.classify_latency`.

The default CPU model (random init: latency does not depend on the weights) against 2,040 random
training embeddings; each call decodes the example's file bytes (load_upload) and classifies it.
Prints a markdown table.
"""
from __future__ import annotations

import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from core.classify import Classifier, PublishedModel
from core.upload import load_upload
from core.config import preset
from core.data import FASHION_CLASSES
from core.model import Backbone

EXAMPLE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "sneaker.png"
N_TRAIN = 2040
RUNS = 100
WARMUP = 3  # first calls pay for lazy allocation and thread-pool start-up; not what a user waits for


def published_model() -> PublishedModel:
    config = preset("cpu-quick")
    torch.manual_seed(0)
    backbone = Backbone(config.model, channels=1)
    side = config.model.image_size
    return PublishedModel(config=config, weights=backbone.state_dict(), channels=1, class_names=FASHION_CLASSES,
                          train_images=torch.randint(0, 256, (N_TRAIN, 1, side, side), dtype=torch.uint8),
                          train_labels=torch.arange(N_TRAIN) % len(FASHION_CLASSES),
                          train_embeddings=torch.randn(N_TRAIN, config.model.dim), epoch=0, light_on_dark=True)


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def time_calls(classifier: Classifier, data: bytes) -> np.ndarray:
    """Milliseconds per load_upload + classify, RUNS of them after WARMUP untimed ones."""
    for _ in range(WARMUP):
        classifier.classify(load_upload(data))
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        classifier.classify(load_upload(data))
        times.append((time.perf_counter() - start) * 1000)
    return np.array(times)


def main() -> None:
    published = published_model()
    classifier = Classifier(published)
    data = EXAMPLE.read_bytes()
    times = time_calls(classifier, data)
    model = published.config.model
    rows = [
        ("image", f"{EXAMPLE.name} ({len(data):,} bytes, decoded every call)"),
        ("model", f"ViT {model.image_size} px, patch {model.patch_size}, dim {model.dim}, depth {model.depth}"),
        ("method", classifier.method),
        ("calls", f"{RUNS} (after {WARMUP} warm-up)"),
        ("median", f"{np.median(times):.2f} ms"),
        ("p95", f"{np.percentile(times, 95):.2f} ms"),
        ("machine", f"{cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"),
        ("threads", f"torch default {torch.get_num_threads()}; classification runs on 1"),
        ("software", f"Python {platform.python_version()}, torch {torch.__version__}"),
        ("date", datetime.datetime.now().isoformat(timespec="seconds")),
    ]
    print("| classify latency | |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
