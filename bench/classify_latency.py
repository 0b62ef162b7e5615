"""End-to-end latency of classifying one upload on CPU: `python -m bench.classify_latency`.

The default CPU model (random init: latency does not depend on the weights) against 2,040 random
training embeddings; each call decodes the example's file bytes (core.images.decode) and classifies it.
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

from core.data.images import decode
from core.data.sources import FASHION_CLASSES
from core.data.splits import ImageSet
from core.model.backbone import Backbone
from core.plan.presets import preset
from core.serve.classifier import Classifier
from core.serve.model_file import ModelFile

EXAMPLE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "sneaker.png"
N_TRAIN = 2040
RUNS = 100
WARMUP = 3  # first calls pay for lazy allocation and thread-pool start-up; not what a user waits for


def published_model() -> ModelFile:
    """Random weights over random light-on-dark images (a bright patch on black, as Fashion-MNIST's
    garments), so an upload takes the framing path the app takes for Fashion-MNIST."""
    config = preset("cpu-quick")
    torch.manual_seed(0)
    backbone = Backbone(config.model, channels=1)
    side = config.model.image_size
    images = torch.zeros(N_TRAIN, 1, side, side, dtype=torch.uint8)
    images[:, :, 4:-4, 6:-6] = torch.randint(64, 256, (N_TRAIN, 1, side - 8, side - 12), dtype=torch.uint8)
    train = ImageSet(images, torch.arange(N_TRAIN) % len(FASHION_CLASSES), FASHION_CLASSES)
    return ModelFile.build(config, train, backbone.state_dict(), torch.randn(N_TRAIN, config.model.dim), 0)


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def time_calls(classifier: Classifier, data: bytes) -> np.ndarray:
    """Milliseconds per decode + classify, RUNS of them after WARMUP untimed ones."""
    for _ in range(WARMUP):
        classifier.classify(decode(data))
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        classifier.classify(decode(data))
        times.append((time.perf_counter() - start) * 1000)
    return np.array(times)


def main() -> None:
    published = published_model()
    classifier = Classifier(published)
    data = EXAMPLE.read_bytes()
    times = time_calls(classifier, data)
    model = published.model
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
