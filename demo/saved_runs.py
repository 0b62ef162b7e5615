"""Runs on disk in the app: a run folder (core.runs) replayed into a RunHistory, and the run table's rows.

The same folders the command lines and core.compare write, so the app shows their curves too.
"""
from __future__ import annotations

from pathlib import Path

from core import events as ev
from core.plan.auto import describe, epochs
from core.runs import folder as runs
from demo.history import RunHistory, shift

STAGE_FINETUNE = "fine-tuning"
STAGE_SCRATCH = "training from scratch"  # a pipeline's second stage when pretraining did not help (core/stages.py)
UNFINISHED = "this run's log ends without a finish: its process stopped (or is still running elsewhere)"
TABLE_HEADERS = ["run", "name", "dataset", "objective", "recipe", "length", "best kNN", "test top-1",
                 "balanced acc.", "minutes", "status"]


def history_of(folder: Path, run_id: str) -> RunHistory:
    """The run's curves from its metrics.jsonl, a second stage (fine-tuning, or a pipeline's training from
    scratch) continuing them as in the app."""
    history = RunHistory(run_id, runs.label_of(folder), runs.class_names_of(folder))
    for event in runs.read_events(folder):
        history(event)
    stage = folder / runs.FINETUNE_DIR
    if (stage / runs.METRICS).is_file():
        config = runs.read_config(stage)
        offset = history.begin_stage(STAGE_SCRATCH if config is not None and not config.init_from else STAGE_FINETUNE)
        for event in runs.read_events(stage):
            history(shift(event, *offset))
    if history.view().status == "running":  # its log ends mid-run: the process that wrote it is gone
        history(ev.Failed(UNFINISHED, 0, 0, None))
    return history


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def length(summary: runs.Summary) -> str:
    config = summary.config
    if config is None:
        return epochs(summary.epochs)
    asked = f"{config.minutes:g} min" if config.minutes else epochs(config.epochs)
    return f"{asked} ({summary.epochs} done)" if summary.status != "completed" else asked


def table_row(run_id: str, summary: runs.Summary) -> list:
    config = summary.config
    notes = (["fine-tuned"] if summary.stages > 1 else []) + (
        [f"{summary.labels_per_class} labels per class"] if summary.labels_per_class else [])
    objective = "" if config is None else config.objective + (f" ({', '.join(notes)})" if notes else "")
    recipe = "" if config is None else describe(config, "", length=False).removeprefix(" recipe: ")
    return [run_id, summary.label, "" if config is None else config.dataset, objective, recipe, length(summary),
            _percent(summary.best_knn), _percent(summary.test_top1), _percent(summary.test_balanced),
            f"{summary.duration_s / 60:.1f}", summary.status]


def diff_rows(a: runs.Summary, b: runs.Summary) -> list[list[str]]:
    """The settings in which two runs differ, as (setting, a, b) rows; one row saying so when none."""
    if a.config is None or b.config is None:
        return [["(config)", "unknown" if a.config is None else "known", "unknown" if b.config is None else "known"]]
    rows = [[key, repr(x), repr(y)] for key, x, y in runs.config_diff(a.config, b.config)]
    return rows or [["(no setting differs)", "", ""]]
