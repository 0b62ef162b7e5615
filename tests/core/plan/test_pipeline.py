"""The pipeline driver: one run folder, its stages in order, its record, the hand-over as a value, resume."""
import itertools
import threading

import pytest

from core import events as ev
from core.plan.pipeline import REFUSED, Pipeline
from core.plan.recipe import FINETUNE, recipe
from core.plan.request import ONLY, Request
from core.runs.folder import RunFolder, StageFolder, find
from core.trainer.checkpoint import Checkpoint
from core.trainer.handover import HandOver
from tests.core.conftest import Recorder


def loader(data):
    return lambda config: data


def test_fixed_stages_train_in_order_into_one_run_and_a_finished_stage_is_not_trained_again(tiny_config, toy_data,
                                                                                             tmp_path):
    run = RunFolder(tmp_path / "arm")
    pre = tiny_config.with_overrides(epochs=2)
    tune = recipe(pre, stage=FINETUNE, init_from=str(tmp_path / "shared" / "last.pt"), epochs=1)
    rec = Recorder()
    ended = Pipeline.fixed(run, [("../shared", pre), (FINETUNE, tune)], loader(toy_data), "an arm").run(
        rec, threading.Event())
    assert (ended.reason, ended.model) == (ev.COMPLETED, str(run.path / "model.pt"))
    assert [(e.stage, e.index) for e in rec.of(ev.StageStarted)] == [("pretrain", 0), ("finetune", 1)]
    record = run.record()
    assert [(s["stage"], s["folder"], s["ended"]) for s in record["stages"]] == [
        ("pretrain", "../shared", "completed"), ("finetune", "finetune", "completed")]
    assert [stage for _, stage in run.stages()] == [StageFolder(tmp_path / "shared"), StageFolder(run.path / FINETUNE)]
    assert run.label == "an arm" and find(tmp_path) == [run]  # the shared stage is a part of the run, not a run
    # another arm sharing the pretraining: it is reused, not trained again
    other, rec = RunFolder(tmp_path / "other"), Recorder()
    Pipeline.fixed(other, [("../shared", pre), (FINETUNE, tune)], loader(toy_data), "another").run(
        rec, threading.Event())
    assert [e.stage for e in rec.of(ev.StageStarted)] == ["finetune"] and len(rec.of(ev.RunStarted)) == 1


def scripted_held_out(monkeypatch, curve):
    figures = iter(curve)
    monkeypatch.setattr(HandOver, "figure", lambda self, embeddings: next(figures))


def test_the_hand_over_hands_its_best_backbone_to_fine_tuning_as_a_value(tiny_config, toy_data, tmp_path,
                                                                        monkeypatch):
    """Held out: the random init 0.5, then each epoch better: the pretraining plateaus... until its budget ends;
    fine-tuning starts from the backbone its end event named best, passed in memory: best.pt is written for a
    resume elsewhere, never read back to decide or to start."""
    scripted_held_out(monkeypatch, itertools.count(0.5, 0.05))
    real_load = Checkpoint.load

    def load(path, **kwargs):
        assert not str(path).endswith("best.pt"), "best.pt read back"
        return real_load(path, **kwargs)

    monkeypatch.setattr(Checkpoint, "load", staticmethod(load))
    run = RunFolder(tmp_path / "best")
    pipeline = Pipeline.start(run, Request(tiny_config, "tiny", "always", 0.15), loader(toy_data))
    rec = Recorder()
    ended = pipeline.run(rec, threading.Event())
    assert ended.reason == ev.COMPLETED and ended.model == str(run.path / "model.pt")
    pretrained = rec.of(ev.Finished)[0]
    assert pretrained.best_epoch == pretrained.epoch and pretrained.best_backbone is not None
    started = rec.of(ev.StageStarted)
    assert [s.stage for s in started] == ["pretrain", "finetune"]
    assert started[1].words.startswith(f"fine-tuning the pretrained backbone of epoch {pretrained.epoch}")
    record = run.record()
    assert record["stages"][0]["best_epoch"] == pretrained.epoch and record["words"][2].startswith("pretraining, then")
    tuned = rec.of(ev.RunStarted)[1]
    assert tuned.init_from == str(run.path / "pretrain" / "best.pt") and tuned.objective == "supervised"
    assert record["spent_minutes"] > 0 and rec.of(ev.Planned)[0].stages == record["words"][2]


def test_a_random_init_that_stays_best_sends_the_rest_of_the_minutes_to_scratch(tiny_config, toy_data, tmp_path,
                                                                               monkeypatch):
    scripted_held_out(monkeypatch, itertools.chain([0.9], itertools.repeat(0.2)))
    run = RunFolder(tmp_path / "scratch")
    rec = Recorder()
    Pipeline.start(run, Request(tiny_config, "tiny", "always", 0.15), loader(toy_data)).run(rec, threading.Event())
    assert rec.of(ev.Finished)[0].reason == ev.HANDED_OVER and rec.of(ev.Finished)[0].best_epoch == 0
    assert [s["stage"] for s in run.record()["stages"]] == ["pretrain", "supervised"]
    assert not rec.of(ev.RunStarted)[1].init_from and rec.of(ev.StageStarted)[1].words.startswith("supervised")


def test_a_stopped_pipeline_goes_on_from_its_record_in_another_pipeline_object(tiny_config, toy_data, tmp_path):
    run = RunFolder(tmp_path / "run")
    stop = threading.Event()

    def stop_at_step_two(event):
        if isinstance(event, ev.StepMetrics) and event.step == 2:
            stop.set()

    config = tiny_config.with_overrides(epochs=3)
    ended = Pipeline.start(run, Request(config, "", ONLY), loader(toy_data)).run(stop_at_step_two, stop)
    assert ended.reason == ev.STOPPED and ended.model is None
    assert run.record()["stages"][0]["ended"] == ev.STOPPED
    rec = Recorder()
    again = Pipeline.open(run, loader(toy_data))
    assert not again.finished and again.run(rec, threading.Event()).reason == ev.COMPLETED
    assert rec.of(ev.RunStarted)[0].start_step == 2 and again.finished  # resumed from its checkpoint


def test_fine_tuning_is_added_to_a_finished_pretraining_once(tiny_config, toy_data, tmp_path):
    run = RunFolder(tmp_path / "run")
    pipeline = Pipeline.start(run, Request(tiny_config.with_overrides(epochs=1), "", ONLY), loader(toy_data))
    with pytest.raises(LookupError, match="nothing to fine-tune"):
        pipeline.finetune()  # nothing has trained yet
    pipeline.run(Recorder(), threading.Event())
    config, start = pipeline.finetune(epochs=1, labels_per_class=3)
    assert (config.objective, config.init_from, config.labels_per_class, start) == (
        "supervised", str(run.path / "pretrain" / "last.pt"), 3, "last.pt")
    assert not pipeline.finished and pipeline.run(Recorder(), threading.Event()).reason == ev.COMPLETED
    with pytest.raises(LookupError, match="already trains on the labels"):
        Pipeline.open(run, loader(toy_data)).finetune()


def test_a_used_folder_is_refused_and_a_refused_plan_leaves_it_free(tiny_config, toy_data, tmp_path):
    run = RunFolder(tmp_path / "run")
    refused = Pipeline.start(run, Request(tiny_config.with_overrides(dataset="folder:/nope"), "", ONLY),
                             lambda config: (_ for _ in ()).throw(ValueError("dataset folder /nope does not exist")))
    rec = Recorder()
    assert refused.run(rec, threading.Event()).reason == REFUSED and "does not exist" in rec.of(ev.Failed)[0].message
    Pipeline.start(run, Request(tiny_config.with_overrides(epochs=1), "", ONLY), loader(toy_data)).run(
        Recorder(), threading.Event())  # nothing trained there: the folder was free
    with pytest.raises(ValueError, match="already holds a run"):
        Pipeline.start(run, Request(tiny_config, "", ONLY), loader(toy_data))


def test_a_run_of_one_stage_with_no_record_opens_as_a_pipeline(tiny_config, toy_data, tmp_path):
    """core.train's run folder: the app can resume or fine-tune it through the same driver."""
    from core.plan.stage import run_stage
    run_stage(tiny_config.with_overrides(epochs=1), toy_data, StageFolder(tmp_path / "cli"), Recorder(),
              threading.Event())
    pipeline = Pipeline.open(RunFolder(tmp_path / "cli"), loader(toy_data))
    assert [(s["stage"], s["folder"], s["ended"]) for s in pipeline.stages] == [("pretrain", ".", "completed")]
    config, _ = pipeline.finetune(epochs=1)
    assert config.init_from == str(tmp_path / "cli" / "last.pt")
    assert pipeline.run(Recorder(), threading.Event()).model == str(tmp_path / "cli" / "model.pt")
