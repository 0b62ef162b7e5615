"""A run folder: what every run writes (the CLIs, the app, core.compare) and what a run table reads.

    <runs dir>/<name>/
        config.json     the run's config (core.config.to_json), written when it starts
        run.json        {"label": ..., "class_names": [...]}: its name (the app's rename writes it), its classes
        metrics.jsonl   one trainer event per line (core.reporting.JsonlLog)
        last.pt         the latest checkpoint (core.checkpoint)
        finetune/       a fine-tuning stage started from this run's checkpoint, in the same layout

A folder is a run when it holds a metrics.jsonl; its `finetune` subfolder is a stage of it, not a run.
Reading never trusts a folder: a half-written last line (a run still going, a crash) is skipped.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import typing
from dataclasses import dataclass
from pathlib import Path

from core import events as ev
from core.config import TrainConfig, from_json, to_json

CONFIG, META, METRICS, CHECKPOINT, FINETUNE_DIR = "config.json", "run.json", "metrics.jsonl", "last.pt", "finetune"
_EVENTS = {cls.__name__: cls for cls in typing.get_args(ev.Event)}
_TUPLES = ("class_counts", "confusion")  # JSON lists that the events hold as tuples


def begin(folder: str | Path, config: TrainConfig, class_names: tuple[str, ...] = (), label: str | None = None) -> Path:
    """Write a run's config (every start: a resume or a fixed budget rewrites it) and its class names;
    its label only when it has none yet (a resume keeps a rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG).write_text(to_json(config) + "\n", encoding="utf-8")
    meta = _meta(folder)
    _write_meta(folder, {"label": meta.get("label") or label or folder.name,
                         "class_names": list(class_names or meta.get("class_names", ()))})
    return folder


def _meta(folder: Path) -> dict:
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _write_meta(folder: Path, meta: dict) -> None:
    (folder / META).write_text(json.dumps(meta) + "\n", encoding="utf-8")


def read_events(folder: str | Path) -> list[ev.Event]:
    """The events a run folder's metrics.jsonl holds, as the trainer emitted them (embeddings are not
    logged, so there are no EmbeddingSnapshots); unreadable lines are skipped."""
    path = Path(folder) / METRICS
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            kind = _EVENTS[record.pop("event")]
            for key in _TUPLES:
                if isinstance(record.get(key), list):
                    record[key] = _tuples(record[key])
            events.append(kind(**record))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return events


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def read_config(folder: str | Path) -> TrainConfig | None:
    """The run's config from config.json, else from its checkpoint (runs written before config.json)."""
    folder = Path(folder)
    try:
        if (folder / CONFIG).is_file():
            return from_json((folder / CONFIG).read_text(encoding="utf-8"))
        if (folder / CHECKPOINT).is_file():
            from core.trainer.checkpoint import Checkpoint  # torch.load: only for folders without config.json
            return Checkpoint.load(folder / CHECKPOINT).config
    except (ValueError, TypeError, KeyError, OSError):
        return None
    return None


def label_of(folder: str | Path) -> str:
    return str(_meta(Path(folder)).get("label") or Path(folder).name)


def class_names_of(folder: str | Path) -> tuple[str, ...]:
    return tuple(str(name) for name in _meta(Path(folder)).get("class_names", ()))


def rename(folder: str | Path, label: str) -> str:
    """Give a run a new name (spaces collapsed); returns it."""
    label = " ".join(str(label).split())
    if not label:
        raise ValueError("a run's name cannot be empty")
    _write_meta(Path(folder), {**_meta(Path(folder)), "label": label})
    return label


def find(runs_dir: str | Path) -> list[Path]:
    """Every run folder under `runs_dir` (any depth: core.compare nests its arms), oldest first."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    folders = {path.parent for path in root.rglob(METRICS)}
    runs = [f for f in folders if not (f.name == FINETUNE_DIR and f.parent in folders)]
    return sorted(runs, key=lambda f: ((f / METRICS).stat().st_mtime_ns, str(f)))


def delete(runs_dir: str | Path, folder: str | Path) -> None:
    """Remove a run folder; refused unless it is a run strictly inside `runs_dir` (never the folder
    itself, never a path that leaves it through '..' or a link)."""
    root, target = Path(runs_dir).resolve(), Path(folder).resolve()
    if target == root or root not in target.parents:
        raise ValueError(f"{folder} is not inside the runs folder {runs_dir}: not deleted")
    if not (target / METRICS).is_file():
        raise ValueError(f"{folder} is not a run folder (no {METRICS}): not deleted")
    shutil.rmtree(target)


@dataclass(frozen=True)
class Summary:
    """One row of a run table."""

    folder: Path
    label: str
    config: TrainConfig | None
    status: str  # "completed", "stopped", "failed" or "running / unfinished"
    epochs: int  # epochs done, over all stages
    best_knn: float | None
    test_top1: float | None  # the class head's, at the last evaluation (a fine-tuning stage's if any)
    test_balanced: float | None
    duration_s: float
    stages: int  # 1, or 2 with a fine-tuning stage
    labels_per_class: int = 0  # the labels its last stage saw (0: every label)


def summarize(folder: str | Path) -> Summary:
    folder = Path(folder)
    stages = [folder] + ([folder / FINETUNE_DIR] if (folder / FINETUNE_DIR / METRICS).is_file() else [])
    events = [read_events(stage) for stage in stages]
    epochs = [e for stage in events for e in stage if isinstance(e, ev.EpochMetrics)]
    knns = [e.knn_top1 for e in epochs if e.knn_top1 is not None]
    heads = [e for e in epochs if e.test_top1 is not None]
    ends = [e for e in events[-1] if isinstance(e, (ev.Finished, ev.Failed))]
    status = "unfinished" if not ends else ("failed" if isinstance(ends[-1], ev.Failed) else ends[-1].reason)
    last = [max((e for e in stage if isinstance(e, ev.EpochMetrics)), key=lambda e: e.epoch, default=None)
            for stage in events]
    done = sum(e.epoch for e in last if e is not None)
    duration = sum(e.elapsed_s for e in last if e is not None)
    final = read_config(stages[-1])
    return Summary(folder, label_of(folder), read_config(folder), status, done,
                   max(knns) if knns else None, heads[-1].test_top1 if heads else None,
                   heads[-1].test_balanced if heads else None, duration, len(stages),
                   final.labels_per_class if final else 0)


class Summaries:
    """Run folders' summaries, each read again only when one of the files it reads has changed: a run
    table of many runs refreshes whenever any one of them starts, ends or is renamed."""

    def __init__(self):
        self._known: dict[Path, tuple[tuple, Summary]] = {}

    def of(self, folder: str | Path) -> Summary:
        folder = Path(folder)
        stamp = _stamp(folder)
        known = self._known.get(folder)
        if known is None or known[0] != stamp:
            known = self._known[folder] = (stamp, summarize(folder))
        return known[1]


def _stamp(folder: Path) -> tuple:
    """(name, mtime in ns, size) of every file a summary reads; a file that is not there counts too."""
    stamps = []
    for stage in (folder, folder / FINETUNE_DIR):
        for name in (CONFIG, META, METRICS):
            try:
                stat = (stage / name).stat()
            except OSError:
                stamps.append((str(stage / name), None, None))
                continue
            stamps.append((str(stage / name), stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


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


def metrics_csv(folders: list[Path], dest: str | Path) -> Path:
    """The step and epoch metrics of `folders` (and their fine-tuning stages) as one CSV, a row per
    step ("step") or evaluated epoch ("epoch"); the run column holds its label."""
    dest = Path(dest)
    with dest.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for folder in folders:
            label = label_of(folder)
            for stage, path in (("train", folder), ("finetune", folder / FINETUNE_DIR)):
                for event in read_events(path):
                    if isinstance(event, (ev.StepMetrics, ev.EpochMetrics)):
                        kind = "step" if isinstance(event, ev.StepMetrics) else "epoch"
                        writer.writerow({"run": label, "stage": stage, "kind": kind, **dataclasses.asdict(event)})
    return dest
