"""A budget in minutes: the arithmetic (core.budget) and a run that keeps it, on a scripted clock."""
import threading

import pytest

from core import events as ev
from core.trainer.budget import Costs, describe, eval_every_for, fit_epochs, seconds_for
from core.trainer.checkpoint import Checkpoint
from core.trainer.loop import Trainer
from tests.core.conftest import Recorder


@pytest.mark.parametrize("eval_every, snapshot_every", [(0, 0), (1, 0), (10, 2), (3, 2)])
def test_the_fitted_epochs_are_the_most_that_end_on_time(eval_every, snapshot_every):
    costs = Costs(step_s=0.1, eval_s=2.0, snapshot_s=0.5)
    for seconds in (30.05, 60.05, 301.3):  # off the boundaries, where float sums may differ by an ulp
        epochs = fit_epochs(seconds, costs, 16, 0, eval_every, snapshot_every)
        assert seconds_for(epochs, costs, 16, 0, eval_every, snapshot_every) <= seconds
        assert seconds_for(epochs + 1, costs, 16, 0, eval_every, snapshot_every) > seconds


def test_evaluations_are_paid_for_and_the_epoch_under_way_always_ends():
    cheap, costly = Costs(0.1, 0.0, 0.0), Costs(0.1, 5.0, 0.0)
    assert fit_epochs(60, cheap, 10) == 60 and fit_epochs(60, costly, 10, eval_every=1) == 10
    assert fit_epochs(0.0, costly, 10, done_steps=25) == 3  # already in epoch 3: it finishes
    assert seconds_for(4, cheap, 10, done_steps=25) == pytest.approx(1.5)  # 15 steps left
    assert describe(5, 46, 410.4) == "5 min budget: ~46 epochs at 410 img/s"
    assert describe(0.0829624, 2, 474.0).startswith("5 s budget")  # what a clock left, rounded
    assert describe(2.8848, 16, 474.0).startswith("2.9 min budget")
    with pytest.raises(ValueError):
        Costs(0.0, 1.0, 1.0)


def test_a_run_the_budget_shortens_keeps_the_evaluations_its_recipe_planned():
    assert eval_every_for(125, 15, 58) == 7  # ~8 evaluations planned, ~8 kept
    assert eval_every_for(60, 10, 100) == 10 and eval_every_for(60, 1, 20) == 1  # longer, or every epoch: kept
    assert eval_every_for(60, 0, 20) == 0  # only at the end stays only at the end
    assert eval_every_for(60, 20, 2) == 1


class ScriptedClock:
    """Time moves only when the trainer works: `step_s` per training step, `eval_s` per evaluation."""

    def __init__(self, trainer: Trainer, step_s: float, eval_s: float, slow_after: int | None = None):
        self.now, self.steps = 0.0, 0
        train_step, evaluate = trainer._train_step, trainer.monitor.evaluate

        def timed_step(*args):
            self.steps += 1
            self.now += step_s * (2 if slow_after is not None and self.steps > slow_after else 1)
            return train_step(*args)

        def timed_evaluate():
            self.now += eval_s
            return evaluate()

        trainer._train_step, trainer.monitor.evaluate, trainer.clock = timed_step, timed_evaluate, self

    def __call__(self) -> float:
        return self.now


def budgeted(config, data, out=None, step_s=0.5, eval_s=2.0):
    trainer = Trainer(config, data, out_dir=out)
    return trainer, ScriptedClock(trainer, step_s, eval_s)


def test_a_budgeted_run_times_itself_fixes_its_epochs_and_ends_on_time(tiny_config, toy_data, tmp_path):
    """3 steps an epoch at 0.5 s, an evaluation (every epoch, and the baselines) 2 s. Five seconds of steps
    are timed after the first (steps 2-11); by then the baselines, 11 steps and three evaluations read
    13.5 s; the rest of epoch 4 costs 2.5 s and every later epoch 3.5 s, so 60 s hold 12 more: 16 epochs,
    ending at 58 s."""
    config = tiny_config.with_overrides(minutes=1.0, snapshot_every=0)
    trainer, clock = budgeted(config, toy_data, tmp_path)
    rec = Recorder()
    done = trainer.run(rec)
    fitted = rec.of(ev.BudgetFitted)
    assert len(fitted) == 1 and (fitted[0].epochs, fitted[0].step, fitted[0].total_steps) == (16, 11, 48)
    assert fitted[0].message == "1 min budget: ~16 epochs at 27 img/s"  # 40 images per 1.5 s epoch
    assert done.reason == "completed" and done.epoch == 16 and clock.now == pytest.approx(58.0)
    lrs = [s.lr for s in rec.of(ev.StepMetrics)]
    assert lrs[-1] < lrs[len(lrs) // 2] < max(lrs)  # the cosine is built for the fitted length
    saved = Checkpoint.load(tmp_path / "last.pt").config
    assert (saved.epochs, saved.minutes) == (16, 0.0)  # what a resume continues


def test_a_budgeted_run_shorter_than_planned_evaluates_as_often_as_planned_and_still_ends_on_time(
        tiny_config, toy_data):
    """Planned: 40 epochs, evaluated every 8 (5 evaluations); the minute holds 30, so the interval shrinks to
    6: still 5 evaluations, paid for in the fitted length, which ends on time."""
    config = tiny_config.with_overrides(minutes=1.0, snapshot_every=0, epochs=40, eval_every=8)
    trainer, clock = budgeted(config, toy_data)
    rec = Recorder()
    done = trainer.run(rec)
    evaluated = [e.epoch for e in rec.of(ev.EpochMetrics) if e.knn_top1 is not None]
    assert (trainer.config.eval_every, done.epoch, evaluated) == (6, 30, [6, 12, 18, 24, 30])
    assert done.reason == "completed" and clock.now <= 60.0


def test_a_stopped_budgeted_run_resumes_with_what_is_left(tiny_config, toy_data, tmp_path):
    config = tiny_config.with_overrides(minutes=1.0, snapshot_every=0)
    trainer, _ = budgeted(config, toy_data, tmp_path)
    stop = threading.Event()
    trainer.run(lambda e: stop.set() if isinstance(e, ev.StepMetrics) and e.step == 20 else None, stop)
    # The app resumes with the config it started (minutes 1): the checkpoint's fixed length wins.
    resumed = Trainer(config, toy_data, out_dir=tmp_path, resume_from=tmp_path / "last.pt")
    rec = Recorder()
    done = resumed.run(rec)
    assert not rec.of(ev.BudgetFitted) and rec.of(ev.RunStarted)[0].total_steps == 48
    assert done.reason == "completed" and done.step == 48


def test_a_run_stopped_before_its_budget_was_fixed_fixes_it_on_resume(tiny_config, toy_data, tmp_path):
    config = tiny_config.with_overrides(minutes=1.0, snapshot_every=0)
    trainer, _ = budgeted(config, toy_data, tmp_path)
    stop = threading.Event()
    trainer.run(lambda e: stop.set() if isinstance(e, ev.StepMetrics) and e.step == 2 else None, stop)
    assert Checkpoint.load(tmp_path / "last.pt").config.minutes == 1.0
    resumed = Trainer(config, toy_data, out_dir=tmp_path, resume_from=tmp_path / "last.pt")
    ScriptedClock(resumed, 0.5, 2.0)
    rec = Recorder()
    done = resumed.run(rec)
    assert len(rec.of(ev.BudgetFitted)) == 1 and done.reason == "completed"


def test_the_step_timer_leaves_out_the_first_window_and_waits_for_enough_steps():
    from core.trainer.budget import WARMUP_SECONDS, WARMUP_STEPS, StepTimer
    timer = StepTimer()
    assert timer.add(9.0, 1) is None  # allocation and warm-up
    results = [timer.add(1.0, 1) for _ in range(WARMUP_STEPS)]
    assert results[:-1] == [None] * (WARMUP_STEPS - 1) and results[-1] == 1.0
    quick = StepTimer()
    quick.add(1.0, 1)
    steps = [quick.add(0.1, 1) for _ in range(int(WARMUP_SECONDS / 0.1) + 1)]
    assert steps[WARMUP_STEPS] is None and steps[-1] == pytest.approx(0.1)  # seconds, not only steps


def test_the_recent_step_time_spans_at_least_its_seconds_so_a_swing_does_not_decide_alone():
    """300 steps at 0.1 s, then 100 at 0.2 s: the last 100 steps alone read 0.2; spanning 40 s they read the
    swing with what came before it (100 slow and 200 fast steps)."""
    from core.trainer.budget import RECENT_STEPS, StepTimer
    short, spanning = StepTimer(), StepTimer(recent_s=40.0)
    for timer in (short, spanning):
        timer.add(9.0, 1)  # allocation and warm-up
        for seconds in [0.1] * 300 + [0.2] * 100:
            timer.add(seconds, 1)
    assert short.recent_step_s == pytest.approx(0.2) and RECENT_STEPS == 100
    assert spanning.recent_step_s == pytest.approx(40.0 / 300)


def test_a_machine_that_slows_down_gets_a_shorter_run_that_still_ends_on_time(tiny_config, toy_data):
    """The first 20 steps run at 0.5 s, the rest at 1 s (a CPU leaving its turbo clock): the 16 epochs
    fixed at first would end at ~100 s; the epochs that follow see it and move the end back inside 60 s."""
    config = tiny_config.with_overrides(minutes=1.0, snapshot_every=0)
    trainer = Trainer(config, toy_data)
    clock = ScriptedClock(trainer, 0.5, 2.0, slow_after=20)
    rec = Recorder()
    done = trainer.run(rec)
    fitted = rec.of(ev.BudgetFitted)
    assert fitted[0].epochs == 16 and len(fitted) >= 2 and "(was 16)" in fitted[1].message
    assert done.reason == "completed" and 55.0 <= clock.now <= 60.0 + 5.0  # within an epoch of the budget
    assert done.epoch == fitted[-1].epochs < 16
