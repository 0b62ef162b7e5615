"""How the app plans a run in its training thread (it decodes and times): the auto recipe fitted to the
data, the device and the budget (core/auto_recipe.py), and the best-model pipeline's stages
(core/stages.py). Wiring only: every rule is core's; this puts it on a run and says it in the run's
status line."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import events as ev
from core.config import TrainConfig
from core.data.cache import DatasetCache
from core.data.splits import DataSplits
from core.plan import auto as auto_recipe
from core.plan import payoff, stages
from core.plan.recipe import PRETRAIN_SHARE, recipe
from core.runs import folder as runs
from core.trainer.distributed import resolve_device
from core.trainer.handover import HANDED_OVER
from demo.history import COMPLETED
from demo.saved_runs import STAGE_FINETUNE, STAGE_SCRATCH

if TYPE_CHECKING:
    from demo.run_thread import Run


@dataclass
class Pipeline:
    """A run that is the best model `minutes` allow: its plan, made in the training thread."""

    minutes: float
    started: float = 0.0  # time.perf_counter() when its training thread began: every stage counts from it
    base: TrainConfig | None = None  # the recipe fitted to the data and the machine, once planned
    pretrain: bool = False  # whether its first stage pretrains (core/payoff.py expects it to pay)
    spent: float = 0.0  # minutes spent before the latest resume (a stopped pipeline's pause is not spent)

    def left(self) -> float:
        return stages.minutes_left(self.started, self.minutes - self.spent)

    def pause(self) -> None:
        """Its stage stopped: the minutes spent so far are kept, and the clock starts again on resume."""
        self.spent += (time.perf_counter() - self.started) / 60

    def resume(self) -> None:
        self.started = time.perf_counter()


def auto_plan(datasets: DatasetCache, request: TrainConfig, minutes: float) -> auto_recipe.Plan:
    """The auto recipe for `request`'s dataset, its seed and snapshots kept."""
    def load(size: int) -> DataSplits:
        return datasets.get(request.with_overrides(data_size=size))

    plan = auto_recipe.plan(request.dataset, resolve_device(request.device).type, minutes, load)
    return auto_recipe.Plan(plan.config.with_overrides(seed=request.seed, snapshot_every=request.snapshot_every),
                            plan.data)


def fit_auto(datasets: DatasetCache, run: Run) -> None:
    """Train `run.config.objective` on the auto recipe for `run.auto_budget` (epochs or None, minutes)."""
    request, (epochs, minutes) = run.config, run.auto_budget
    plan = auto_plan(datasets, request, minutes)
    run.config = recipe(plan.config, request.objective, epochs=epochs)
    expected = f"; expected: {payoff.for_run(run.config, plan.data).reason}" if payoff.applies(run.config) else ""
    run.history.plan(auto_recipe.describe(plan.config) + expected)
    run.auto_budget = None  # fitted: a resume or a fine-tune continues this config


def plan_pipeline(datasets: DatasetCache, run: Run, pipeline: Pipeline) -> None:
    """A pipeline's first stage on `run.config` (or the auto recipe, with `run.auto_budget`); its clock
    starts here."""
    request = run.config
    pipeline.started = time.perf_counter()
    if run.auto_budget is not None:
        plan = auto_plan(datasets, request, pipeline.minutes)
        run.auto_budget = None
    else:
        plan = auto_recipe.Plan(request, datasets.get(request))
    pretraining = stages.pretraining(plan.config, request.objective, pipeline.minutes)
    expected = payoff.for_run(pretraining, plan.data)
    pipeline.base, pipeline.pretrain = plan.config, expected.pretrain
    first = pretraining if expected.pretrain else stages.from_scratch(plan.config, pipeline.minutes)
    share = PRETRAIN_SHARE if expected.pretrain else 1.0
    run.config = first.with_overrides(minutes=stages.minutes_left(pipeline.started, pipeline.minutes * share))
    run.history.plan(f"{auto_recipe.describe(plan.config, length=False)}; expected: {expected.reason}; "
                     f"pipeline: {stages.plan_words(expected.pretrain, pipeline.minutes)}")


def next_stage(run: Run, pipeline: Pipeline, done: ev.Event) -> bool:
    """After a pipeline's pretraining ended by itself (completed or handed over), make the stage that
    core/stages.py says follows it the run's next, in its `finetune` folder (its curves continue);
    False when there is none (a stopped or failed stage, or a run trained from scratch)."""
    if not (pipeline.pretrain and isinstance(done, ev.Finished) and done.reason in (COMPLETED, HANDED_OVER)):
        return False
    then = stages.after_pretraining(run.config, pipeline.base, run.out_dir, pipeline.left())
    run.config = then.config
    run.out_dir = run.folder / runs.FINETUNE_DIR
    run.offset = run.history.begin_stage(STAGE_FINETUNE if then.stage == stages.FINETUNE_STAGE else STAGE_SCRATCH)
    run.history.plan(f"pipeline: {then.words}")
    return True
