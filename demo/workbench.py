"""The app's run table: every run in the runs folder (the app's, the command lines', core.compare's),
to overlay on the curves, rename, compare settings, export, open or delete. Wiring only: the Session
reads and changes the run folders (core.runs)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from demo import text
from demo.saved_runs import TABLE_HEADERS
from demo.session import Session

DIFF_HEADERS = ["setting", "first selected", "second selected"]
# Shares of the table's width (TABLE_HEADERS order): the recipe wraps, the figures stay on one line.
COLUMN_WIDTHS = ["8%", "14%", "8%", "9%", "22%", "9%", "6%", "6%", "7%", "5%", "6%"]


class Workbench:
    """Callbacks on the run table; the selection (run ids) is each tab's own CheckboxGroup value."""

    def __init__(self, session: Session, export_dir: Path):
        self.session = session
        self.export_dir = export_dir

    def rows(self) -> tuple[list[list], list[str]]:
        """The table's rows and the run ids the selection can hold."""
        rows = self.session.table()
        return rows, [row[0] for row in rows]

    def refresh(self, selected):
        rows, ids = self.rows()
        return gr.update(value=rows or None), gr.update(choices=ids, value=[r for r in selected or [] if r in ids])

    @staticmethod
    def _one(selected, action: str) -> str:
        if len(selected or []) != 1:
            raise gr.Error(text.SELECT_ONE.format(action=action))
        return selected[0]

    def rename(self, selected, name):
        try:
            gr.Info(self.session.rename(self._one(selected, "rename"), name or ""))
        except (LookupError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return self.refresh(selected)

    def diff(self, selected):
        if len(selected or []) != 2:
            raise gr.Error(text.SELECT_TWO)
        try:
            return self.session.diff(*selected)
        except LookupError as exc:
            raise gr.Error(str(exc)) from None

    def export(self, selected):
        try:
            return str(self.session.export_metrics(list(selected or []), self.export_dir))
        except LookupError as exc:
            raise gr.Error(str(exc)) from None

    def open(self, selected):
        try:
            gr.Info(self.session.open(self._one(selected, "open")))
        except (LookupError, ValueError, RuntimeError, OSError) as exc:
            raise gr.Error(str(exc)) from None

    @staticmethod
    def ask_delete(selected):
        if not selected:
            raise gr.Error(text.SELECT_SOME.format(action="delete"))
        return gr.update(value=text.CONFIRM_DELETE.format(runs=", ".join(selected)), visible=True)

    def delete(self, selected):
        for run_id in selected or []:
            try:
                gr.Info(self.session.delete(run_id))
            except (LookupError, ValueError, RuntimeError, OSError) as exc:
                raise gr.Error(str(exc)) from None
        table, choices = self.refresh([])
        return table, choices, gr.update(visible=False)


def runs_panel(bench: Workbench) -> dict:
    """The run table and its actions; returns the components the timer and the curves read."""
    rows, ids = bench.rows()
    with gr.Accordion(text.RUNS, open=True):
        table = gr.Dataframe(rows or None, headers=TABLE_HEADERS, interactive=False, wrap=True,
                             column_widths=COLUMN_WIDTHS, elem_id="run-table")
        selected = gr.CheckboxGroup(ids, value=[], label=text.LABEL_SELECTED, elem_id="run-selection")
        with gr.Row():
            refresh = gr.Button(text.BUTTON_REFRESH, size="sm")
            open_run = gr.Button(text.BUTTON_OPEN, size="sm", elem_id="open-run")
            export = gr.Button(text.BUTTON_EXPORT_METRICS, size="sm", elem_id="export-metrics")
            delete = gr.Button(text.BUTTON_DELETE, size="sm", variant="stop", elem_id="delete-run")
            confirm = gr.Button(visible=False, size="sm", variant="stop", elem_id="confirm-delete")
        with gr.Row():
            name = gr.Textbox(label=text.LABEL_RENAME, scale=3, elem_id="rename-to")
            rename = gr.Button(text.BUTTON_RENAME, size="sm", scale=1, elem_id="rename")
            diff = gr.Button(text.BUTTON_DIFF, size="sm", scale=1, elem_id="diff")
        exported = gr.File(label=text.LABEL_EXPORTED, interactive=False, elem_id="exported-metrics")
        differences = gr.Dataframe(headers=DIFF_HEADERS, interactive=False, label=text.LABEL_DIFF, elem_id="diff-table")
    refresh.click(bench.refresh, selected, [table, selected])
    rename.click(bench.rename, [selected, name], [table, selected])
    diff.click(bench.diff, selected, differences)
    export.click(bench.export, selected, exported)
    open_run.click(bench.open, selected, None, concurrency_id="load", concurrency_limit=1)
    delete.click(bench.ask_delete, selected, confirm)
    confirm.click(bench.delete, selected, [table, selected, confirm])
    return {"runs": table, "selected": selected}
