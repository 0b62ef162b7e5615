"""The run table's callbacks: what each action needs selected, and the delete that asks first."""
import gradio as gr
import pytest

from demo.workbench import Workbench


class Runs:
    """Stands in for the Session's run-table methods, recording what was asked."""

    def __init__(self):
        self.rows = [["run-1", "first"] + [""] * 9, ["run-2", "second"] + [""] * 9]
        self.calls = []

    def table(self):
        return [list(row) for row in self.rows]

    def rename(self, run_id, label):
        self.calls.append(("rename", run_id, label))
        return "renamed"

    def diff(self, a, b):
        self.calls.append(("diff", a, b))
        return [["lr", "0.001", "0.002"]]

    def delete(self, run_id):
        self.calls.append(("delete", run_id))
        self.rows = [row for row in self.rows if row[0] != run_id]
        return "deleted"

    def export_metrics(self, run_ids, dest):
        if not run_ids:
            raise LookupError("select the runs to export first")
        return dest / "m.csv"


@pytest.fixture
def bench(tmp_path, monkeypatch):
    monkeypatch.setattr(gr, "Info", lambda message: None)
    return Workbench(Runs(), tmp_path)


def test_rename_wants_one_run_and_diff_two(bench):
    with pytest.raises(gr.Error, match="exactly one"):
        bench.rename(["run-1", "run-2"], "x")
    with pytest.raises(gr.Error, match="exactly two"):
        bench.diff(["run-1"])
    table, selected = bench.rename(["run-1"], "new name")
    assert bench.session.calls == [("rename", "run-1", "new name")] and selected["value"] == ["run-1"]
    assert bench.diff(["run-1", "run-2"]) == [["lr", "0.001", "0.002"]]


def test_delete_asks_first_and_then_removes_only_the_selected(bench):
    with pytest.raises(gr.Error, match="Select the runs"):
        bench.ask_delete([])
    ask = bench.ask_delete(["run-2"])
    assert ask["visible"] and "run-2" in ask["value"] and not bench.session.calls  # nothing deleted yet
    table, selected, confirm = bench.delete(["run-2"])
    assert bench.session.calls == [("delete", "run-2")]
    assert selected["choices"] == ["run-1"] and selected["value"] == [] and confirm["visible"] is False


def test_export_needs_a_selection(bench, tmp_path):
    with pytest.raises(gr.Error, match="select the runs"):
        bench.export([])
    assert bench.export(["run-1"]) == str(tmp_path / "m.csv")
