import threading

import pytest
import torch

from core import events as ev
from core.trainer.checkpoint import Checkpoint, CheckpointError
from core.trainer.loop import Trainer
from tests.core.conftest import Recorder, make_splits


def stop_when(predicate, stop):
    def listener(event):
        if predicate(event):
            stop.set()
    return listener


def weights(trainer):
    return {k: v.clone() for k, v in trainer.module.state_dict().items()}


def test_run_emits_the_full_event_stream(tiny_config, toy_data, tmp_path):
    rec = Recorder()
    result = Trainer(tiny_config, toy_data, out_dir=tmp_path).run(rec)
    assert isinstance(rec[0], ev.RunStarted) and rec[0].total_steps == 4 * 3
    base = rec.of(ev.Baselines)[0]
    assert 0 <= base.raw_pixels <= 1 and 0 <= base.random_init <= 1
    steps = rec.of(ev.StepMetrics)
    assert [s.step for s in steps] == list(range(1, 13))
    assert all(s.loss > 0 and s.images_per_s > 0 for s in steps)
    assert steps[0].lr < steps[3].lr  # warmup over the first epoch
    epochs = rec.of(ev.EpochMetrics)
    assert [e.epoch for e in epochs] == [1, 2, 3, 4] and all(e.knn_top1 is not None for e in epochs)
    snaps = rec.of(ev.EmbeddingSnapshot)
    assert [s.epoch for s in snaps] == [2, 4]
    assert snaps[0].embeddings.shape == (40, 16) and snaps[0].embeddings.dtype.name == "float16"
    assert len(rec.of(ev.CheckpointSaved)) == 4
    assert rec[-1] == result and result.reason == "completed" and result.step == 12
    assert Checkpoint.load(tmp_path / "last.pt").step == 12


def test_training_learns_the_toy_classes(tiny_config):
    data = make_splits(n_train=64, n_test=64)
    result = Trainer(tiny_config.with_overrides(epochs=8, lr=3e-3), data).run(lambda e: None)
    assert result.knn_top1 > 0.9  # noisy prototypes: instance features must cluster by class


@pytest.mark.parametrize("stop_event", ["epoch", "mid-epoch"])
def test_resume_continues_exactly(tiny_config, toy_data, tmp_path, stop_event):
    straight = Trainer(tiny_config, toy_data)
    straight_losses = Recorder()
    straight.run(straight_losses)

    stop = threading.Event()
    at = (lambda e: isinstance(e, ev.EpochMetrics) and e.epoch == 2) if stop_event == "epoch" else \
         (lambda e: isinstance(e, ev.StepMetrics) and e.step == 4)
    first = Trainer(tiny_config, toy_data, out_dir=tmp_path)
    part1 = Recorder()
    stopped = first.run(lambda e: (part1(e), stop_when(at, stop)(e)), stop)
    assert stopped.reason == "stopped"
    second = Trainer(tiny_config, toy_data, out_dir=tmp_path, resume_from=tmp_path / "last.pt")
    part2 = Recorder()
    assert second.run(part2).reason == "completed"

    resumed = [s.loss for s in part1.of(ev.StepMetrics) + part2.of(ev.StepMetrics)]
    assert resumed == [s.loss for s in straight_losses.of(ev.StepMetrics)]
    for name, value in weights(straight).items():
        assert torch.equal(value, weights(second)[name]), name


def test_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tiny_config, toy_data, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config, toy_data, out_dir=tmp_path)
    stop = threading.Event()
    trainer.run(stop_when(lambda e: isinstance(e, ev.EpochMetrics) and e.epoch == 1, stop), stop)
    before = (tmp_path / "last.pt").read_bytes()
    good_step = Checkpoint.load(tmp_path / "last.pt").step

    real_forward = type(trainer.objective).forward
    monkeypatch.setattr(type(trainer.objective), "forward",
                        lambda self, *a: real_forward(self, *a) * float("nan"))
    rec = Recorder()
    result = trainer.run(rec)
    assert isinstance(result, ev.Failed) and "nan" in result.message and "last good checkpoint" in result.message
    assert result.checkpoint == str(tmp_path / "last.pt")
    assert (tmp_path / "last.pt").read_bytes() == before
    assert Checkpoint.load(tmp_path / "last.pt").step == good_step


def test_absurd_learning_rate_stops_with_a_message(tiny_config, toy_data):
    result = Trainer(tiny_config.with_overrides(lr=1e20, min_lr=0.0, warmup_epochs=0), toy_data).run(lambda e: None)
    assert isinstance(result, ev.Failed) and "loss became" in result.message


def test_background_thread_stops_on_request(tiny_config, toy_data, tmp_path):
    stop, rec = threading.Event(), Recorder()
    trainer = Trainer(tiny_config.with_overrides(epochs=50), toy_data, out_dir=tmp_path)
    thread = trainer.start(lambda e: (rec(e), stop_when(lambda x: isinstance(x, ev.StepMetrics), stop)(e)), stop)
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert isinstance(rec[-1], ev.Finished) and rec[-1].reason == "stopped" and rec[-1].step == 1
    assert Checkpoint.load(tmp_path / "last.pt").step == 1


def test_errors_in_the_thread_arrive_as_failed_events(tiny_config, toy_data, monkeypatch):
    trainer = Trainer(tiny_config, toy_data)
    monkeypatch.setattr(trainer, "_train_step", lambda index, epoch: (_ for _ in ()).throw(RuntimeError("boom")))
    rec = Recorder()
    trainer.start(rec, threading.Event()).join(timeout=60)
    assert isinstance(rec[-1], ev.Failed) and "RuntimeError: boom" in rec[-1].message


def test_resume_refuses_other_data_and_other_configs(tiny_config, toy_data, tmp_path):
    Trainer(tiny_config.with_overrides(epochs=1), toy_data, out_dir=tmp_path).run(lambda e: None)
    with pytest.raises(CheckpointError, match="other data"):
        Trainer(tiny_config, make_splits(seed=1), resume_from=tmp_path / "last.pt")
    with pytest.raises(CheckpointError, match="lr"):
        Trainer(tiny_config.with_overrides(lr=5e-3), toy_data, resume_from=tmp_path / "last.pt")
    # more epochs is allowed: the run is extended
    Trainer(tiny_config.with_overrides(epochs=2), toy_data, resume_from=tmp_path / "last.pt")


# The GPU path on the CPU: losses read back in windows (one device sync each), and the compiled step.
def test_reading_losses_back_in_windows_changes_nothing_but_when(tiny_config, toy_data):
    every = Recorder()
    Trainer(tiny_config, toy_data).run(every)
    windowed = Recorder()
    Trainer(tiny_config.with_overrides(sync_every=3), toy_data).run(windowed)
    assert [(s.step, s.loss, s.lr) for s in every.of(ev.StepMetrics)] == \
        [(s.step, s.loss, s.lr) for s in windowed.of(ev.StepMetrics)]


def test_a_nan_inside_a_window_names_its_step_and_saves_nothing(tiny_config, toy_data, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config.with_overrides(sync_every=3, checkpoint_every=0), toy_data, out_dir=tmp_path)
    real_step = Trainer._train_step
    monkeypatch.setattr(trainer, "_train_step", lambda index, epoch: real_step(trainer, index, epoch)
                        * (float("nan") if trainer.step == 4 else 1.0))  # the 5th step (step 5) goes bad
    rec = Recorder()
    result = trainer.run(rec)
    assert isinstance(result, ev.Failed) and "at step 5" in result.message
    assert [s.step for s in rec.of(ev.StepMetrics)] == [1, 2, 3, 4]
    assert not (tmp_path / "last.pt").exists()


def test_stop_mid_window_reads_back_and_saves(tiny_config, toy_data, tmp_path):
    stop = threading.Event()
    rec = Recorder()

    def listen(event):
        rec(event)
        if isinstance(event, ev.StepMetrics) and event.step == 3:
            stop.set()

    done = Trainer(tiny_config.with_overrides(sync_every=3), toy_data, out_dir=tmp_path).run(listen, stop)
    assert done.reason == "stopped" and done.step == 3
    assert Checkpoint.load(tmp_path / "last.pt").step == 3


@pytest.mark.slow
def test_the_compiled_step_trains_like_the_eager_one(tiny_config, toy_data):
    config = tiny_config.with_overrides(epochs=1, augment={"n_local": 0})
    eager, compiled = Recorder(), Recorder()
    Trainer(config, toy_data).run(eager)
    Trainer(config.with_overrides(compile=True), toy_data).run(compiled)
    assert [s.loss for s in compiled.of(ev.StepMetrics)] == pytest.approx([s.loss for s in eager.of(ev.StepMetrics)],
                                                                           rel=1e-3)


def test_time_steps_measures_a_rate_without_moving_the_run_on(tiny_config, toy_data):
    trainer = Trainer(tiny_config, toy_data)
    before = {k: v.clone() for k, v in trainer.backbone.state_dict().items()}
    assert trainer.time_steps(2) > 0
    assert trainer.step == 0  # the schedule and the sample order are untouched: a run could still start
    assert any(not torch.equal(before[k], v) for k, v in trainer.backbone.state_dict().items())  # it did train
