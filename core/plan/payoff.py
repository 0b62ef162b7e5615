"""When pretraining is expected to pay: the one rule, read by core.pipeline and said by auto runs.

Self-supervised pretraining spends minutes on differences the labels may not care about; it repays them
when the labels are few (they cannot teach the features themselves) or when the budget is long enough
for the objective to learn more than the labels would. The rule reads two measured facts, never a
dataset's name:
- labels a class: the median number of labelled training images over the classes;
- passes: the views of each training image that pretraining's share of the budget allows, at the
  throughput timed on this machine.
Pretraining + fine-tuning is expected to match or beat supervised training from scratch when the
labels are at most FEW_LABELS a class (the paper's Flowers-102 regime, 20 a class, and where the
measured Fashion-2040 curves cross, between 5 and 20: docs/RESULTS.md) or when the passes reach
LONG_PASSES (where multi-crop and CutMix start to pay, core/auto_recipe.py; Fashion-2040 with every
label at ~325 passes: 86.0 against 85.9). Otherwise supervised training from scratch is expected to
match or beat it at the same minutes (Fashion-2040 at ~97 passes, 204 labels a class: 85.0 against 83.7).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core.config import TrainConfig
from core.data.augment import ViewMaker
from core.data.labels import FEW_LABELS, labelled_index, labels_per_class
from core.data.splits import DataSplits
from core.objectives import objective_class
from core.plan import auto as auto_recipe

LONG_PASSES = auto_recipe.MULTI_CROP_PASSES  # one number: where the paper's long-run recipe starts to pay
RATE_STEPS = 10  # timed steps for a budget's passes: three are noisy when other work shares the machine


@dataclass(frozen=True)
class Expectation:
    """Whether pretraining is expected to beat supervised training from scratch here, and why, in words."""

    pretrain: bool
    labels_per_class: float
    passes: float

    @property
    def reason(self) -> str:
        facts = f"{self.labels_per_class:g} labelled images a class and ~{self.passes:.0f} passes over the images"
        if self.pretrain:
            why = (f"at most {FEW_LABELS} labels a class" if self.labels_per_class <= FEW_LABELS
                   else f"{LONG_PASSES}+ passes")
            return (f"{facts}: pretraining + fine-tuning is expected to match or beat supervised training from "
                    f"scratch ({why})")
        return (f"{facts}: supervised training from scratch is expected to match or beat pretraining + "
                f"fine-tuning at the same minutes (pretraining pays or ties with at most {FEW_LABELS} labels a class "
                f"or {LONG_PASSES}+ passes; measured in docs/RESULTS.md)")


def expect(labelled: torch.Tensor, passes: float) -> Expectation:
    """The expectation for training labels `labelled` (the images a supervised stage would see) and the
    `passes` pretraining would make over its images."""
    per_class = labels_per_class(labelled)
    return Expectation(per_class <= FEW_LABELS or passes >= LONG_PASSES, per_class, passes)


def for_run(pretraining: TrainConfig, data: DataSplits) -> Expectation:
    """The expectation for the pretraining run `pretraining` on `data`: its passes from its epochs, or, with
    a budget, from what its minutes leave once its evaluations are paid, at the throughput of its own
    config (batch and views) timed here (core.auto_recipe.passes: one arithmetic for the recipe and this)."""
    views = ViewMaker(pretraining.augment).views_per_image
    if pretraining.minutes:
        timed = auto_recipe.measure(pretraining, data.train.channels, len(data.train), len(data.train) + len(data.test),
                                    RATE_STEPS)
        passes = auto_recipe.passes(pretraining.minutes, len(data.train), timed) * views
    else:
        passes = pretraining.epochs * views
    train = data.train.labels
    return expect(train[labelled_index(train, pretraining.labels_per_class, pretraining.seed)], passes)


def applies(config: TrainConfig) -> bool:
    """Whether `config` is a pretraining run from scratch, the run the expectation is about."""
    return not config.init_from and not objective_class(config.objective).predicts_classes
