"""What a person asks a pipeline for (`Request`), and how it is planned into its first stage (`plan_first`):
the recipe fitted to the data and the machine, what pretraining is expected to pay, and the stage that
trains first. Plain values in, plain values out: core/plan/pipeline.py records and runs them."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

from core import policy
from core.config import TrainConfig, from_json, to_json
from core.data.splits import DataSplits
from core.plan import auto, payoff
from core.plan.presets import AUTO
from core.plan.recipe import STAGE_WORDS, SUPERVISED, describe, epochs_words, recipe, stage_of
from core.plan.timing import Timing
from core.trainer.budget import minutes_words
from core.trainer.distributed import resolve_device

Load = Callable[[TrainConfig], DataSplits]
CHOICES = ("auto", "always", "never")  # whether the best-model pipeline pretrains: as expected, or always, or never
ONLY = "only"  # one stage of the request's objective, no second (the app's Start; a later Fine-tune may add one)


@dataclass(frozen=True)
class Request:
    """A pipeline's request.

    `base`: with `recipe` AUTO, only its dataset, objective, seed, labels_per_class, device and snapshot_every
    are read (the auto recipe fits the rest); with a preset's name, the preset with the caller's overrides
    applied; with "" and `pretrain` ONLY, the stage's own config, already through the recipe.
    """

    base: TrainConfig
    recipe: str = AUTO
    pretrain: str = "auto"  # CHOICES, or ONLY
    minutes: float = 0.0  # the whole budget, every stage (0: the stages' epochs decide)
    epochs: int | None = None  # ONLY without minutes: the stage's epochs (None: the recipe's)

    def __post_init__(self) -> None:
        if self.pretrain not in (*CHOICES, ONLY):
            raise ValueError(f"pretrain must be one of {(*CHOICES, ONLY)}, got {self.pretrain!r}")
        if self.pretrain != ONLY and not self.minutes:
            raise ValueError("the best-model pipeline shares a budget between its stages: give it minutes")
        if self.minutes < 0:
            raise ValueError("minutes must be >= 0")

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "base": json.loads(to_json(self.base))}

    @classmethod
    def from_json(cls, fields: dict) -> Request:
        return cls(**{**fields, "base": from_json(json.dumps(fields["base"]))})


@dataclass(frozen=True)
class First:
    """A request planned: the base recipe, the first stage and what follows it, and the words that say why."""

    base: TrainConfig
    stage: TrainConfig
    until: float | None  # the pipeline's minutes by which the stage must end (None: its epochs decide)
    hand_over: bool  # whether a stage follows as the hand-over decides (fine-tuning its best, or from scratch)
    expected: payoff.Expectation | None
    words: tuple[str, str, str]  # the recipe, the expectation, the stages (core.events.Planned)


def plan_first(request: Request, load: Load) -> First:
    """Fit the recipe (loading the data through `load`, timing the machine once), read the payoff rule, and say
    what trains first."""
    base, data, timing = base_for(request, load)
    name, objective = request.recipe or "your", request.base.objective
    if request.pretrain == ONLY:
        first = recipe(base, objective, epochs=request.epochs) if request.recipe else base
        first = first.with_overrides(minutes=request.minutes) if request.minutes else first
        expected = payoff.for_run(first, data, timing) if timing is not None and payoff.applies(first) else None
        return First(base, first, request.minutes or None, False, expected,
                     (describe(first, name), _said(expected), _only_words(first, request.minutes)))
    pretraining = recipe(base, objective, minutes=request.minutes * policy.PRETRAIN_SHARE, stop_when_not_helping=True)
    expected = payoff.for_run(pretraining, data, timing)
    pretrain = expected.pretrain if request.pretrain == "auto" else request.pretrain == "always"
    first = pretraining if pretrain else recipe(base, stage=SUPERVISED, minutes=request.minutes)
    stages = "pretraining, then fine-tuning" if pretrain else "supervised training from scratch"
    stages += f", {minutes_words(request.minutes)} in all"
    return First(base, first, request.minutes * (policy.PRETRAIN_SHARE if pretrain else 1.0), pretrain, expected,
                 (describe(base, name, length=False), _said(expected), stages))


def base_for(request: Request, load: Load) -> tuple[TrainConfig, DataSplits, Timing | None]:
    """The base config, the splits it trains on, and the machine's timing when the recipe was fitted by it."""
    asked = request.base
    if request.recipe != AUTO:
        base = asked.with_overrides(minutes=request.minutes) if request.minutes else asked
        return base, load(base), None
    fitted = auto.plan(asked.dataset, resolve_device(asked.device).type, request.minutes,
                       lambda size: load(asked.with_overrides(data_size=size)))
    base = fitted.config.with_overrides(seed=asked.seed, labels_per_class=asked.labels_per_class,
                                        snapshot_every=asked.snapshot_every)
    return base, fitted.data, fitted.timing


def _said(expected: payoff.Expectation | None) -> str:
    return expected.reason if expected is not None else ""


def _only_words(config: TrainConfig, minutes: float) -> str:
    length = minutes_words(minutes) if minutes else epochs_words(config.epochs)
    return f"{STAGE_WORDS[stage_of(config)]}, {length}"
