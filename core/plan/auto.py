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
- width and depth: cpu-quick's 0.8 M-parameter ViT on a CPU, DeiT-Tiny on a GPU.
- views: one crop and no CutMix, unless the budget allows MULTI_CROP_PASSES passes: the paper's 2 + 4
  crops and CutMix pay off over hundreds of epochs and cost more than they give over tens (the measured
  Fashion table in the README).
- crops and flips: light objects on a dark ground (measured framing) are aligned like Fashion-MNIST and
  MNIST: mild crops, no flips. Photos: wider crops and flips.
- batch and learning rate: the largest batch (up to 128 on a CPU, 256 on a GPU, at least 32) that still
  gives the run MIN_STEPS optimiser steps, the learning rate scaled with its square root. A ViT from
  scratch needs thousands of steps before it learns shapes, and a few hundred images at batch 128 give a
  budget of minutes only a few hundred (measured on a composited folder: the supervised loss did not leave
  ln(classes) in 800 steps at 128, and did at 32).
- evaluations: about EVALUATIONS over the run, so the watchdog can read the curve (a budget that fixes
  a shorter run than this estimate keeps them: core/budget.py).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from core.config import AugmentConfig, ModelConfig, TrainConfig
from core.data import labels
from core.data.images import fit_square
from core.data.sources import survey
from core.data.splits import TEST_FRACTION, DataSplits, ImageSet
from core.model.backbone import embed
from core.trainer.loop import Trainer

NAME = "auto"  # what the command line's --preset and the app's preset menu call it
MIN_PASSES = 30
MULTI_CROP_PASSES = 300
EVALUATIONS = 8
SMALL_SIDE = 32  # images no larger than this keep their side
CPU_MODEL = dict(dim=128, depth=4, heads=4, dim_head=32, mlp_dim=256)
GPU_MODEL = dict(dim=192, depth=12, heads=3, dim_head=64, mlp_dim=768)
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
    model = ModelConfig(image_size=side, patch_size=patch, **(GPU_MODEL if gpu else CPU_MODEL))
    photos = not facts.light_on_dark
    local = side // 2 // patch * patch or side  # local crops: half the side, on the patch grid
    augment = AugmentConfig(
        n_global=2 if multi_crop else 1, global_size=side, global_scale=(0.4, 1.0) if photos else (0.7, 1.0),
        n_local=4 if multi_crop else 0, local_size=local, local_scale=(0.05, 0.4), flip_p=0.5 if photos else 0.0,
        jitter=(0.8, 0.8, 0.8, 0.2), jitter_p=0.8, gray_p=0.2 if facts.channels == 3 else 0.0,
        blur_p=0.5 if gpu else 0.0, cutmix_alpha=0.5 if multi_crop else 0.0)
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


@dataclass(frozen=True)
class Throughput:
    """What a config costs on this machine, timed on random images (a step costs the same whatever the
    pixels show)."""

    images_per_s: float  # training images a second, at the timed config's batch and views
    eval_s: float  # one evaluation: the training and test images embedded (forward passes only)
    batch: int  # the batch it was timed at


def passes(minutes: float, n_train: int, timed: Throughput) -> float:
    """The passes over `n_train` training images that `minutes` of a run allow once its evaluations are paid."""
    steps_s = max(0.0, minutes * 60 - (EVALUATIONS + 1) * timed.eval_s)
    return steps_s * timed.images_per_s / max(n_train, 1)


def measure(config: TrainConfig, channels: int, n_train: int, n_eval: int, steps: int = 3) -> Throughput:
    """The throughput of `config` here for a run on `n_train` training images: `steps` real steps after one
    warm-up, and one forward pass of a batch scaled to the `n_eval` images an evaluation embeds. The
    throwaway trainer holds `n_train` images, so its instance head is as wide as the run's (a head one
    batch wide read ~1.2x the images a second of the run's 2,040-way head at 28 px)."""
    batch = config.batch_size
    side = config.data_size or config.model.image_size  # 0: stored at the model's side
    pixels = torch.randint(0, 256, (batch, channels, side, side), dtype=torch.uint8)
    repeat = torch.arange(max(n_train, batch)) % batch  # the run's image count, one batch's pixels repeated
    random_set = ImageSet(pixels[repeat], repeat % 2, ("a", "b"))
    data = DataSplits("timing", random_set, random_set.subset(torch.arange(2)))
    trainer = Trainer(config.with_overrides(minutes=0.0, epochs=1, warmup_epochs=0), data)
    images_per_s = trainer.time_steps(steps)
    inputs = fit_square(pixels, config.model.image_size)  # (batch, C, side, side) as evaluated
    started = time.perf_counter()
    embed(trainer.backbone, inputs)
    return Throughput(images_per_s, (time.perf_counter() - started) * n_eval / batch, batch)


def auto_recipe(facts: Facts, timed: Throughput, sides: tuple[int, int, int] | None = None) -> TrainConfig:
    """The auto base config for `facts`, given the throughput `timed` of its side (the batch then follows
    the passes). `sides`: (model side, patch, stored side) as plan chose them, when `timed` was measured at
    that side rather than at the one choose_side reads it for."""
    side, patch, stored = sides or choose_side(facts, timed)
    multi_crop = bool(facts.minutes) and passes(facts.minutes, facts.n_train, timed) >= MULTI_CROP_PASSES
    epochs = _epochs(facts, timed, multi_crop)
    batch, lr = batch_and_lr(facts, epochs * facts.n_train)
    return with_length(_base(facts, side, patch, stored, multi_crop, batch, lr), facts, timed)


def _epochs(facts: Facts, timed: Throughput, multi_crop: bool) -> int:
    """The epochs a budget allows at the one-view throughput `timed` (DEFAULT_EPOCHS without one)."""
    if not facts.minutes:
        return DEFAULT_EPOCHS
    views = 6 if multi_crop else 1  # the paper's 2 + 4 crops
    return max(1, math.floor(passes(facts.minutes, facts.n_train, timed) / views))


def with_length(config: TrainConfig, facts: Facts, timed: Throughput) -> TrainConfig:
    """`config` with the epochs `timed` allows and about EVALUATIONS evaluations over them. With a budget,
    the epochs are the estimate the run's own timing then corrects (core/budget.py): the evaluations are
    planned over it, and a shorter fixed length keeps them."""
    epochs = _epochs(facts, timed, config.augment.n_local > 0)
    return dataclasses.replace(config, epochs=epochs, eval_every=max(1, epochs // EVALUATIONS))


@dataclass(frozen=True)
class Plan:
    """The auto recipe's base config and the splits it trains on."""

    config: TrainConfig
    data: DataSplits


def plan(spec: str, device: str, minutes: float, load: Callable[[int], DataSplits]) -> Plan:
    """The auto config for dataset `spec` and the splits it trains on, loaded once at the chosen side by
    `load(stored side)`. The side is chosen from the files' headers and a throughput timed on random
    images, at the batch the budget's passes choose; the framing is then measured from the loaded images.
    A run's length is counted at the throughput of its own side and batch: either one changed since it
    was timed, it is timed again."""
    native, n_train = survey(spec)
    n_eval = round(n_train / (1 - TEST_FRACTION))  # an evaluation embeds the training and test images
    guess = Facts(native, n_train, 3, False, device, minutes)
    presumed = choose_side(guess)  # the side for detail, before the budget's passes are counted
    timed = None
    if native > SMALL_SIDE and device != "cuda" and minutes:
        timed = _at_its_batch(guess, _base(guess, *presumed, False), 3, n_eval)
    side, patch, stored = choose_side(guess, timed)
    data = load(stored if native > SMALL_SIDE else 0)
    facts = Facts(native, len(data.train), data.train.channels, data.train.framing.light_on_dark, device, minutes)
    n_eval = len(data.train) + len(data.test)
    base = _base(facts, side, patch, stored, False)
    if timed is None or side != presumed[0]:
        timed = measure(base, data.train.channels, facts.n_train, n_eval)
    config = auto_recipe(facts, timed, (side, patch, stored))
    if minutes and config.batch_size != timed.batch:
        timed = measure(base.with_overrides(batch_size=config.batch_size), data.train.channels, facts.n_train, n_eval)
        config = with_length(config, facts, timed)
    return Plan(dataclasses.replace(config, dataset=spec, data_size=stored if native > SMALL_SIDE else 0), data)


def _at_its_batch(facts: Facts, base: TrainConfig, channels: int, n_eval: int) -> Throughput:
    """`base`'s throughput (at the largest batch), timed again at the batch the budget's passes then choose
    when that one is smaller: a smaller batch trains fewer images a second (~1/1.6 at 32 of 128's at 64 px),
    and the side is decided on the passes the run will make."""
    timed = measure(base, channels, facts.n_train, n_eval)
    batch, _ = batch_and_lr(facts, _epochs(facts, timed, False) * facts.n_train)
    return (timed if batch == timed.batch
            else measure(base.with_overrides(batch_size=batch), channels, facts.n_train, n_eval))


def describe(config: TrainConfig, name: str = NAME, length: bool = True) -> str:
    """The line a run prints at its start, e.g. 'auto recipe: 64 px, patch 8, dim 128, depth 4, 1 view, flips,
    batch 64, a 5 min budget' (any recipe: `name` says which)."""
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
        parts.append(f"a {config.minutes:g} min budget" if config.minutes else epochs(config.epochs))
    return f"{name} recipe: " + ", ".join(parts)


def epochs(n: int) -> str:
    return f"{n} epoch{'s' if n != 1 else ''}"
