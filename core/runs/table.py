"""A run table: one summary row per run folder (core/runs/folder.py), the settings two runs differ in, and
their metrics as one CSV. What the app's run table and its exports read."""
from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from core import events as ev
from core.config import TrainConfig
from core.runs.folder import RunFolder


@dataclass(frozen=True)
class Summary:
    """One row of a run table."""

    run: RunFolder
    label: str
    config: TrainConfig | None  # the first stage's
    status: str  # the last stage's end: "completed", "stopped", "handed over", "failed" or "unfinished"
    epochs: int  # epochs done, over all stages
    best_knn: float | None
    test_top1: float | None  # the class head's, at the last evaluation (the last stage that has one)
    test_balanced: float | None
    duration_s: float
    stages: tuple[str, ...]  # what each stage trains, in order ("" for a run of one stage)
    labels_per_class: int = 0  # the labels its last stage saw (0: every label)


def summarize(run: RunFolder) -> Summary:
    stages = run.stages()
    events = [stage.events() for _, stage in stages]
    epochs = [e for stage in events for e in stage if isinstance(e, ev.EpochMetrics)]
    knns = [e.knn_top1 for e in epochs if e.knn_top1 is not None]
    heads = [e for e in epochs if e.test_top1 is not None]
    ends = [e for e in (events[-1] if events else []) if isinstance(e, (ev.Finished, ev.Failed))]
    status = "unfinished" if not ends else ("failed" if isinstance(ends[-1], ev.Failed) else ends[-1].reason)
    last = [max((e for e in stage if isinstance(e, ev.EpochMetrics)), key=lambda e: e.epoch, default=None)
            for stage in events]
    configs = [stage.config() for _, stage in stages]
    return Summary(run, run.label, configs[0] if configs else None, status, sum(e.epoch for e in last if e),
                   max(knns) if knns else None, heads[-1].test_top1 if heads else None,
                   heads[-1].test_balanced if heads else None, sum(e.elapsed_s for e in last if e),
                   tuple(name for name, _ in stages), configs[-1].labels_per_class if configs and configs[-1] else 0)


class Summaries:
    """Runs' summaries, each read again only when one of the files it reads has changed: a run table of many
    runs refreshes whenever any one of them starts, ends or is renamed."""

    def __init__(self):
        self._known: dict[Path, tuple[tuple, Summary]] = {}

    def of(self, run: RunFolder) -> Summary:
        stamp = run.stamp()
        known = self._known.get(run.path)
        if known is None or known[0] != stamp:
            known = self._known[run.path] = (stamp, summarize(run))
        return known[1]


def config_diff(a: TrainConfig, b: TrainConfig) -> list[tuple[str, object, object]]:
    """(field, a's value, b's value) for every field that differs, nested fields dotted (model.dim)."""
    flat_a, flat_b = _flatten(dataclasses.asdict(a)), _flatten(dataclasses.asdict(b))
    return [(key, flat_a.get(key), flat_b.get(key)) for key in sorted(flat_a.keys() | flat_b.keys())
            if flat_a.get(key) != flat_b.get(key)]


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


CSV_COLUMNS = ("run", "stage", "kind", "step", "epoch", "loss", "lr", "knn_top1", "knn_balanced", "test_top1",
               "test_balanced", "elapsed_s")


def metrics_csv(runs: list[RunFolder], dest: str | Path) -> Path:
    """The step and epoch metrics of `runs` (every stage) as one CSV, a row per step ("step") or evaluated
    epoch ("epoch"); the run column holds its label, the stage column what the stage trains."""
    dest = Path(dest)
    with dest.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for run in runs:
            for name, stage in run.stages():
                for event in stage.events():
                    if isinstance(event, (ev.StepMetrics, ev.EpochMetrics)):
                        kind = "step" if isinstance(event, ev.StepMetrics) else "epoch"
                        writer.writerow({"run": run.label, "stage": name or "train", "kind": kind,
                                         **dataclasses.asdict(event)})
    return dest
