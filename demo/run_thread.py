"""A run in the app and its training thread: the pipeline (core/plan/pipeline.py) runs there, its events go to
the run's history and its snapshots to the publisher (demo/publisher.py). Failures end up in the run's
history, never in a UI callback."""
from __future__ import annotations

import threading
from dataclasses import dataclass

from core import events as ev
from core.config import TrainConfig
from core.data.splits import DataSplits
from core.plan.pipeline import Pipeline
from core.runs.folder import RunFolder
from demo.history import RunHistory
from demo.publisher import Publisher


@dataclass
class Run:
    """A run the app lists: its history and folder, and, while it trains or once it has, its pipeline (or, for
    a loaded checkpoint, the config and data it was published with)."""

    history: RunHistory
    folder: RunFolder
    pipeline: Pipeline | None = None
    loaded: tuple[TrainConfig, DataSplits] | None = None
    thread: threading.Thread | None = None
    stop: threading.Event | None = None

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def config(self) -> TrainConfig | None:
        """The config of the stage now training (or last trained); a budget's minutes are fixed once it is."""
        if self.pipeline is not None and self.pipeline.config is not None:
            return self.pipeline.config
        return self.loaded[0] if self.loaded else None

    @property
    def data(self) -> DataSplits | None:
        if self.pipeline is not None and self.pipeline.data is not None:
            return self.pipeline.data
        return self.loaded[1] if self.loaded else None


def launch(run: Run, publisher: Publisher) -> None:
    """Run `run.pipeline` in a new thread: its next stage, or the one it stopped in, and every one after."""
    run.stop = threading.Event()
    run.thread = threading.Thread(target=_train, args=(run, publisher), name=f"vit2040-{run.history.run_id}",
                                  daemon=True)
    run.thread.start()


def _train(run: Run, publisher: Publisher) -> None:
    def emit(event: ev.Event) -> None:
        run.history(event)
        if isinstance(event, ev.RunStarted):  # the stage's data has loaded
            run.history.set_class_names(run.data.class_names)
        if isinstance(event, ev.EmbeddingSnapshot):
            publisher.snapshot(run.history, run.config, run.data.train, run.history.shifted(event))

    try:
        run.pipeline.run(emit, run.stop)
    except Exception as exc:  # a failure the pipeline does not say itself: shown in the status line, not lost
        run.history(ev.Failed(f"{exc.__class__.__name__}: {exc}", 0, 0, None))
