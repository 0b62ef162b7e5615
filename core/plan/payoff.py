"""When pretraining is expected to pay, for a run at hand: the rule (core/policy.py) read on this run's facts.

Self-supervised pretraining spends minutes on differences the labels may not care about; it repays them when
the labels are few (they cannot teach the features themselves) or when the budget is long enough for the
objective to learn more than the labels would. Two measured facts, never a dataset's name:
- labels a class: the median number of labelled training images over the classes;
- passes: the views of each training image that pretraining's share of the budget allows, at the throughput
  timed on this machine for this very config (core/plan/timing.py: the figure the recipe was fitted with).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core import policy
from core.config import TrainConfig
from core.data.augment import ViewMaker
from core.data.labels import labelled_index, labels_per_class
from core.data.splits import DataSplits
from core.objectives import objective_class
from core.plan.timing import Timing, passes


@dataclass(frozen=True)
class Expectation:
    """Whether pretraining is expected to beat supervised training from scratch here, and why, in words."""

    pretrain: bool
    labels_per_class: float
    passes: float

    @property
    def reason(self) -> str:
        facts = f"{self.labels_per_class:.0f} labelled images a class and ~{self.passes:.0f} passes over the images"
        if self.pretrain:
            why = (f"at most {policy.FEW_LABELS} labels a class" if policy.few_labels(self.labels_per_class)
                   else f"{policy.LONG_PASSES}+ passes")
            return (f"{facts}: pretraining + fine-tuning is expected to match or beat supervised training from "
                    f"scratch ({why})")
        return (f"{facts}: supervised training from scratch is expected to match or beat pretraining + "
                f"fine-tuning at the same minutes (pretraining pays or ties with at most {policy.FEW_LABELS} labels "
                f"a class or {policy.LONG_PASSES}+ passes; measured in docs/RESULTS.md)")


def expect(labelled: torch.Tensor, passes: float) -> Expectation:
    """The expectation for training labels `labelled` (the images a supervised stage would see) and the
    `passes` pretraining would make over its images."""
    per_class = labels_per_class(labelled)
    return Expectation(policy.pretraining_pays(per_class, passes), per_class, passes)


def for_run(pretraining: TrainConfig, data: DataSplits, timing: Timing | None = None) -> Expectation:
    """The expectation for the pretraining run `pretraining` on `data`: its passes from its epochs, or, with a
    budget, from what its minutes leave once its evaluations are paid, at the throughput `timing` gives its
    config (timed here, once, when no timing is passed on)."""
    views = ViewMaker(pretraining.augment).views_per_image
    if pretraining.minutes:
        timing = timing or Timing(len(data.train), len(data.train) + len(data.test), data.train.channels)
        made = passes(pretraining.minutes, len(data.train), timing.of(pretraining)) * views
    else:
        made = pretraining.epochs * views
    train = data.train.labels
    return expect(train[labelled_index(train, pretraining.labels_per_class, pretraining.seed)], made)


def applies(config: TrainConfig) -> bool:
    """Whether `config` is a pretraining run from scratch, the run the expectation is about."""
    return not config.init_from and not objective_class(config.objective).predicts_classes
