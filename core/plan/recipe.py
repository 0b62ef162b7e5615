"""The recipe: the one function that turns (base config, objective, stage) into a config that trains.

Every caller goes through `recipe`: the command lines, the app and core.compare, so the same choice
trains the same way everywhere. What it decides, in one place:
- the objective's needs, as the objective declares them (core.objectives): a contrastive run gets a
  pair of views in each crop group and no CutMix/Mixup, since a mixed view has no single positive;
- the supervised recipe (stage 2, or supervised training from scratch): ../shared/PAPER.md's stage 2,
  scaled to the data (see `_supervised`);
- the schedule's length: `epochs` (fine-tuning defaults to a quarter of the pretraining epochs, the
  paper's 800 -> 200), with the warmup cut to a quarter of a run too short for it, so a 1-epoch run is
  a valid schedule rather than an error.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from core.config import TrainConfig
from core.objectives import Objective, Supervised, objective_class

PRETRAIN, FINETUNE = "pretrain", "finetune"
STAGES = (PRETRAIN, FINETUNE)
WARMUP_SHARE = 0.25  # the most of a run its warmup may take
FINETUNE_SHARE = 4  # fine-tuning runs 1/4 of the pretraining epochs by default (800 -> 200)
# ... so of a budget split between the two stages, pretraining takes this share (the paper's 800 of 1,000)
PRETRAIN_SHARE = FINETUNE_SHARE / (FINETUNE_SHARE + 1)


def recipe(base: TrainConfig, objective: str | None = None, *, stage: str = PRETRAIN, epochs: int | None = None,
           init_from: str = "", resolution: int | None = None, **overrides: Any) -> TrainConfig:
    """A valid config for training `objective` (default: the base's) at `stage` on `base`'s data and model.

    stage PRETRAIN trains `objective` from scratch ("supervised": the fine-tuning recipe from scratch);
    stage FINETUNE trains the supervised recipe from the backbone of `init_from`. `resolution` is the
    input side of a supervised run (default: the base's); `overrides` are plain TrainConfig fields
    (dataset, batch_size, lr, seed, ...) applied to the base first. ValueError says what is invalid.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    config = base.with_overrides(**overrides) if overrides else base
    if stage == FINETUNE:
        if objective not in (None, Supervised.name):
            raise ValueError(f"fine-tuning trains the {Supervised.name} objective, not {objective!r}")
        if not init_from:
            raise ValueError("fine-tuning needs the pretrained checkpoint to start from (init_from)")
        objective = Supervised.name
    needs = objective_class(objective or config.objective)
    if resolution is not None and needs is not Supervised:
        raise ValueError("a resolution is chosen for the supervised recipe only")
    epochs = epochs or (max(1, config.epochs // FINETUNE_SHARE) if stage == FINETUNE else config.epochs)
    if needs is Supervised:
        config = _supervised(config, resolution or config.model.image_size, epochs)
    # A supervised stage is judged by its class head: the held-out hand-over of its pretraining is not carried.
    config = dataclasses.replace(_fit_views(config, needs), objective=needs.name, init_from=str(init_from),
                                 stop_when_not_helping=config.stop_when_not_helping and not needs.predicts_classes)
    return with_epochs(config, epochs)


def with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    """`config` for a run of `epochs`, its warmup cut to a quarter of a run too short for it (also what a
    time budget's fixed length gets, core.trainer)."""
    return dataclasses.replace(config, epochs=epochs, warmup_epochs=min(config.warmup_epochs, epochs * WARMUP_SHARE))


def _fit_views(config: TrainConfig, needs: type[Objective]) -> TrainConfig:
    """The views the objective needs: at least `min_views` per crop group, unmixed if it cannot mix."""
    aug = config.augment
    n_local = aug.n_local and max(aug.n_local, needs.min_views)
    changes = {"n_global": max(aug.n_global, needs.min_views), "n_local": n_local}
    if not needs.mixes:
        changes.update(cutmix_alpha=0.0, mixup_alpha=0.0)
    return dataclasses.replace(config, augment=dataclasses.replace(aug, **changes))


def _supervised(base: TrainConfig, size: int, epochs: int) -> TrainConfig:
    """The supervised recipe on `base`'s data and model, at input side `size`, for `epochs`.

    From ../shared/PAPER.md stage 2: label-smoothing CE 0.1, Mixup and CutMix (alpha 0.5) alternating
    by epoch, jitter (0.4, 0.4, 0.4, 0.1) with p 0.4, grayscale p 0.2, one crop, the same lr as
    pretraining. Scaled to the dataset: the crop scale and flips stay those the pretraining recipe uses
    for this data (at 28 px the paper's (0.08, 1) crops destroy the garment); RandAugment is left out.
    Evaluated at least four times over the run.
    """
    # Variable-size sources are stored a little larger than the crop (the paper: 256 for 224 px).
    data_size = base.data_size and max(base.data_size, size * 8 // 7)
    augment = dataclasses.replace(base.augment, n_global=1, global_size=size, n_local=0, local_size=size,
                                  jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.4, gray_p=0.2, blur_p=0.0,
                                  cutmix_alpha=0.5, mixup_alpha=0.5)
    return dataclasses.replace(
        base, data_size=data_size, model=dataclasses.replace(base.model, image_size=size), augment=augment,
        label_smoothing=0.1, warmup_epochs=min(base.warmup_epochs, epochs * WARMUP_SHARE),
        eval_every=base.eval_every and max(1, min(base.eval_every, epochs // 4)))
