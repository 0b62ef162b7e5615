"""A run in the app and its training thread: plan it (demo/planning.py), load its data, train it, and route
its events to its history, its log and the publisher (demo/publisher.py); a pipeline's second stage
follows its first in the same thread. Failures end up in the run's history, never in a UI callback."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from core import events as ev
from core.config import TrainConfig
from core.data.cache import DatasetCache
from core.data.splits import DataSplits
from core.runs import folder as runs
from core.runs.log import JsonlLog
from core.trainer.loop import Trainer
from demo import planning
from demo.history import RunHistory, shift
from demo.publisher import Publisher


@dataclass
class Run:
    """A run the app lists: its history and config, and the stage now training (its folder, data, thread)."""

    history: RunHistory
    config: TrainConfig
    out_dir: Path  # where the stage now training writes (a fine-tuning stage: folder / "finetune")
    folder: Path  # the run folder (core.runs)
    data: DataSplits | None = None
    thread: threading.Thread | None = None
    stop: threading.Event | None = None
    offset: tuple[int, int] = (0, 0)  # (steps, epochs) of earlier stages, added to this stage's events
    auto_budget: tuple[int | None, float] | None = None  # (epochs, minutes) the auto recipe is still to fit
    pipeline: planning.Pipeline | None = None  # until its second stage starts: a resumed first stage goes on

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


def launch(run: Run, datasets: DatasetCache, publisher: Publisher, resume_from: str | None) -> None:
    """Train `run` in a new thread (from `resume_from`'s checkpoint when given)."""
    run.stop = threading.Event()
    run.thread = threading.Thread(target=_train, args=(run, datasets, publisher, resume_from),
                                  name=f"vit2040-{run.history.run_id}", daemon=True)
    run.thread.start()


def _train(run: Run, datasets: DatasetCache, publisher: Publisher, resume_from: str | None) -> None:
    """Training thread: plan, load data, train, route events; a pipeline's second stage follows its
    first. Failures end up in the run's history."""
    try:
        pipeline = run.pipeline
        if pipeline is not None and resume_from is None:
            planning.plan_pipeline(datasets, run, pipeline)
        elif pipeline is not None:
            pipeline.resume()
        elif run.auto_budget is not None:
            planning.fit_auto(datasets, run)
        done = _train_stage(run, datasets, publisher, resume_from)
        if pipeline is not None and planning.next_stage(run, pipeline, done):
            run.pipeline = None  # the second stage is the last: resuming it continues it only
            _train_stage(run, datasets, publisher, None)
        elif pipeline is not None:
            pipeline.pause()  # stopped or failed: Resume continues the stage, then the pipeline
    except Exception as exc:  # planning failed: shown to the person in the status line
        run.history(ev.Failed(f"{exc.__class__.__name__}: {exc}", 0, 0, None))


def _train_stage(run: Run, datasets: DatasetCache, publisher: Publisher, resume_from: str | None) -> ev.Event:
    """Train the run's current stage; returns its last event (Finished or Failed)."""
    log: JsonlLog | None = None

    def emit(event: ev.Event) -> None:
        log(event)  # the stage's own numbering, as the command line logs it
        event = shift(event, *run.offset)
        run.history(event)
        if isinstance(event, ev.EmbeddingSnapshot):
            publisher.snapshot(run.history, run.config, run.data.train, event)

    try:
        run.data = datasets.get(run.config)
        run.history.set_class_names(run.data.class_names)
        trainer = Trainer(run.config, run.data, out_dir=run.out_dir, resume_from=resume_from)
        runs.begin(run.out_dir, run.config, run.data.class_names, label=run.history.label)
        log = JsonlLog(run.out_dir / runs.METRICS)
        try:
            return trainer.run(emit, run.stop)
        finally:  # a budget fixed during the run is the config a resume or a fine-tune continues
            run.config = trainer.config
            runs.begin(run.out_dir, run.config, run.data.class_names)
    except Exception as exc:  # shown to the person in the status line, not lost in a log
        failed = ev.Failed(f"{exc.__class__.__name__}: {exc}", 0, 0, None)
        run.history(failed)
        if log is not None:
            log(failed)
        return failed
    finally:
        if log is not None:
            log.close()
