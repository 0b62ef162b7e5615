"""Run folders: what every run writes, read back for the run table, and never deleted outside its home."""
import csv
import dataclasses
import json

import pytest

from core import events as ev
from core.runs import folder as runs
from core.train import execute
from core.trainer.loop import Trainer
from tests.core.conftest import Recorder


@pytest.fixture
def run_folder(tiny_config, toy_data, tmp_path):
    folder = tmp_path / "runs" / "first"
    assert execute(tiny_config.with_overrides(epochs=2), out=folder, data=toy_data) == 0
    return folder


def test_a_command_line_run_writes_its_config_classes_and_log(run_folder, tiny_config, toy_data):
    assert runs.read_config(run_folder) == tiny_config.with_overrides(epochs=2)
    assert runs.class_names_of(run_folder) == toy_data.class_names and runs.label_of(run_folder) == "first"
    kinds = [type(e).__name__ for e in runs.read_events(run_folder)]
    assert kinds[:2] == ["RunStarted", "Baselines"] and kinds[-1] == "Finished"


def test_events_read_back_equal_the_trainers(tiny_config, toy_data, tmp_path):
    from core.runs.log import JsonlLog
    rec, log = Recorder(), JsonlLog(tmp_path / runs.METRICS)
    Trainer(tiny_config.with_overrides(epochs=2, snapshot_every=0), toy_data, out_dir=tmp_path).run(
        lambda e: (rec(e), log(e)))
    log.close()
    assert runs.read_events(tmp_path) == list(rec)  # confusion and class counts come back as tuples


def test_a_half_written_line_and_unknown_events_are_skipped(run_folder):
    before = runs.read_events(run_folder)
    with (run_folder / runs.METRICS).open("a") as file:
        file.write('{"event": "Wormhole", "x": 1}\n{"event": "StepMetrics", "step": 9, "ep')
    assert runs.read_events(run_folder) == before


def test_summary_rename_and_the_finetune_stage(run_folder, tiny_config, toy_data):
    summary = runs.summarize(run_folder)
    epochs = [e for e in runs.read_events(run_folder) if isinstance(e, ev.EpochMetrics)]
    assert (summary.status, summary.epochs, summary.stages) == ("completed", 2, 1)
    assert summary.best_knn == max(e.knn_top1 for e in epochs) and summary.test_top1 is None
    assert summary.duration_s == pytest.approx(epochs[-1].elapsed_s)
    assert runs.rename(run_folder, "  mine   at 2 epochs ") == "mine at 2 epochs"
    assert runs.label_of(run_folder) == "mine at 2 epochs" and runs.class_names_of(run_folder) == toy_data.class_names
    runs.begin(run_folder, tiny_config, toy_data.class_names, label="ignored: a resume keeps the name")
    assert runs.label_of(run_folder) == "mine at 2 epochs"
    with pytest.raises(ValueError, match="empty"):
        runs.rename(run_folder, "   ")

    from core.plan.recipe import FINETUNE, recipe
    ft = recipe(tiny_config.with_overrides(epochs=2), stage=FINETUNE, init_from=str(run_folder / "last.pt"), epochs=1)
    assert execute(ft, out=run_folder / runs.FINETUNE_DIR, data=toy_data) == 0
    summary = runs.summarize(run_folder)
    assert (summary.stages, summary.epochs) == (2, 3) and summary.test_top1 is not None
    assert runs.find(run_folder.parent) == [run_folder]  # the stage is not a run of its own


def test_summaries_read_a_run_again_only_when_one_of_its_files_changed(run_folder, monkeypatch):
    read = []
    real = runs.summarize
    monkeypatch.setattr(runs, "summarize", lambda folder: read.append(folder) or real(folder))
    summaries = runs.Summaries()
    first = summaries.of(run_folder)
    assert summaries.of(run_folder) is first and len(read) == 1  # nothing changed: not read again
    runs.rename(run_folder, "renamed")  # run.json changes
    assert summaries.of(run_folder).label == "renamed" and len(read) == 2
    with (run_folder / runs.METRICS).open("a") as file:  # a run still going appends to its log
        file.write('{"event": "Wormhole"}\n')
    summaries.of(run_folder)
    (run_folder / runs.FINETUNE_DIR).mkdir()
    (run_folder / runs.FINETUNE_DIR / runs.METRICS).write_text("")  # a fine-tuning stage begins
    assert summaries.of(run_folder).stages == 2 and len(read) == 4


def test_delete_only_removes_a_run_inside_the_runs_folder(run_folder, tmp_path):
    root = run_folder.parent
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / runs.METRICS).write_text("")
    for target in (root, outside, root / ".." / "elsewhere", root / "missing"):
        with pytest.raises(ValueError):
            runs.delete(root, target)
    (root / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="not inside"):
        runs.delete(root, root / "link")
    assert outside.exists()
    runs.delete(root, run_folder)
    assert not run_folder.exists() and runs.find(root) == []


def test_metrics_csv_and_config_diff(run_folder, tiny_config, tmp_path):
    path = runs.metrics_csv([run_folder], tmp_path / "m.csv")
    rows = list(csv.DictReader(path.open()))
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(epochs) == 2 and len(steps) == 2 * 3 and {r["run"] for r in rows} == {"first"}  # 40 images / 16
    assert float(steps[0]["loss"]) > 0 and epochs[-1]["knn_top1"]
    other = tiny_config.with_overrides(lr=2e-3, model={"dim": 32})
    assert runs.config_diff(tiny_config, other) == [("lr", 1e-3, 2e-3), ("model.dim", 16, 32)]
    assert runs.config_diff(tiny_config, dataclasses.replace(tiny_config)) == []


def test_folders_without_a_readable_config_fall_back_to_the_checkpoint_or_none(run_folder, tmp_path):
    (run_folder / runs.CONFIG).unlink()
    assert runs.read_config(run_folder).epochs == 2  # from last.pt
    (run_folder / runs.CONFIG).write_text(json.dumps({"not": "a config"}))
    assert runs.read_config(run_folder) is None
