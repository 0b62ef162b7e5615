"""Run folders in the app: replayed into curves, a fine-tuning stage continuing them, and the table's rows."""
import dataclasses
import threading

import numpy as np
import pytest

from core.plan.pipeline import Pipeline
from core.plan.request import ONLY, Request
from core.runs.folder import RunFolder
from core.runs.table import summarize
from demo.saved_runs import TABLE_HEADERS, UNFINISHED, diff_rows, history_of, table_row
from tests.core.conftest import TINY_AUGMENT, TINY_MODEL, Recorder, make_splits


@pytest.fixture
def finetuned(tmp_path):
    from core.config import TrainConfig
    data = make_splits()
    config = TrainConfig(dataset="toy", model=TINY_MODEL, augment=TINY_AUGMENT, epochs=2, batch_size=16,
                         warmup_epochs=1, knn_k=5, eval_every=1, snapshot_every=0, checkpoint_every=1)
    run = RunFolder(tmp_path / "runs" / "a")
    pipeline = Pipeline.start(run, Request(config, "", ONLY), lambda c: data, label="a")
    pipeline.run(Recorder(), threading.Event())
    pipeline.finetune(epochs=1)
    pipeline.run(Recorder(), threading.Event())
    return run, config


def test_a_fine_tuned_runs_curves_continue_after_its_stage_marker(finetuned):
    folder, _ = finetuned
    view = history_of(folder, "a").view()
    assert view.status == "completed" and view.label == "a · pretraining → fine-tuning"
    assert view.class_names == ("c0", "c1", "c2", "c3")
    assert view.stages == (("fine-tuning", 2),) and list(view.epochs) == [1, 2, 3]
    assert np.all(np.diff(view.steps) == 1) and view.step == 3 * 3  # 40 images / 16: 3 steps an epoch
    assert len(view.top1) == 1 and view.checkpoint.endswith("finetune/last.pt")


def test_a_log_that_ends_mid_run_reads_as_ended_not_running(finetuned):
    folder, _ = finetuned
    (_, first), (_, second) = folder.stages()
    lines = first.log_path.read_text().splitlines()
    first.log_path.write_text("\n".join(line for line in lines if '"Finished"' not in line) + "\n")
    record = folder.record()
    folder.write_record({**record, "stages": record["stages"][:1]})
    view = history_of(folder, "a").view()
    assert view.status == "failed" and view.message == UNFINISHED


def test_the_table_row_and_the_settings_diff(finetuned):
    folder, config = finetuned
    row = dict(zip(TABLE_HEADERS, table_row("a", summarize(folder))))
    assert row["run"] == "a" and row["name"] == "a" and row["dataset"] == "toy"
    assert row["objective"] == "instance → fine-tuning" and row["length"] == "2 epochs"
    assert row["recipe"].startswith("14 px, patch 7") and row["status"] == "completed"
    assert row["best kNN"].endswith("%") and row["test top-1"].endswith("%")
    same = summarize(folder)
    assert diff_rows(same, same) == [["(no setting differs)", "", ""]]
    unknown = dataclasses.replace(same, config=None)
    assert diff_rows(same, unknown)[0][0] == "(config)"
