"""Row 1: pretraining throughput, our on-device batched views against a per-sample reference.

Both pipelines drive the same `Trainer._train_step` (the same model, objective, CutMix, autocast on
CUDA and AdamW step, from the same initial weights); they differ only in where the views come from:

- ours: `core.augment.ViewMaker` on the uint8 batch already on the training device;
- reference: the usual torchvision pipeline, a Dataset that opens each image as PIL and applies
  `torchvision.transforms` to every view, batched by a DataLoader with worker processes
  (persistent, pinned memory on CUDA), then copied to the device.
"""
from __future__ import annotations

import math
import os
import statistics
from dataclasses import dataclass

import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from bench.timing import time_windows
from core.config import AugmentConfig, TrainConfig
from core.data.splits import DataSplits
from core.trainer.loop import Trainer

# One DataLoader worker per usable core (two here), at most 8: more workers than cores only adds
# switching, while a GPU host with many cores gives the reference a fair number of its own.
REFERENCE_WORKERS = min(len(os.sched_getaffinity(0)), 8)


@dataclass(frozen=True)
class Plan:
    """How much to time: `rounds` of (ours, reference) blocks, each warm-up + windows of steps."""

    rounds: int
    warmup: int
    windows: int
    steps_per_window: int

    @property
    def steps_per_block(self) -> int:
        return self.warmup + self.windows * self.steps_per_window


def reference_transform(aug: AugmentConfig, size: int, scale: tuple[float, float], channels: int) -> T.Compose:
    """The recipe of `aug` as per-image torchvision transforms, in core.augment's order.

    A transform whose probability is 0 is left out, as a hand-written pipeline would leave it out.
    """
    # The blur kernel core.augment.gaussian_blur uses: 3 sigma, at most what the crop can hold.
    radius = max(1, min(math.ceil(3 * aug.blur_sigma[1]), (size - 1) // 2))
    steps = [T.RandomResizedCrop(size, scale=scale, ratio=(3 / 4, 4 / 3), antialias=True)]
    if aug.flip_p > 0:
        steps.append(T.RandomHorizontalFlip(aug.flip_p))
    if aug.jitter_p > 0:
        # Saturation and hue do nothing to one channel (core.augment skips them there): leave them out.
        jitter = aug.jitter if channels == 3 else aug.jitter[:2]
        steps.append(T.RandomApply([T.ColorJitter(*jitter)], p=aug.jitter_p))
    if aug.gray_p > 0 and channels == 3:  # core.augment skips grayscale on one-channel data too
        steps.append(T.RandomGrayscale(aug.gray_p))
    if aug.blur_p > 0:
        steps.append(T.RandomApply([T.GaussianBlur(2 * radius + 1, aug.blur_sigma)], p=aug.blur_p))
    # ToTensor gives [0, 1]; Normalize(0.5, 0.5) maps it to [-1, 1], as core.augment.to_model_input.
    steps += [T.ToTensor(), T.Normalize([0.5] * channels, [0.5] * channels)]
    return T.Compose(steps)


class PerSampleViews(Dataset):
    """Image i -> (its n_global + n_local views, each a (C, S, S) float tensor, and i)."""

    def __init__(self, images: torch.Tensor, aug: AugmentConfig):
        pixels = images.cpu().permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8, as PIL wants it
        self.pixels = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
        channels = images.shape[1]
        self.transforms = ([reference_transform(aug, aug.global_size, aug.global_scale, channels)] * aug.n_global
                           + [reference_transform(aug, aug.local_size, aug.local_scale, channels)] * aug.n_local)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], int]:
        image = Image.fromarray(self.pixels[i])
        return [transform(image) for transform in self.transforms], i


class RandomBatches:
    """A batch sampler: `n_batches` batches of `size` distinct random indices per pass.

    One pass is one timed block, so the loader's workers fall idle between blocks instead of
    filling their queue while our pipeline is being timed.
    """

    def __init__(self, n_items: int, size: int, n_batches: int, seed: int):
        self.n_items, self.size, self.n_batches = n_items, size, n_batches
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        for _ in range(self.n_batches):
            yield torch.randperm(self.n_items, generator=self.generator)[:self.size].tolist()


class LoaderViews:
    """Stands in for the reference trainer's ViewMaker: hands it the views the loader made.

    The loader's batch is a list of n_views tensors (B, C, S, S); the trainer expects one tensor per
    crop group, view-major (n_views*B, C, S, S), exactly as ViewMaker lays them out.
    """

    def __init__(self, aug: AugmentConfig, device: torch.device):
        self.n_global, self.device = aug.n_global, device
        self.groups: list[torch.Tensor] = []

    def feed(self, views: list[torch.Tensor]) -> None:
        views = [v.to(self.device, non_blocking=True) for v in views]
        local = views[self.n_global:]
        self.groups = [torch.cat(views[:self.n_global])] + ([torch.cat(local)] if local else [])

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
        return self.groups


@dataclass(frozen=True)
class Throughput:
    batch: int
    views_per_image: int
    ours: list[float]  # source images/s, one per timed window
    reference: list[float]

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours)

    @property
    def reference_median(self) -> float:
        return statistics.median(self.reference)


def measure(config: TrainConfig, data: DataSplits, plan: Plan) -> Throughput:
    """Images/s of both pipelines, timed in alternating blocks in this process."""
    ours, reference = Trainer(config, data), Trainer(config, data)  # same seed: same initial weights
    device, batch, n = ours.device, config.batch_size, len(data.train)
    feeder = LoaderViews(config.augment, device)
    reference.views = feeder
    loader = DataLoader(PerSampleViews(data.train.images, config.augment),
                        batch_sampler=RandomBatches(n, batch, plan.steps_per_block, config.seed),
                        num_workers=REFERENCE_WORKERS, persistent_workers=True,
                        pin_memory=device.type == "cuda")
    order = torch.Generator().manual_seed(config.seed)

    def our_step() -> None:
        ours._train_step(torch.randperm(n, generator=order)[:batch].to(device), 0)

    def reference_step(batches) -> None:
        views, index = next(batches)
        feeder.feed(views)
        reference._train_step(index.to(device, non_blocking=True), 0)

    our_seconds, reference_seconds = [], []
    for _ in range(plan.rounds):  # alternating blocks, so a change in the machine's load hits both
        our_seconds += time_windows(our_step, device, plan.warmup, plan.windows, plan.steps_per_window)
        batches = iter(loader)
        reference_seconds += time_windows(lambda batches=batches: reference_step(batches), device, plan.warmup,
                                          plan.windows, plan.steps_per_window)
    images = plan.steps_per_window * batch
    return Throughput(batch, ours.views.views_per_image, [images / s for s in our_seconds],
                      [images / s for s in reference_seconds])


def describe(config: TrainConfig) -> str:
    """The recipe in one line, for the results file."""
    a, m = config.augment, config.model
    crops = f"{a.n_global} × {a.global_size} px crops, scale {a.global_scale}"
    if a.n_local:
        crops += f" + {a.n_local} × {a.local_size} px, scale {a.local_scale}"
    return (f"{crops}; flip p {a.flip_p}, jitter {a.jitter} p {a.jitter_p}, grayscale p {a.gray_p}, "
            f"blur p {a.blur_p} σ {a.blur_sigma}, CutMix α {a.cutmix_alpha}; batch {config.batch_size}; "
            f"ViT patch {m.patch_size}, dim {m.dim}, depth {m.depth}, {m.attention} attention")
