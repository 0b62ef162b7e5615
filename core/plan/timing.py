"""What a config costs on this machine, timed once per command and passed on to every decision that reads it.

The auto recipe reads it to choose a side and a batch (core/plan/auto.py), the payoff rule to count the passes
pretraining would make (core/plan/payoff.py). One `Timing` per command: a throwaway trainer per model and views
(usually one), timed at each batch a decision asks about, once; every later question is answered from memory.
A step costs the same whatever the pixels show, so it trains on random images of the run's shape.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from core.config import TrainConfig
from core.data.images import fit_square
from core.data.splits import DataSplits, ImageSet
from core.model.backbone import embed
from core.trainer.loop import Trainer

# Timed steps a figure averages: three read ~10 % apart when other work shares the machine.
STEPS = 10
# A budgeted run plans about this many evaluations (core/plan/auto.py), and the random-init baseline is one more:
# a budget's passes are what its minutes leave once they are paid.
EVALUATIONS = 8


@dataclass(frozen=True)
class Throughput:
    """What a config costs on this machine."""

    images_per_s: float  # training images a second, at the timed config's batch and views
    eval_s: float  # one evaluation: the training and test images embedded (forward passes only)
    batch: int  # the batch it was timed at


def passes(minutes: float, n_train: int, timed: Throughput) -> float:
    """The passes over `n_train` training images that `minutes` of a run allow once its evaluations are paid."""
    steps_s = max(0.0, minutes * 60 - (EVALUATIONS + 1) * timed.eval_s)
    return steps_s * timed.images_per_s / max(n_train, 1)


class Timing:
    """Throughputs for a run on `n_train` training images whose evaluations embed `n_eval`, with `channels`."""

    def __init__(self, n_train: int, n_eval: int, channels: int, steps: int = STEPS):
        self.n_train, self.n_eval, self.channels, self.steps = n_train, n_eval, channels, steps
        self._trainers: dict[tuple, Trainer] = {}
        self._known: dict[tuple, Throughput] = {}

    def of(self, config: TrainConfig) -> Throughput:
        """`config`'s throughput here, timed on first ask: what a step costs is its model, stored side, views,
        objective and batch (crop scales, flips and jitter strengths cost the same)."""
        aug = config.augment
        shape = (config.model, config.data_size, aug.n_global, aug.global_size, aug.n_local, aug.local_size,
                 aug.blur_p > 0, aug.cutmix_alpha > 0 or aug.mixup_alpha > 0, config.objective)
        key = (*shape, config.batch_size)
        if key not in self._known:
            trainer = self._trainers.get(shape) or self._trainers.setdefault(shape, self._trainer(config))
            images_per_s = trainer.time_steps(self.steps, config.batch_size)
            self._known[key] = Throughput(images_per_s, self._eval_s(trainer, config), config.batch_size)
        return self._known[key]

    def _trainer(self, config: TrainConfig) -> Trainer:
        """A throwaway trainer holding the run's image count, one batch's random pixels repeated: its instance
        head is as wide as the run's (a head one batch wide read ~1.2x the images a second at 28 px)."""
        batch = config.batch_size
        side = config.data_size or config.model.image_size  # 0: stored at the model's side
        pixels = torch.randint(0, 256, (batch, self.channels, side, side), dtype=torch.uint8)
        repeat = torch.arange(max(self.n_train, batch)) % batch
        random_set = ImageSet(pixels[repeat], repeat % 2, ("a", "b"))
        data = DataSplits("timing", random_set, random_set.subset(torch.arange(2)))
        return Trainer(config.with_overrides(minutes=0.0, epochs=1, warmup_epochs=0), data)

    def _eval_s(self, trainer: Trainer, config: TrainConfig) -> float:
        """One forward pass of a batch, scaled to the images an evaluation embeds."""
        inputs = fit_square(trainer.train_images[:config.batch_size], config.model.image_size)
        started = time.perf_counter()
        embed(trainer.backbone, inputs)
        return (time.perf_counter() - started) * self.n_eval / len(inputs)
