"""The recipe: the one function that turns (base config, objective, stage) into a config that trains, and the
one vocabulary of stages.

Every caller goes through `recipe`: the command lines, the app, the pipeline and core.compare, so the same
choice trains the same way everywhere. What it decides, in one place:
- the objective's needs, as the objective declares them (core/objectives): a contrastive run gets a pair of
  views in each crop group and no CutMix/Mixup, since a mixed view has no single positive;
- the supervised recipe (fine-tuning, or supervised training from scratch): the supervised objective's own
  (core/objectives/supervised.py), on the base's data and model;
- the schedule's length: `epochs` (fine-tuning defaults to a quarter of the pretraining epochs, the paper's
  800 -> 200), with the warmup cut to fit (core/trainer/schedule.py).

A stage is named by what it trains: PRETRAIN (a label-free objective from scratch), FINETUNE (the supervised
objective from a pretrained backbone) or SUPERVISED (the supervised objective from scratch). A pipeline's stage
folders, the app's words and the run table all use these names (`stage_of` names any config's).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from core import policy
from core.config import TrainConfig
from core.data import labels
from core.objectives import Supervised, objective_class, supervised
from core.trainer.budget import minutes_words
from core.trainer.schedule import with_epochs

PRETRAIN, FINETUNE, SUPERVISED = "pretrain", "finetune", "supervised"
STAGES = (PRETRAIN, FINETUNE, SUPERVISED)
STAGE_WORDS = {PRETRAIN: "pretraining", FINETUNE: "fine-tuning", SUPERVISED: "training from scratch"}
# Fine-tuning runs this fraction of the pretraining's epochs by default: the paper's 800 -> 200, the split the
# pipeline's minutes follow too (core/policy.py's PRETRAIN_SHARE).
FINETUNE_SHARE = round(policy.PRETRAIN_SHARE / (1 - policy.PRETRAIN_SHARE))


def recipe(base: TrainConfig, objective: str | None = None, *, stage: str = PRETRAIN, epochs: int | None = None,
           init_from: str = "", resolution: int | None = None, **overrides: Any) -> TrainConfig:
    """A valid config for training `objective` (default: the base's) at `stage` on `base`'s data and model.

    stage PRETRAIN trains `objective` from scratch ("supervised": the supervised recipe from scratch, which
    stage SUPERVISED also asks for); stage FINETUNE trains the supervised recipe from the backbone of
    `init_from`. `resolution` is the input side of a supervised run (default: the base's); `overrides` are
    plain TrainConfig fields (dataset, batch_size, lr, seed, minutes, ...) applied to the base first.
    ValueError says what is invalid.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    config = base.with_overrides(**overrides) if overrides else base
    if stage in (FINETUNE, SUPERVISED):
        if objective not in (None, Supervised.name):
            raise ValueError(f"{STAGE_WORDS[stage]} trains the {Supervised.name} objective, not {objective!r}")
        objective = Supervised.name
    if stage == FINETUNE and not init_from:
        raise ValueError("fine-tuning needs the pretrained checkpoint to start from (init_from)")
    if stage != FINETUNE and init_from:
        raise ValueError(f"{STAGE_WORDS[stage]} starts from scratch: init_from is for fine-tuning")
    needs = objective_class(objective or config.objective)
    if resolution is not None and needs is not Supervised:
        raise ValueError("a resolution is chosen for the supervised recipe only")
    epochs = epochs or (max(1, config.epochs // FINETUNE_SHARE) if stage == FINETUNE else config.epochs)
    if needs is Supervised:
        config = supervised.recipe(config, resolution or config.model.image_size, epochs)
    # A supervised stage is judged by its class head: the held-out hand-over of its pretraining is not carried.
    config = dataclasses.replace(needs.fit_views(config), objective=needs.name, init_from=str(init_from),
                                 stop_when_not_helping=config.stop_when_not_helping and not needs.predicts_classes)
    return with_epochs(config, epochs)


def stage_of(config: TrainConfig) -> str:
    """What a config trains, as a stage: FINETUNE, SUPERVISED or PRETRAIN."""
    if config.init_from:
        return FINETUNE
    return SUPERVISED if objective_class(config.objective).predicts_classes else PRETRAIN


def epochs_words(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"


def describe(config: TrainConfig, name: str, length: bool = True) -> str:
    """The line a run prints at its start, e.g. 'auto recipe: 64 px, patch 8, dim 128, depth 4, 1 view, flips,
    batch 64, a 5 min budget' (`name` says which recipe)."""
    aug, model = config.augment, config.model
    views = aug.n_global + aug.n_local
    parts = [f"{model.image_size} px", f"patch {model.patch_size}", f"dim {model.dim}", f"depth {model.depth}",
             f"{views} view{'s' if views > 1 else ''}", "flips" if aug.flip_p else "no flips",
             f"batch {config.batch_size}"]
    if aug.cutmix_alpha:
        parts.append("CutMix")
    if few := labels.describe(config):
        parts.append(few)
    if length:
        parts.append(f"a {minutes_words(config.minutes)} budget" if config.minutes else epochs_words(config.epochs))
    return f"{name} recipe: " + ", ".join(parts)
