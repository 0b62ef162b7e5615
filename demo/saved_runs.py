"""Runs on disk in the app: a run folder (core/runs/folder.py) replayed into a RunHistory, and the run table's rows.

The same folders the command lines, the pipeline and core.compare write, so the app shows their curves too: a
pipeline as one run, its stages continuing its curves as they did when it trained.
"""
from __future__ import annotations

from core import events as ev
from core.plan.recipe import STAGE_WORDS, describe, epochs_words
from core.runs.folder import RunFolder
from core.runs.table import Summary, config_diff
from core.trainer.budget import minutes_words
from demo.history import RunHistory

UNFINISHED = "this run's log ends without a finish: its process stopped (or is still running elsewhere)"
TABLE_HEADERS = ["run", "name", "dataset", "objective", "recipe", "length", "best kNN", "test top-1",
                 "balanced acc.", "minutes", "status"]


def history_of(run: RunFolder, run_id: str) -> RunHistory:
    """The run's curves from its stages' logs, the plan it said, and why each later stage followed."""
    history = RunHistory(run_id, run.label, run.class_names)
    record = run.record() or {}
    if record.get("words"):
        history(ev.Planned(*record["words"]))
    entries = record.get("stages", [])
    for index, (name, stage) in enumerate(run.stages()):
        words = entries[index].get("words", "") if index < len(entries) else ""
        history(ev.StageStarted(name, index, str(stage.path), words))
        for event in stage.events():
            history(event)
    if history.view().status == "running":  # its log ends mid-run: the process that wrote it is gone
        history(ev.Failed(UNFINISHED, 0, 0, None))
    return history


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def length(summary: Summary) -> str:
    config = summary.config
    if config is None:
        return epochs_words(summary.epochs)
    asked = minutes_words(config.minutes) if config.minutes else epochs_words(config.epochs)
    return f"{asked} ({summary.epochs} done)" if summary.status != "completed" else asked


def table_row(run_id: str, summary: Summary) -> list:
    config = summary.config
    later = [STAGE_WORDS.get(stage, stage) for stage in summary.stages[1:]]
    few = [f"{summary.labels_per_class} labels per class"] if summary.labels_per_class else []
    objective = "" if config is None else " → ".join([config.objective, *later]) + (f" ({few[0]})" if few else "")
    recipe = "" if config is None else describe(config, "", length=False).removeprefix(" recipe: ")
    return [run_id, summary.label, "" if config is None else config.dataset, objective, recipe, length(summary),
            _percent(summary.best_knn), _percent(summary.test_top1), _percent(summary.test_balanced),
            f"{summary.duration_s / 60:.1f}", summary.status]


def diff_rows(a: Summary, b: Summary) -> list[list[str]]:
    """The settings in which two runs differ, as (setting, a, b) rows; one row saying so when none."""
    if a.config is None or b.config is None:
        return [["(config)", "unknown" if a.config is None else "known", "unknown" if b.config is None else "known"]]
    rows = [[key, repr(x), repr(y)] for key, x, y in config_diff(a.config, b.config)]
    return rows or [["(no setting differs)", "", ""]]
