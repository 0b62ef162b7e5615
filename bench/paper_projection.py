"""Row 7: the paper's whole recipe, timed for some steps of each stage and projected to its full length.

Stage 1 is the `paper` preset (DeiT-Tiny, 2 + 4 crops at 112 px, CutMix, 800 epochs); stage 2 is
supervised recipe of it at 224 px (core.recipe, 200 epochs). Flowers-102 is not on this machine, and a step
costs the same whatever the pixels show, so each stage runs on random images of Flowers' shapes:
2,040 training images in 102 classes stored at the stage's size (144 px, then 256 px) and 6,149
test images. A stage's projection is

    epochs × steps per epoch × seconds per step  +  evaluations × seconds per evaluation,

with the steps timed through `Trainer._train_step` in windows (median), and an evaluation (embed
the training set and the test split; the kNN vote is one small matrix product) projected from the
embedding rate measured on a cut of the test split. Where the timed batch is smaller than the
recipe's (on a CPU, where 256 × 6 views take a minute a step), the step time is scaled linearly
to the recipe's batch, which is how compute grows on a device the batch already saturates.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from bench.timing import synchronize, time_windows
from core.config import TrainConfig
from core.data.augment import ViewMaker
from core.data.splits import DataSplits, ImageSet
from core.model.backbone import embed
from core.objectives import Supervised
from core.plan.presets import preset
from core.plan.recipe import FINETUNE_SHARE, recipe
from core.trainer.loop import Trainer

FLOWERS_TRAIN, FLOWERS_TEST, FLOWERS_CLASSES = 2040, 6149, 102


@dataclass(frozen=True)
class Plan:
    """How much to time per stage. batch None: the recipe's own (256)."""

    batch: int | None
    warmup: int  # untimed steps first (torch.compile compiles in them)
    windows: int
    steps_per_window: int
    test_images: int  # test images the embedding rate is timed on


PLANS = {
    "cuda": Plan(None, 10, 5, 60, FLOWERS_TEST),  # 300 timed steps a stage
    "cpu": Plan(32, 1, 2, 2, 128),
    "quick": Plan(4, 1, 1, 1, 8),
}


@dataclass(frozen=True)
class StageTime:
    name: str
    config: TrainConfig  # the recipe's config of this stage (its batch, epochs, evaluations)
    timed_batch: int
    step_s: list[float]  # seconds per step, one per timed window, at timed_batch
    embed_images_per_s: float
    compiled: bool

    @property
    def steps(self) -> int:
        return self.config.epochs * -(-FLOWERS_TRAIN // self.config.batch_size)

    @property
    def evaluations(self) -> int:
        every = self.config.eval_every
        return self.config.epochs // every + (self.config.epochs % every != 0) if every else 1

    @property
    def recipe_step_s(self) -> float:
        return statistics.median(self.step_s) * self.config.batch_size / self.timed_batch

    @property
    def evaluation_s(self) -> float:
        return (FLOWERS_TRAIN + FLOWERS_TEST) / self.embed_images_per_s

    @property
    def projected_s(self) -> float:
        return self.steps * self.recipe_step_s + self.evaluations * self.evaluation_s

    @property
    def views_per_image(self) -> int:
        return ViewMaker(self.config.augment).views_per_image


def random_flowers(size: int, n_test: int, seed: int = 0) -> DataSplits:
    """Random uint8 images of Flowers-102's shapes: what a step costs does not depend on the pixels."""
    generator = torch.Generator().manual_seed(seed)
    names = tuple(f"class {i}" for i in range(FLOWERS_CLASSES))

    def split(n: int) -> ImageSet:
        images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
        return ImageSet(images, torch.arange(n) % FLOWERS_CLASSES, names)

    return DataSplits("flowers102-shaped random images", split(FLOWERS_TRAIN), split(n_test))


def stage_configs(device: str) -> dict[str, TrainConfig]:
    first = preset("paper").with_overrides(device=device)
    return {"stage 1 (pretraining, 112 px)": first,
            "stage 2 (fine-tuning, 224 px)": recipe(first, Supervised.name, resolution=224,
                                                    epochs=first.epochs // FINETUNE_SHARE)}


def time_stage(name: str, config: TrainConfig, plan: Plan, compile_step: bool) -> StageTime:
    batch = plan.batch or config.batch_size
    data = random_flowers(config.data_size, plan.test_images)
    trainer = Trainer(config.with_overrides(batch_size=batch, compile=compile_step), data)
    device, generator = trainer.device, torch.Generator().manual_seed(0)

    def step() -> None:
        index = torch.randperm(FLOWERS_TRAIN, generator=generator)[:batch].to(device)
        trainer._train_step(index, 0)

    seconds = time_windows(step, device, plan.warmup, plan.windows, plan.steps_per_window)
    embed(trainer.backbone, trainer.monitor.eval_test[:2])  # warm-up: the first eval-mode forward pays set-up
    synchronize(device)
    started = time.perf_counter()
    embed(trainer.backbone, trainer.monitor.eval_test)
    synchronize(device)
    rate = len(trainer.monitor.eval_test) / (time.perf_counter() - started)
    return StageTime(name, config, batch, [s / plan.steps_per_window for s in seconds], rate, compile_step)


def measure(device: torch.device, quick: bool) -> tuple[list[StageTime], list[str]]:
    """Each stage timed eager and, on CUDA, compiled as well; returns the times and notes (e.g. a
    compile that failed, with its error, in which case the eager time stands)."""
    plan = PLANS["quick" if quick else device.type if device.type in PLANS else "cpu"]
    stages, notes = [], []
    for name, config in stage_configs(device.type).items():
        stages.append(time_stage(name, config, plan, compile_step=False))
        if device.type != "cuda":
            continue
        try:
            stages.append(time_stage(name, config, plan, compile_step=True))
        except Exception as exc:  # noted in the results: the eager time then projects this stage
            notes.append(f"- {name}: torch.compile failed ({exc.__class__.__name__}: {str(exc)[:200]})")
    return stages, notes


def fastest(stages: list[StageTime]) -> list[StageTime]:
    """Per stage, the faster of its timings (eager or compiled), in stage order."""
    best: dict[str, StageTime] = {}
    for stage in stages:
        if stage.name not in best or stage.recipe_step_s < best[stage.name].recipe_step_s:
            best[stage.name] = stage
    return list(best.values())


def describe(stage: StageTime) -> str:
    m, a = stage.config.model, stage.config.augment
    crops = f"{a.n_global} × {a.global_size} px" + (f" + {a.n_local} × {a.local_size} px" if a.n_local else "")
    return (f"{stage.name}: ViT patch {m.patch_size}, dim {m.dim}, depth {m.depth}, {m.heads} heads, "
            f"{crops} crops per image, recipe batch {stage.config.batch_size}, {stage.config.epochs} epochs "
            f"({stage.steps:,} steps), {stage.evaluations} evaluations; timed at batch {stage.timed_batch}"
            f"{', compiled' if stage.compiled else ', eager'}: s per step per window "
            + ", ".join(f"{s:.3f}" for s in stage.step_s)
            + f"; embedding {stage.embed_images_per_s:,.0f} images/s")
