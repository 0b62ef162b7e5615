"""The run table: a summary per run, read again only when its files change; settings diffs; metrics as CSV."""
import csv
import dataclasses
import threading

import pytest

from core import events as ev
from core.plan.recipe import FINETUNE, recipe
from core.plan.stage import run_stage
from core.runs.folder import RunFolder, StageFolder
from core.runs.table import Summaries, config_diff, metrics_csv, summarize
from tests.core.conftest import Recorder


@pytest.fixture
def run(tiny_config, toy_data, tmp_path):
    folder = tmp_path / "runs" / "first"
    run_stage(tiny_config.with_overrides(epochs=2), toy_data, StageFolder(folder), Recorder(), threading.Event())
    return RunFolder(folder)


def test_a_summary_reads_every_stage(run, tiny_config, toy_data):
    summary = summarize(run)
    epochs = [e for e in run.stages()[0][1].events() if isinstance(e, ev.EpochMetrics)]
    assert (summary.status, summary.epochs, summary.stages) == ("completed", 2, ("",))
    assert summary.best_knn == max(e.knn_top1 for e in epochs) and summary.test_top1 is None
    assert summary.duration_s == pytest.approx(epochs[-1].elapsed_s)
    tune = recipe(tiny_config.with_overrides(epochs=2), stage=FINETUNE, init_from=str(run.path / "last.pt"), epochs=1)
    run_stage(tune, toy_data, StageFolder(run.path / "finetune"), Recorder(), threading.Event())
    summary = summarize(run)
    assert (summary.stages, summary.epochs) == (("", "finetune"), 3) and summary.test_top1 is not None


def test_summaries_read_a_run_again_only_when_one_of_its_files_changed(run, monkeypatch):
    from core.runs import table
    read = []
    monkeypatch.setattr(table, "summarize", lambda folder: read.append(folder) or summarize(folder))
    summaries = Summaries()
    first = summaries.of(run)
    assert summaries.of(run) is first and len(read) == 1  # nothing changed: not read again
    run.rename("renamed")  # run.json changes
    assert summaries.of(run).label == "renamed" and len(read) == 2
    with run.stages()[0][1].log_path.open("a") as file:  # a run still going appends to its log
        file.write('{"event": "Wormhole"}\n')
    summaries.of(run)
    assert len(read) == 3


def test_metrics_csv_and_config_diff(run, tiny_config, tmp_path):
    path = metrics_csv([run], tmp_path / "m.csv")
    rows = list(csv.DictReader(path.open()))
    steps = [r for r in rows if r["kind"] == "step"]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(epochs) == 2 and len(steps) == 2 * 3 and {r["run"] for r in rows} == {"first"}  # 40 images / 16
    assert float(steps[0]["loss"]) > 0 and epochs[-1]["knn_top1"]
    other = tiny_config.with_overrides(lr=2e-3, model={"dim": 32})
    assert config_diff(tiny_config, other) == [("lr", 1e-3, 2e-3), ("model.dim", 16, 32)]
    assert config_diff(tiny_config, dataclasses.replace(tiny_config)) == []
