from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import AugmentConfig, ModelConfig, TrainConfig
from core.data.splits import DataSplits, ImageSet


def make_splits(n_train=40, n_test=30, classes=4, size=14, channels=1, seed=0) -> DataSplits:
    """Learnable toy data: each class is a noisy copy of its own random prototype."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(classes, channels, size, size, generator=g) * 255

    def split(n):
        labels = torch.arange(n) % classes
        noise = torch.randn(n, channels, size, size, generator=g) * 30
        images = (prototypes[labels] + noise).clamp(0, 255).to(torch.uint8)
        return ImageSet(images, labels, tuple(f"c{i}" for i in range(classes)))

    return DataSplits("toy", split(n_train), split(n_test))


class Recorder(list):
    """A listener that keeps every event; `of(kind)` picks one kind."""

    def __call__(self, event):
        self.append(event)

    def of(self, kind):
        return [e for e in self if isinstance(e, kind)]


TINY_MODEL = ModelConfig(image_size=14, patch_size=7, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32)
TINY_AUGMENT = AugmentConfig(n_global=2, global_size=14, n_local=2, local_size=7)


@pytest.fixture
def toy_data() -> DataSplits:
    return make_splits()


@pytest.fixture
def tiny_config() -> TrainConfig:
    return TrainConfig(dataset="toy", model=TINY_MODEL, augment=TINY_AUGMENT, epochs=4, batch_size=16,
                       lr=1e-3, warmup_epochs=1, knn_k=5, eval_every=1, snapshot_every=2, checkpoint_every=1)


# Image files on disk, for the sources that read them (folders, Flowers-102).
def save(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def random_rgb(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
