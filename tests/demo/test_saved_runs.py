"""Run folders in the app: replayed into curves, a fine-tuning stage continuing them, and the table's rows."""
import dataclasses

import numpy as np
import pytest

from core.plan.recipe import FINETUNE, recipe
from core.runs import folder as runs
from core.train import execute
from demo.saved_runs import TABLE_HEADERS, UNFINISHED, diff_rows, history_of, table_row
from tests.core.conftest import TINY_AUGMENT, TINY_MODEL, make_splits


@pytest.fixture
def finetuned(tmp_path):
    from core.config import TrainConfig
    data = make_splits()
    config = TrainConfig(dataset="toy", model=TINY_MODEL, augment=TINY_AUGMENT, epochs=2, batch_size=16,
                         warmup_epochs=1, knn_k=5, eval_every=1, snapshot_every=0, checkpoint_every=1)
    folder = tmp_path / "runs" / "a"
    assert execute(config, out=folder, data=data) == 0
    ft = recipe(config, stage=FINETUNE, init_from=str(folder / "last.pt"), epochs=1)
    assert execute(ft, out=folder / runs.FINETUNE_DIR, data=data) == 0
    return folder, config


def test_a_fine_tuned_runs_curves_continue_after_its_stage_marker(finetuned):
    folder, _ = finetuned
    view = history_of(folder, "a").view()
    assert view.status == "completed" and view.class_names == ("c0", "c1", "c2", "c3")
    assert view.stages == (("fine-tuning", 2),) and list(view.epochs) == [1, 2, 3]
    assert np.all(np.diff(view.steps) == 1) and view.step == 3 * 3  # 40 images / 16: 3 steps an epoch
    assert len(view.top1) == 1 and view.checkpoint.endswith("finetune/last.pt")


def test_a_log_that_ends_mid_run_reads_as_ended_not_running(finetuned):
    folder, _ = finetuned
    lines = (folder / runs.METRICS).read_text().splitlines()
    (folder / runs.METRICS).write_text("\n".join(line for line in lines if '"Finished"' not in line) + "\n")
    (folder / runs.FINETUNE_DIR / runs.METRICS).unlink()
    view = history_of(folder, "a").view()
    assert view.status == "failed" and view.message == UNFINISHED


def test_the_table_row_and_the_settings_diff(finetuned):
    folder, config = finetuned
    row = dict(zip(TABLE_HEADERS, table_row("a", runs.summarize(folder))))
    assert row["run"] == "a" and row["name"] == "a" and row["dataset"] == "toy"
    assert row["objective"] == "instance (fine-tuned)" and row["length"] == "2 epochs"
    assert row["recipe"].startswith("14 px, patch 7") and row["status"] == "completed"
    assert row["best kNN"].endswith("%") and row["test top-1"].endswith("%")
    same = runs.summarize(folder)
    assert diff_rows(same, same) == [["(no setting differs)", "", ""]]
    unknown = dataclasses.replace(same, config=None)
    assert diff_rows(same, unknown)[0][0] == "(config)"
