"""The run folder: the one module that knows its file names, and writes and reads them.

A *stage folder* is what one trainer writes (core/plan/stage.py runs it):

    <stage>/
        config.json     its config (core.config.to_json), rewritten at every start (a budget fixed into epochs)
        metrics.jsonl   one event per line (core/runs/log.py), appended by every start
        last.pt         the latest checkpoint (core/trainer/checkpoint.py)
        best.pt         a hand-over run's backbone at its best held-out epoch, weights only
        stage.json      core.compare's measures of the finished stage

A *run* is a stage folder of its own (`core.train`, `core.finetune`: one stage) or a pipeline of stages:

    <run>/
        run.json        {"label": ..., "class_names": [...]}: its name (the app's rename writes it), its classes
        pipeline.json   the pipeline's record (core/plan/pipeline.py): its request, plan, and its stages in order,
                        each with its folder relative to the run ("pretrain", "finetune", "supervised", or one
                        shared with other runs, as core.compare's arms share a pretraining) and how it ended
        model.pt        the model file (core/serve/model_file.py), written once the last stage has finished
        <stage>/ ...

A run of one stage writes its model file beside its checkpoints too.

core.compare adds `result.json` (an arm's measures) to a run, and `calibration.json` and `results.json` to its
output folder. A run written before pipelines had records (a stage folder with a `finetune/` stage folder
inside, as the app's Fine-tune wrote it) reads as a run of those two stages.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from core import events as ev
from core.config import TrainConfig, from_json, to_json
from core.runs.log import JsonlLog, read_events

CONFIG, META, LOG, RECORD = "config.json", "run.json", "metrics.jsonl", "pipeline.json"
LAST, BEST, MODEL = "last.pt", "best.pt", "model.pt"
STAGE_RESULT, ARM_RESULT, CALIBRATION, REPORT = "stage.json", "result.json", "calibration.json", "results.json"
LEGACY_FINETUNE = "finetune"  # the second stage of a run written before records (see the module's docstring)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: Path, value: dict, indent: int | None = None) -> Path:
    """Write through a temporary file and an atomic rename: a reader (the app's run table, a resume) never
    sees half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=indent) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


class StageFolder:
    """One trainer's files (see the module's docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __eq__(self, other) -> bool:
        return isinstance(other, StageFolder) and self.path == other.path

    def __repr__(self) -> str:
        return f"StageFolder({str(self.path)!r})"

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def log_path(self) -> Path:
        return self.path / LOG

    def begin(self, config: TrainConfig) -> JsonlLog:
        """Write the config a start trains and open the log for appending (a resume continues it)."""
        self.write_config(config)
        return JsonlLog(self.log_path)

    def write_config(self, config: TrainConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / CONFIG).write_text(to_json(config) + "\n", encoding="utf-8")

    def config(self) -> TrainConfig | None:
        """The stage's config (None when it has none this version can read)."""
        try:
            return from_json((self.path / CONFIG).read_text(encoding="utf-8"))
        except (ValueError, TypeError, KeyError, OSError):
            return None

    def events(self) -> list[ev.Event]:
        return read_events(self.log_path)

    def ended(self) -> ev.Finished | ev.Failed | None:
        """How the stage's last start ended, from its log; None when it has not (or is still going)."""
        events = self.events()
        starts = [i for i, e in enumerate(events) if isinstance(e, ev.RunStarted)]
        after = events[starts[-1]:] if starts else events
        return next((e for e in reversed(after) if isinstance(e, (ev.Finished, ev.Failed))), None)

    def started(self) -> bool:
        return self.log_path.is_file()

    def clear_log(self) -> None:
        """A stage that starts over (it left no checkpoint) begins a new log: one curve, not two attempts."""
        self.log_path.unlink(missing_ok=True)

    def result(self) -> dict | None:
        return _read_json(self.path / STAGE_RESULT)

    def write_result(self, result: dict) -> None:
        _write_json(self.path / STAGE_RESULT, result)

    def stamp(self) -> tuple:
        return tuple(_stamp(self.path / name) for name in (CONFIG, LOG))


class RunFolder:
    """A run (see the module's docstring): its name and classes, its pipeline record, its stages."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __eq__(self, other) -> bool:
        return isinstance(other, RunFolder) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- name and classes ----------------------------------------------------------------------
    def _meta(self) -> dict:
        return _read_json(self.path / META) or {}

    @property
    def label(self) -> str:
        return str(self._meta().get("label") or self.path.name)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(name) for name in self._meta().get("class_names", ()))

    def name(self, label: str | None, class_names: tuple[str, ...] = ()) -> None:
        """Record the run's classes, and its label when it has none yet (a resume keeps a rename)."""
        meta = self._meta()
        _write_json(self.path / META, {"label": meta.get("label") or label or self.path.name,
                                       "class_names": list(class_names or meta.get("class_names", ()))})

    def rename(self, label: str) -> str:
        """Give the run a new name (spaces collapsed); returns it."""
        label = " ".join(str(label).split())
        if not label:
            raise ValueError("a run's name cannot be empty")
        _write_json(self.path / META, {**self._meta(), "label": label})
        return label

    # -- the pipeline's record -----------------------------------------------------------------
    @property
    def is_pipeline(self) -> bool:
        return (self.path / RECORD).is_file()

    def record(self) -> dict | None:
        return _read_json(self.path / RECORD)

    def write_record(self, record: dict) -> None:
        _write_json(self.path / RECORD, record, indent=1)

    def resolve(self, relative: str) -> Path:
        """A path the record holds, relative to the run (so a moved run still reads)."""
        return Path(os.path.normpath(self.path / relative))

    def relative(self, path: Path) -> str:
        return os.path.relpath(path, self.path)

    def stage_folder(self, relative: str) -> StageFolder:
        return StageFolder(self.resolve(relative))

    def stages(self) -> list[tuple[str, StageFolder]]:
        """(what it trains, its folder) of every stage, in order; a run of one stage is its own folder."""
        record = self.record()
        if record is not None:
            return [(entry["stage"], self.stage_folder(entry["folder"])) for entry in record.get("stages", ())]
        stages = [("", StageFolder(self.path))]
        legacy = StageFolder(self.path / LEGACY_FINETUNE)
        return stages + ([("finetune", legacy)] if legacy.started() else [])

    @property
    def model_path(self) -> Path:
        """Where the run's model file goes (core/serve/model_file.py)."""
        return self.path / MODEL

    def model(self) -> Path | None:
        """What to classify with: the run's model file once it has one, else its last stage's latest checkpoint."""
        if self.model_path.is_file():
            return self.model_path
        stages = self.stages()
        last = stages[-1][1].last if stages else None
        return last if last is not None and last.is_file() else None

    def stamp(self) -> tuple:
        """What a summary of the run reads, stamped (name, time, size): it changed when this did."""
        own = tuple(_stamp(self.path / name) for name in (META, RECORD))
        return own + tuple(part for _, stage in self.stages() for part in stage.stamp())

    # -- core.compare's arm result -------------------------------------------------------------
    def result(self) -> dict | None:
        return _read_json(self.path / ARM_RESULT)

    def write_result(self, result: dict) -> None:
        _write_json(self.path / ARM_RESULT, result)


def _stamp(path: Path) -> tuple:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), None, None)
    return (str(path), stat.st_mtime_ns, stat.st_size)


def find(root: str | Path) -> list[RunFolder]:
    """Every run under `root` (any depth: core.compare nests its arms), least recently written first. A
    pipeline's stages, and the legacy fine-tuning stage of a run, are parts of a run, not runs."""
    root = Path(root)
    if not root.is_dir():
        return []
    pipelines = [RunFolder(path.parent) for path in root.rglob(RECORD)]
    parts = {stage.path for run in pipelines for _, stage in run.stages()}
    logged = {path.parent for path in root.rglob(LOG)}
    parts |= {folder for folder in logged if folder.name == LEGACY_FINETUNE and folder.parent in logged}
    runs = pipelines + [RunFolder(folder) for folder in logged - parts - {run.path for run in pipelines}]
    return sorted(runs, key=lambda run: (_latest(run), str(run.path)))


def _latest(run: RunFolder) -> int:
    return max((stamp[1] or 0 for stamp in run.stamp()), default=0)


def run_of(file: Path) -> RunFolder | None:
    """The run that holds `file` (a checkpoint in one of its stage folders, or its model file), or None when it
    lies elsewhere."""
    folder = file.parent
    for candidate in (RunFolder(folder.parent), RunFolder(folder)):
        holds = candidate.is_pipeline or StageFolder(candidate.path).started()
        if holds and (candidate.path == folder or any(stage.path == folder for _, stage in candidate.stages())):
            return candidate
    return None


def delete(root: str | Path, run: RunFolder) -> None:
    """Remove a run's folder; refused unless it is a run strictly inside `root` (never the folder itself, never
    a path that leaves it through '..' or a link)."""
    home, target = Path(root).resolve(), run.path.resolve()
    if target == home or home not in target.parents:
        raise ValueError(f"{run.path} is not inside the runs folder {root}: not deleted")
    if not (RunFolder(target).is_pipeline or StageFolder(target).started()):
        raise ValueError(f"{run.path} is not a run folder (no {LOG} or {RECORD}): not deleted")
    shutil.rmtree(target)
