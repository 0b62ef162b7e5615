"""The best model a budget allows, as stages: the one home of the pipeline's plan, for the command line
(core/pipeline.py) and the app (demo/session.py).

- core/payoff.py says whether pretraining is expected to pay for this many labels a class and passes;
- if it is: pretraining for PRETRAIN_SHARE of the minutes, ending early when its kNN on held-out
  training images stops helping, or, with more than a few labels a class, stops improving
  (core/handover.py); then, for what the clock has left, fine-tuning from
  the backbone that was best on those images (`best.pt`), or, when that was the random-init encoder,
  supervised training from scratch;
- if it is not: supervised training from scratch for all of the minutes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from core.config import TrainConfig
from core.plan.recipe import FINETUNE, PRETRAIN_SHARE, recipe
from core.trainer.handover import BEST, best_epoch, kept_words

PRETRAIN, FINETUNE_STAGE, SUPERVISED = "pretrain", "finetune", "supervised"  # the stages, by what they train
LEAST_MINUTES = 0.05  # a stage that the clock left almost nothing still trains a few steps


def minutes_left(started: float, minutes: float) -> float:
    """What a `minutes` budget whose clock (time.perf_counter) started at `started` has left."""
    return max(LEAST_MINUTES, minutes - (time.perf_counter() - started) / 60)


def pretraining(base: TrainConfig, objective: str, minutes: float) -> TrainConfig:
    """The pretraining stage of a `minutes` budget on `base` (the recipe fitted to the data and machine)."""
    return recipe(base, objective, minutes=minutes * PRETRAIN_SHARE, stop_when_not_helping=True)


def plan_words(pretrain: bool, minutes: float) -> str:
    """The pipeline's plan in words, as the command line and the app print it."""
    stages = "pretraining, then fine-tuning" if pretrain else "supervised training from scratch"
    return f"{stages}, {minutes:g} min in all"


def from_scratch(base: TrainConfig, minutes: float) -> TrainConfig:
    """Supervised training from scratch on `base` for `minutes`."""
    return recipe(base, "supervised", minutes=minutes)


@dataclass(frozen=True)
class Next:
    """What follows a pretraining stage, and why, in words."""

    stage: str  # FINETUNE_STAGE or SUPERVISED
    config: TrainConfig
    best_epoch: int  # the pretraining epoch that was best on held-out training images (0: the random init)
    words: str


def after_pretraining(pretrained: TrainConfig, base: TrainConfig, folder: str | Path, minutes: float) -> Next:
    """The stage after the pretraining `pretrained` that wrote to `folder`, for the `minutes` left."""
    if epoch := best_epoch(folder):
        config = recipe(pretrained, stage=FINETUNE, init_from=str(Path(folder) / BEST), minutes=minutes)
        return Next(FINETUNE_STAGE, config, epoch, kept_words(epoch))
    return Next(SUPERVISED, from_scratch(base, minutes), 0, kept_words(0))
