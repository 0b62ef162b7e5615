import sys
import threading

import numpy as np
import pytest

from core import events as ev
from demo.history import INITIAL_CAPACITY, RATE_WINDOW_S, RunHistory
from demo.run_view import Layout


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def started(total_steps=12, steps_per_epoch=4, start_step=0):
    return ev.RunStarted("cpu", 40, 20, steps_per_epoch, total_steps, start_step, 1_000_000)


def step(i, loss=None, lr=1e-3, images_per_s=100.0):
    return ev.StepMetrics(i, (i - 1) // 4, float(i) if loss is None else loss, lr, images_per_s)


def run_steps(history, clock, first, last, seconds_per_step=0.5):
    for i in range(first, last + 1):
        clock.now += seconds_per_step
        history(step(i))


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def history(clock):
    return RunHistory("r1", "run 1 · instance · fashion", ["a", "b"], clock=clock)


def test_fresh_history_is_idle_and_empty(history):
    view = history.view()
    assert view.status == "idle" and view.step == 0
    assert len(view.steps) == len(view.losses) == len(view.lrs) == len(view.epochs) == len(view.knn) == 0
    assert view.eta_s is None and view.elapsed_s == 0 and view.baselines is None and view.layouts == ()
    assert view.class_names == ("a", "b") and view.label == "run 1 · instance · fashion"


def test_scripted_run_is_folded(history, clock):
    history(started())
    history(ev.Baselines(raw_pixels=0.5, random_init=0.3))
    run_steps(history, clock, 1, 4)
    history(ev.EpochMetrics(1, 4, 2.5, None, 2.0))
    run_steps(history, clock, 5, 8)
    history(ev.EpochMetrics(2, 8, 6.5, 0.7, 4.0))
    history(ev.EmbeddingSnapshot(2, np.zeros((40, 8), np.float16), np.zeros(40, np.int64), {}))
    history(ev.CheckpointSaved("runs/a/last.pt", 2, 8))

    view = history.view()
    assert view.status == "running" and "cpu" in view.message
    assert view.device == "cpu" and view.total_steps == 12 and view.steps_per_epoch == 4
    assert view.steps.tolist() == list(range(1, 9)) and view.losses.tolist() == [float(i) for i in range(1, 9)]
    assert view.lrs.tolist() == [1e-3] * 8 and view.step == 8
    assert view.epochs.tolist() == [1, 2]
    assert view.knn_epochs.tolist() == [2] and view.knn.tolist() == [0.7]  # epoch 1 was not evaluated
    assert view.baselines == (0.5, 0.3)
    assert view.snapshot_epoch == 2 and view.checkpoint == "runs/a/last.pt"
    assert view.eta_s == pytest.approx(4 * 0.5)  # 4 steps left at 2 steps/s
    assert view.elapsed_s == pytest.approx(4.0) and view.started_at is not None

    run_steps(history, clock, 9, 12)
    history(ev.EpochMetrics(3, 12, 10.5, 0.75, 6.0))
    history(ev.Finished("completed", 3, 12, 0.75, "runs/a/final.pt"))
    clock.now += 50  # time after the end does not count
    done = history.view()
    assert done.status == "completed" and done.eta_s is None
    assert done.elapsed_s == pytest.approx(6.0)
    assert "75.0%" in done.message and done.checkpoint == "runs/a/final.pt"
    assert done.knn_epochs.tolist() == [2, 3] and len(done.steps) == 12


def test_eta_is_none_before_two_steps(history, clock):
    history(started())
    assert history.view().eta_s is None
    run_steps(history, clock, 1, 1)
    assert history.view().eta_s is None
    run_steps(history, clock, 2, 2)
    assert history.view().eta_s > 0


def test_eta_follows_the_recent_rate(history, clock):
    history(started(total_steps=100))
    run_steps(history, clock, 1, 10, seconds_per_step=10.0)  # t = 110 ... 200
    run_steps(history, clock, 11, 20, seconds_per_step=1.0)  # t = 201 ... 210
    # Only steps at or after t = 210 - 30 count: step 8 (t = 180) to step 20 (t = 210).
    assert RATE_WINDOW_S == 30.0
    assert history.view().eta_s == pytest.approx((100 - 20) * 30 / 12)


@pytest.mark.parametrize("reason", ["stopped", "completed"])
def test_finished_reason_sets_status(history, clock, reason):
    history(started())
    run_steps(history, clock, 1, 3)
    history(ev.Finished(reason, 0, 3, None, None))
    view = history.view()
    assert view.status == reason and view.eta_s is None and "%" not in view.message


def test_a_hand_over_says_so_rather_than_that_somebody_stopped_the_run(history, clock):
    """A pipeline's pretraining that handed over ends with its own words: nobody pressed Stop."""
    history(started())
    run_steps(history, clock, 1, 3)
    history(ev.Finished(ev.HANDED_OVER, 0, 3, None, None))
    assert history.view().message.startswith("handed over at epoch 0 (step 3)")


def test_failure_is_reported(history, clock):
    history(started())
    run_steps(history, clock, 1, 2)
    history(ev.CheckpointSaved("runs/a/last.pt", 0, 2))
    history(ev.Failed("loss became nan at step 3", 0, 2, None))
    view = history.view()
    assert view.status == "failed" and view.message == "loss became nan at step 3"
    assert view.eta_s is None and view.checkpoint == "runs/a/last.pt"  # the last good one is kept


def test_resume_from_an_older_checkpoint_rewinds(history, clock):
    history(started())
    run_steps(history, clock, 1, 6)
    history(ev.EpochMetrics(1, 4, 2.5, 0.6, 2.0))
    history.add_layout(Layout(1, np.zeros((2, 2), np.float32), np.zeros(2, np.int64)))
    history(ev.Failed("boom", 1, 6, "runs/a/last.pt"))
    before = history.view()
    clock.now += 100  # idle between runs
    history(started(start_step=4))
    view = history.view()
    assert view.status == "running" and view.steps.tolist() == [1, 2, 3, 4]
    assert view.epochs.tolist() == [1] and [layout.epoch for layout in view.layouts] == [1]
    for i in (5, 6):
        clock.now += 0.5
        history(step(i, loss=-i))  # redone steps, new losses
    after = history.view()
    assert after.steps.tolist() == [1, 2, 3, 4, 5, 6] and after.losses.tolist()[-2:] == [-5, -6]
    assert after.elapsed_s == pytest.approx(3.0 + 1.0)  # both runs' running time, not the gap
    assert before.losses.tolist()[-2:] == [5, 6]  # an older view is untouched by the rewind


def test_a_second_stage_says_it_began_not_that_the_run_resumed(history, clock):
    history(started())
    run_steps(history, clock, 1, 4)
    history(ev.Finished("completed", 1, 4, None, None))
    history(ev.StageStarted("finetune", 1, "run/finetune"))
    history(started())  # the stage's RunStarted, numbered from its own start: the fold continues the run
    assert history.view().message.startswith("fine-tuning from step 4 on cpu")
    assert history.view().stages == (("fine-tuning", 0),) and history.label.endswith("→ fine-tuning")
    history(step(1))
    assert history.view().steps.tolist()[-1] == 5  # its first step is the run's fifth
    history(ev.Failed("boom", 0, 1, None))
    history(ev.StageStarted("finetune", 1, "run/finetune"))  # the same stage again: a resume, not a new one
    history(started(start_step=1))
    assert history.view().message.startswith("resumed at step 5") and len(history.view().stages) == 1


def test_views_are_read_only_and_stable_while_columns_grow(history, clock):
    history(started(total_steps=10 * INITIAL_CAPACITY))
    run_steps(history, clock, 1, 10)
    early = history.view()
    run_steps(history, clock, 11, 3 * INITIAL_CAPACITY)
    late = history.view()
    assert early.steps.tolist() == list(range(1, 11))
    assert late.losses.tolist() == [float(i) for i in range(1, 3 * INITIAL_CAPACITY + 1)]
    with pytest.raises(ValueError):
        late.losses[0] = 0.0


def test_throughput_is_smoothed(history, clock):
    history(started())
    history(step(1, images_per_s=100.0))
    assert history.view().images_per_s == pytest.approx(100.0)
    history(step(2, images_per_s=200.0))
    assert history.view().images_per_s == pytest.approx(110.0)


def test_layouts_stay_in_epoch_order_and_replace_same_epoch(history):
    def layout(epoch, n):
        return Layout(epoch, np.zeros((n, 2), np.float32), np.zeros(n, np.int64))

    for epoch, n in [(4, 1), (2, 1), (6, 1), (4, 3)]:
        history.add_layout(layout(epoch, n))
    layouts = history.view().layouts
    assert [item.epoch for item in layouts] == [2, 4, 6] and len(layouts[1].xy) == 3


def test_unknown_events_are_ignored(history):
    history(object())
    assert history.view().status == "idle"


@pytest.fixture
def eager_thread_switching():
    # Switch threads every microsecond rather than every 5 ms, so an unguarded race shows up.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def test_concurrent_appends_and_views_are_consistent(eager_thread_switching):
    history = RunHistory("r", "run", ["a"])
    total, errors, seen = 20_000, [], []
    history(started(total_steps=total))

    def train():
        for i in range(1, total + 1):
            history(step(i, lr=float(i)))
        history(ev.Finished("completed", 0, total, None, None))

    def watch():
        try:
            while True:
                view = history.view()
                assert len(view.steps) == len(view.losses) == len(view.lrs)
                assert np.array_equal(view.steps, view.losses) and np.array_equal(view.steps, view.lrs)
                assert np.all(np.diff(view.steps) == 1)
                seen.append(len(view.steps))
                if view.status == "completed":
                    return
        except Exception as exc:  # surfaced to the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=train), threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert seen[-1] == total and len(seen) > 1


def test_a_pipeline_stopped_between_two_stages_reads_stopped_not_completed(history, clock):
    history(started())
    run_steps(history, clock, 1, 4)
    history(ev.Finished("completed", 1, 4, None, None))
    history(ev.PipelineEnded(ev.STOPPED, 0.1, None))
    assert history.view().status == "stopped" and "before its next stage" in history.view().message
    history(ev.PipelineEnded(ev.COMPLETED, 0.2, "model.pt"))  # a finished pipeline says nothing more
    assert history.view().status == "stopped"
