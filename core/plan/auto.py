"""The `auto` recipe: a base config fitted to the data, the device and the budget, for data with no tuned preset.

Every rule is here, and each reads a measured fact, never a dataset's name:
- resolution and patch grid: images no larger than 32 px keep their side on a 4×4 grid (what cpu-quick
  runs for 28 px data). Larger ones, on a CPU, go to 64 px on an 8×8 grid (at 28 px a 300 px photo loses
  its detail) unless the budget then allows fewer than MIN_PASSES passes over the training images, at
  the throughput measured here at the batch those passes choose; then 32 px on a 4×4 grid, about a third
  of the cost per image. On a
  CUDA device: the paper's 112 px DeiT-Tiny, stored at 128 px.
- passes: what the minutes leave for steps once the run's evaluations (EVALUATIONS and the random-init
  baseline, timed as forward passes here) are paid, at the steps a second timed at the run's own batch
  (at 64 px, batch 128 trained ~1.6x the images a second that batch 32 does, and evaluations took about
  a sixth of a short budget: counting neither read ~1.7x the passes a run then made).
- width and depth: cpu-quick's 0.8 M-parameter ViT on a CPU, DeiT-Tiny on a GPU (core.config.MODEL_SIZES).
- views: one crop and no CutMix, unless the budget allows LONG_PASSES passes (core/policy.py): the paper's
  2 + 4 crops and CutMix (core/objectives/instance.py) pay off over hundreds of epochs and cost more than
  they give over tens (docs/RESULTS.md).
- crops and flips: light objects on a dark ground (measured framing) are aligned like Fashion-MNIST and
  MNIST: mild crops, no flips. Photos: wider crops and flips.
- batch and learning rate: the largest batch (up to 128 on a CPU, 256 on a GPU, at least 32) that still
  gives the run MIN_STEPS optimiser steps, the learning rate scaled with its square root. A ViT from
  scratch needs thousands of steps before it learns shapes, and a few hundred images at batch 128 give a
  budget of minutes only a few hundred (measured on a composited folder: the supervised loss did not leave
  ln(classes) in 800 steps at 128, and did at 32).
- evaluations: about EVALUATIONS over the run, so the watchdog can read the curve (a budget that fixes
  a shorter run than this estimate keeps them: core/trainer/budget.py).

The machine is timed once for the whole command (core/plan/timing.py): the plan's figure is the one the
payoff rule and the pipeline read after it.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from core import policy
from core.config import MODEL_SIZES, AugmentConfig, TrainConfig
from core.data.sources import survey
from core.data.splits import TEST_FRACTION, DataSplits
from core.objectives import instance
from core.plan.timing import EVALUATIONS, Throughput, Timing, passes
from core.trainer.schedule import with_epochs

MIN_PASSES = 30
SMALL_SIDE = 32  # images no larger than this keep their side
DEFAULT_EPOCHS = 60  # without a budget
MIN_STEPS = 2000
BATCHES = {"cpu": (128, 64, 32), "cuda": (256, 128, 64, 32)}  # largest first
BASE_LR = {"cpu": 1.5e-3, "cuda": 5e-4}  # at the largest batch


@dataclass(frozen=True)
class Facts:
    """What the auto recipe reads: measured from the data and the machine."""

    native_side: int  # the images' median shorter side before any resizing
    n_train: int
    channels: int
    light_on_dark: bool
    device: str  # "cpu" or "cuda" (mps counts as a CPU here: no tuned path)
    minutes: float  # the budget (0: none)


def _grid(side: int, grid: int) -> tuple[int, int]:
    """(side, patch) with `side` rounded down to a multiple of `grid`."""
    patch = max(1, side // grid)
    return patch * grid, patch


def batch_and_lr(facts: Facts, images_per_run: float) -> tuple[int, float]:
    """The largest batch that gives `images_per_run` (the images all epochs see) MIN_STEPS steps, else the
    smallest, and its learning rate (square-root scaled from the largest batch's)."""
    device = "cuda" if facts.device == "cuda" else "cpu"
    batches = BATCHES[device]
    batch = next((b for b in batches if images_per_run / b >= MIN_STEPS), batches[-1])
    return batch, BASE_LR[device] * math.sqrt(batch / batches[0])


def _base(facts: Facts, side: int, patch: int, stored: int, multi_crop: bool, batch: int | None = None,
          lr: float | None = None) -> TrainConfig:
    gpu = facts.device == "cuda"
    device = "cuda" if gpu else "cpu"
    model = dataclasses.replace(MODEL_SIZES["deit-tiny" if gpu else "cpu"], image_size=side, patch_size=patch)
    photos = not facts.light_on_dark
    local = side // 2 // patch * patch or side  # local crops: half the side, on the patch grid
    crops = instance.MULTI_CROP if multi_crop else {"n_global": 1, "n_local": 0}
    augment = AugmentConfig(**{
        "global_size": side, "local_size": local, "local_scale": instance.MULTI_CROP["local_scale"], **crops,
        # photos: wider crops than the paper's multi-crop would otherwise keep; aligned objects: mild ones
        "global_scale": (0.4, 1.0) if photos else (0.7, 1.0), "flip_p": 0.5 if photos else 0.0,
        "jitter": instance.JITTER, "jitter_p": 0.8, "gray_p": 0.2 if facts.channels == 3 else 0.0,
        "blur_p": 0.5 if gpu else 0.0, "cutmix_alpha": instance.CUTMIX_ALPHA if multi_crop else 0.0})
    return TrainConfig(data_size=stored, model=model, augment=augment, epochs=DEFAULT_EPOCHS,
                       batch_size=batch or BATCHES[device][0],
                       lr=lr or BASE_LR[device], minutes=facts.minutes,
                       snapshot_every=0, checkpoint_every=10, device=facts.device)


def choose_side(facts: Facts, timed: Throughput | None = None) -> tuple[int, int, int]:
    """(model side, patch, stored side). The throughput `timed` at 64 px on an 8×8 grid, at the batch the
    budget's passes choose, decides on a CPU with a budget whether 64 px still allows MIN_PASSES passes."""
    if facts.native_side <= SMALL_SIDE:
        side, patch = _grid(facts.native_side, 4)
        return side, patch, facts.native_side
    if facts.device == "cuda":
        side, patch = 112, 16
    elif facts.minutes and timed is not None and passes(facts.minutes, facts.n_train, timed) < MIN_PASSES:
        side, patch = 32, 8
    else:
        side, patch = 64, 8
    return side, patch, side * 8 // 7  # stored a little larger than the crop, as the supervised recipe does


def auto_recipe(facts: Facts, timed: Throughput | None, sides: tuple[int, int, int] | None = None) -> TrainConfig:
    """The auto base config for `facts`, given the throughput `timed` of its side (the batch then follows
    the passes). `sides`: (model side, patch, stored side) as plan chose them, when `timed` was measured at
    that side rather than at the one choose_side reads it for."""
    side, patch, stored = sides or choose_side(facts, timed)
    multi_crop = bool(facts.minutes) and passes(facts.minutes, facts.n_train, timed) >= policy.LONG_PASSES
    epochs = _epochs(facts, timed, multi_crop)
    batch, lr = batch_and_lr(facts, epochs * facts.n_train)
    return with_length(_base(facts, side, patch, stored, multi_crop, batch, lr), facts, timed)


def _epochs(facts: Facts, timed: Throughput | None, multi_crop: bool) -> int:
    """The epochs a budget allows at the one-view throughput `timed` (DEFAULT_EPOCHS without one)."""
    if not facts.minutes:
        return DEFAULT_EPOCHS
    views = 6 if multi_crop else 1  # the paper's 2 + 4 crops
    return max(1, math.floor(passes(facts.minutes, facts.n_train, timed) / views))


def with_length(config: TrainConfig, facts: Facts, timed: Throughput | None) -> TrainConfig:
    """`config` with the epochs `timed` allows and about EVALUATIONS evaluations over them. With a budget,
    the epochs are the estimate the run's own timing then corrects (core/trainer/budget.py): the evaluations are
    planned over it, and a shorter fixed length keeps them. A budget too short for the warmup (a busy machine's
    one epoch) cuts it, as every recipe's length does."""
    epochs = _epochs(facts, timed, config.augment.n_local > 0)
    return dataclasses.replace(with_epochs(config, epochs), eval_every=max(1, epochs // EVALUATIONS))


@dataclass(frozen=True)
class Plan:
    """The auto recipe's base config, the splits it trains on, and the machine's timing (for the payoff rule)."""

    config: TrainConfig
    data: DataSplits
    timing: Timing


def plan(spec: str, device: str, minutes: float, load: Callable[[int], DataSplits]) -> Plan:
    """The auto config for dataset `spec` and the splits it trains on, loaded once at the chosen side by
    `load(stored side)`. The side is chosen from the files' headers and, with a budget, a throughput timed on
    random images at the batch the budget's passes choose; the framing is then measured from the loaded
    images. A run's length is counted at the throughput of its own side and batch (one Timing: each is timed
    once; without a budget nothing is)."""
    native, n_train, channels = survey(spec)
    timing = Timing(n_train, round(n_train / (1 - TEST_FRACTION)), channels)  # evaluations embed train and test
    guess = Facts(native, n_train, channels, False, device, minutes)
    presumed = choose_side(guess)  # the side for detail, before the budget's passes are counted
    timed = None
    if native > SMALL_SIDE and device != "cuda" and minutes:
        timed = _at_its_batch(guess, _base(guess, *presumed, False), timing)
    side, patch, stored = choose_side(guess, timed)
    data = load(stored if native > SMALL_SIDE else 0)
    facts = Facts(native, len(data.train), data.train.channels, data.train.framing.light_on_dark, device, minutes)
    base = _base(facts, side, patch, stored, False)
    if minutes and (timed is None or side != presumed[0]):
        timed = timing.of(base)
    config = auto_recipe(facts, timed, (side, patch, stored))
    if minutes and config.batch_size != timed.batch:
        config = with_length(config, facts, timing.of(base.with_overrides(batch_size=config.batch_size)))
    return Plan(dataclasses.replace(config, dataset=spec, data_size=stored if native > SMALL_SIDE else 0), data,
                timing)


def _at_its_batch(facts: Facts, base: TrainConfig, timing: Timing) -> Throughput:
    """`base`'s throughput (at the largest batch), and at the batch the budget's passes then choose when that one
    is smaller: a smaller batch trains fewer images a second (~1/1.6 at 32 of 128's at 64 px), and the side
    is decided on the passes the run will make."""
    timed = timing.of(base)
    batch, _ = batch_and_lr(facts, _epochs(facts, timed, False) * facts.n_train)
    return timed if batch == timed.batch else timing.of(base.with_overrides(batch_size=batch))
