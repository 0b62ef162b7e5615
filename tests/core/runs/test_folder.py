"""Run folders: what every run writes, read back, and never deleted outside its home."""
import json
import threading

import pytest

from core import events as ev
from core.plan.pipeline import Pipeline
from core.plan.request import ONLY, Request
from core.plan.stage import run_stage
from core.runs.folder import CONFIG, LOG, RunFolder, StageFolder, delete, find, run_of
from core.runs.log import JsonlLog, read_events
from core.trainer.loop import Trainer
from tests.core.conftest import Recorder


@pytest.fixture
def stage_run(tiny_config, toy_data, tmp_path):
    """A run of one stage, as core.train writes it."""
    folder = tmp_path / "runs" / "first"
    RunFolder(folder).name(None, toy_data.class_names)
    run_stage(tiny_config.with_overrides(epochs=2), toy_data, StageFolder(folder), Recorder(), threading.Event())
    return RunFolder(folder)


def test_a_stage_writes_its_config_and_log_and_says_how_it_ended(stage_run, tiny_config, toy_data):
    (name, stage), = stage_run.stages()
    assert name == "" and stage.path == stage_run.path
    assert stage.config() == tiny_config.with_overrides(epochs=2)
    assert stage_run.class_names == toy_data.class_names and stage_run.label == "first"
    kinds = [type(e).__name__ for e in stage.events()]
    assert kinds[:2] == ["RunStarted", "Baselines"] and kinds[-1] == "Finished"
    assert stage.ended().reason == ev.COMPLETED and stage_run.model() == stage.last


def test_events_read_back_equal_the_trainers_and_weights_stay_out_of_the_log(tiny_config, toy_data, tmp_path):
    rec, log = Recorder(), JsonlLog(tmp_path / LOG)
    Trainer(tiny_config.with_overrides(epochs=2, snapshot_every=0), toy_data, out_dir=tmp_path).run(
        lambda e: (rec(e), log(e)))
    log.close()
    assert read_events(tmp_path / LOG) == list(rec)  # confusion and class counts come back as tuples
    done = ev.Finished(ev.HANDED_OVER, 2, 6, None, None, best_epoch=1, best_backbone={"w": [1.0]})
    log = JsonlLog(tmp_path / "other.jsonl")
    log(done)
    log.close()
    assert read_events(tmp_path / "other.jsonl") == [ev.Finished(ev.HANDED_OVER, 2, 6, None, None, best_epoch=1)]


def test_a_half_written_line_and_unknown_events_are_skipped(stage_run):
    stage = stage_run.stages()[0][1]
    before = stage.events()
    with stage.log_path.open("a") as file:
        file.write('{"event": "Wormhole", "x": 1}\n{"event": "StepMetrics", "step": 9, "ep')
    assert stage.events() == before


def test_rename_keeps_the_classes_and_a_resume_keeps_the_name(stage_run, toy_data):
    assert stage_run.rename("  mine   at 2 epochs ") == "mine at 2 epochs"
    assert stage_run.label == "mine at 2 epochs" and stage_run.class_names == toy_data.class_names
    stage_run.name("ignored: a resume keeps the name", toy_data.class_names)
    assert stage_run.label == "mine at 2 epochs"
    with pytest.raises(ValueError, match="empty"):
        stage_run.rename("   ")


def test_a_pipeline_is_one_run_with_its_stages_inside(tiny_config, toy_data, tmp_path):
    run = RunFolder(tmp_path / "runs" / "piped")
    Pipeline.start(run, Request(tiny_config.with_overrides(epochs=1), "", ONLY), lambda c: toy_data, "p").run(
        Recorder(), threading.Event())
    assert [(name, stage.path) for name, stage in run.stages()] == [("pretrain", run.path / "pretrain")]
    assert find(tmp_path / "runs") == [run] and run.model() == run.model_path == run.path / "model.pt"
    assert run_of(run.path / "pretrain" / "last.pt") == run
    assert run_of(tmp_path / "elsewhere" / "last.pt") is None


def test_a_run_written_before_records_reads_its_fine_tuning_stage_as_its_second(stage_run, tiny_config, toy_data):
    from core.plan.recipe import FINETUNE, recipe
    tune = recipe(tiny_config.with_overrides(epochs=2), stage=FINETUNE, init_from=str(stage_run.path / "last.pt"),
                  epochs=1)
    run_stage(tune, toy_data, StageFolder(stage_run.path / "finetune"), Recorder(), threading.Event())
    assert [name for name, _ in stage_run.stages()] == ["", "finetune"]
    assert find(stage_run.path.parent) == [stage_run]  # the stage is not a run of its own
    assert run_of(stage_run.path / "finetune" / "last.pt") == stage_run


def test_delete_only_removes_a_run_inside_the_runs_folder(stage_run, tmp_path):
    root = stage_run.path.parent
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / LOG).write_text("")
    for target in (root, outside, root / ".." / "elsewhere", root / "missing"):
        with pytest.raises(ValueError):
            delete(root, RunFolder(target))
    (root / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="not inside"):
        delete(root, RunFolder(root / "link"))
    assert outside.exists()
    delete(root, stage_run)
    assert not stage_run.path.exists() and find(root) == []


def test_a_folder_without_a_readable_config_has_none(stage_run):
    stage = stage_run.stages()[0][1]
    (stage.path / CONFIG).write_text(json.dumps({"not": "a config"}))
    assert stage.config() is None
