"""Row 6: how one epoch's cost grows with the number of training images.

Each size is a balanced, seeded subset of the source's training pool (`load_dataset(per_class=)`;
the smaller subsets lie inside the larger ones). One epoch is every image once, in batches, through
`Trainer._train_step`; the kNN monitor (embed the training set and the test split, vote) is timed
apart, since the recipe runs it only every few epochs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from bench.timing import synchronize
from core.config import TrainConfig
from core.data.sources import load_dataset
from core.data.splits import DataSplits
from core.trainer.loop import Trainer

WARMUP_STEPS = 2


@dataclass(frozen=True)
class EpochCost:
    images: int
    steps: int
    train_s: float  # one epoch of optimiser steps
    knn_s: float  # one kNN evaluation on the test split
    head_params: int  # the N-way instance head grows with N


def load_subset(config: TrainConfig, per_class: int, test_images: int | None) -> DataSplits:
    """`per_class` training images of each class; the test split cut to `test_images` if given."""
    data = load_dataset(config.dataset, per_class=per_class, seed=config.seed)
    if test_images is None:
        return data
    return DataSplits(data.name, data.train, data.test.subset(torch.arange(test_images)))


def epoch_cost(config: TrainConfig, data: DataSplits) -> EpochCost:
    trainer = Trainer(config, data)
    device, n, batch = trainer.device, len(data.train), config.batch_size
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed)).to(device)
    for _ in range(WARMUP_STEPS):
        trainer._train_step(order[:batch], 0)
    steps = math.ceil(n / batch)
    synchronize(device)
    start = time.perf_counter()
    for step in range(steps):
        trainer._train_step(order[step * batch:(step + 1) * batch], 0)
    synchronize(device)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    trainer.evaluate()
    synchronize(device)
    knn_s = time.perf_counter() - start
    head = sum(p.numel() for p in trainer.objective.parameters())
    return EpochCost(n, steps, train_s, knn_s, head)


def measure(config: TrainConfig, per_class: tuple[int, ...], test_images: int | None) -> list[EpochCost]:
    return [epoch_cost(config, load_subset(config, k, test_images)) for k in per_class]
