"""One run's history for the app: a lock-protected fold of the pipeline's and the trainer's events (written by
the training and UMAP threads) that hands the UI thread immutable `RunView` snapshots (demo/run_view.py) for
the plots. A later stage's events are numbered from its own start; the fold continues the run's curves."""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from core import events as ev
from core.metrics import imbalance, unequal
from core.plan.recipe import STAGE_WORDS
from core.trainer import watchdog
from demo.run_view import Layout, RunView

MESSAGE_STARTED = ("training on {device} · {millions:.2f} M parameters · "
                   "{n_train} train / {n_test} test images")
MESSAGE_RESUMED = "resumed at step {step} on {device}"
MESSAGE_STAGE = "{stage} from step {step} on {device} · {n_train} train / {n_test} test images"
MESSAGE_COMPLETED = "completed {epoch} epochs ({step} steps)"
MESSAGE_STOPPED = "stopped at epoch {epoch} (step {step})"
MESSAGE_BETWEEN = "stopped before its next stage: Resume starts it"  # a pipeline stopped between two stages
MESSAGE_HANDED_OVER = "handed over at epoch {epoch} (step {step})"  # a pipeline's pretraining: nobody stopped it
MESSAGE_KNN = " · kNN top-1 {knn:.1%}"
MESSAGE_IMBALANCE = " · classes unequal (largest {ratio:.1f}× the smallest): balanced accuracy shown{weights}"
MESSAGE_WEIGHTS = ", the loss weighs classes"
MESSAGE_TOP1 = " · test top-1 {top1:.1%}"

IDLE, RUNNING, STOPPED, COMPLETED, FAILED = "idle", "running", "stopped", "completed", "failed"

# The ETA follows the last half-minute of steps: recent enough to track a slowdown (another job on
# the machine), long enough that one evaluation pause does not swing it wildly.
RATE_WINDOW_S = 30.0
# Per-step images/s is one batch over one step's time, so it jitters; the readout is an EMA.
THROUGHPUT_SMOOTHING = 0.9
INITIAL_CAPACITY = 1024


class _Column:
    """Append-only numpy buffer with amortised O(1) appends. A snapshot is a read-only slice that
    stays valid forever: cells once written are never overwritten (growing and truncating
    reallocate instead), so views need no copy."""

    def __init__(self, dtype: type):
        self._data = np.empty(INITIAL_CAPACITY, dtype=dtype)
        self.size = 0

    def append(self, value: float) -> None:
        if self.size == len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[self.size] = value
        self.size += 1

    def truncate(self, size: int) -> None:
        data = np.empty_like(self._data)
        data[:size] = self._data[:size]
        self._data, self.size = data, size

    def snapshot(self) -> np.ndarray:
        view = self._data[:self.size]
        view.flags.writeable = False
        return view


class RunHistory:
    """Mutable, lock-protected fold of trainer events for ONE run; `view()` returns an immutable
    RunView. The lock only guards short appends and the snapshot, never long work."""

    def __init__(self, run_id: str, label: str, class_names: tuple[str, ...] | list[str],
                 clock: Callable[[], float] = time.monotonic):
        self.run_id, self.label, self.class_names = run_id, label, tuple(class_names)
        self._clock = clock  # injectable so tests can script the step rate
        self._lock = threading.Lock()
        self._steps, self._losses, self._lrs = _Column(np.int64), _Column(np.float64), _Column(np.float64)
        # (epoch, step, knn, top1, knn balanced, top1 balanced)
        self._epoch_rows: list[tuple[int, int, float | None, float | None, float | None, float | None]] = []
        self._confusion: tuple[int, np.ndarray] | None = None  # (epoch, matrix)
        self._stages: tuple[tuple[str, int], ...] = ()
        self._stage_starting: str | None = None  # set by begin_stage until that stage's RunStarted
        self._stage_index = -1  # the pipeline's stage now folded (core.events.StageStarted.index)
        self._offset = (0, 0)  # (steps, epochs) of earlier stages: a later stage's events are shifted by them
        self._layouts: tuple[Layout, ...] = ()
        self._rate: deque[tuple[float, int]] = deque()  # (clock, step) over the last RATE_WINDOW_S
        self._status, self._message, self._device = IDLE, "", ""
        self._total_steps = self._steps_per_epoch = 0
        self._images_per_s: float | None = None
        self._baselines: tuple[float, float] | None = None
        self._baseline_event: ev.Baselines | None = None
        self._started_at: float | None = None
        self._running_since: float | None = None
        self._elapsed_before = 0.0  # running time of earlier starts (a resumed run adds up)
        self._checkpoint: str | None = None
        self._snapshot_epoch: int | None = None
        self._advice: tuple[int, str] | None = None
        self._counts: tuple[int, ...] = ()  # training images per class
        self._plan: tuple[str, ...] = ()  # how the run was planned, in words (demo/planning.py)
        self._fitting = 0.0  # a budget in minutes whose length is not fixed yet: total_steps is provisional
        self._predicts_classes = False
        self._recipe: tuple[int, int, float] | None = None
        self._handlers = {ev.RunStarted: self._started, ev.BudgetFitted: self._budget_fitted,
                          ev.Baselines: self._baselines_known,
                          ev.StepMetrics: self._stepped, ev.EpochMetrics: self._epoch_ended,
                          ev.EmbeddingSnapshot: self._snapshot_taken, ev.CheckpointSaved: self._saved,
                          ev.Advice: self._advised,
                          ev.Finished: self._finished, ev.Failed: self._failed,
                          ev.Planned: self._planned, ev.StageStarted: self._stage_started,
                          ev.PipelineEnded: self._pipeline_ended}

    def __call__(self, event: ev.Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        now = self._clock()
        with self._lock:
            handler(shift(event, *self._offset), now)

    def shifted(self, event: ev.Event) -> ev.Event:
        """`event` numbered as this run's (a later stage's steps and epochs continue the earlier stages')."""
        with self._lock:
            return shift(event, *self._offset)

    def set_class_names(self, class_names: Sequence[str]) -> None:
        """Known only once the run's dataset has loaded (in the training thread)."""
        with self._lock:
            self.class_names = tuple(class_names)

    def note(self, message: str) -> None:
        """A message for the status line that is not a trainer event (e.g. the UMAP worker's)."""
        with self._lock:
            self._message = message

    def plan(self, words: str) -> None:
        """How the run was planned (a recipe, an expectation, a pipeline's next stage), in words: kept in
        the status line under its progress, where training's own messages do not replace it."""
        with self._lock:
            self._plan += (words,)

    def _planned(self, event: ev.Planned, now: float) -> None:
        expected = f"; expected: {event.expected}" if event.expected else ""
        self._plan += (f"{event.recipe}{expected}; pipeline: {event.stages}",)

    def _stage_started(self, event: ev.StageStarted, now: float) -> None:
        """A pipeline's stage begins: named in the run's label (the run is called by what it trains), a later
        stage's curves continuing the run's (the same stage again is a resume, which its RunStarted rewinds to)."""
        if event.index <= self._stage_index:
            return
        self._stage_index = event.index
        label = STAGE_WORDS.get(event.stage, event.stage)
        if event.index == 0:
            self.label = f"{self.label} · {label}" if label else self.label
            return
        self.label = f"{self.label} → {label}"
        steps = int(self._steps.snapshot()[-1]) if self._steps.size else 0
        epochs = self._epoch_rows[-1][0] if self._epoch_rows else 0
        self._stages += ((label, epochs),)
        self._stage_starting = label  # its RunStarted begins a stage, not a resume
        self._offset = (steps, epochs)
        if event.words:
            self._plan += (f"pipeline: {event.words}",)

    def add_layout(self, layout: Layout) -> None:
        """Insert a UMAP layout (from the UMAP worker); a later layout for the same epoch replaces it."""
        with self._lock:
            kept = [old for old in self._layouts if old.epoch != layout.epoch]
            self._layouts = tuple(sorted(kept + [layout], key=lambda item: item.epoch))

    def view(self) -> RunView:
        now = self._clock()
        with self._lock:
            rows = self._epoch_rows
            knn_rows = [(row[0], row[2], row[4]) for row in rows if row[2] is not None]
            top1_rows = [(row[0], row[3], row[5]) for row in rows if row[3] is not None]
            held_rows = [(row[0], row[6]) for row in rows if row[6] is not None]
            confusion_epoch, confusion = self._confusion or (None, None)
            return RunView(
                run_id=self.run_id, label=self.label, status=self._status, device=self._device,
                total_steps=self._total_steps, steps_per_epoch=self._steps_per_epoch,
                steps=self._steps.snapshot(), losses=self._losses.snapshot(), lrs=self._lrs.snapshot(),
                images_per_s=self._images_per_s or 0.0,
                epochs=np.array([row[0] for row in rows], dtype=np.int64),
                knn_epochs=np.array([row[0] for row in knn_rows], dtype=np.int64),
                knn=np.array([row[1] for row in knn_rows], dtype=np.float64),
                top1_epochs=np.array([row[0] for row in top1_rows], dtype=np.int64),
                top1=np.array([row[1] for row in top1_rows], dtype=np.float64),
                knn_balanced=_balanced(knn_rows), top1_balanced=_balanced(top1_rows),
                imbalance=imbalance(self._counts), imbalanced=unequal(self._counts),
                plan=self._plan, fitting_minutes=self._fitting, recipe=self._recipe,
                held_out_epochs=np.array([row[0] for row in held_rows], dtype=np.int64),
                held_out=np.array([row[1] for row in held_rows], dtype=np.float64),
                confusion=confusion, confusion_epoch=confusion_epoch, stages=self._stages,
                baselines=self._baselines, layouts=self._layouts, message=self._message,
                started_at=self._started_at, elapsed_s=self._elapsed(now), eta_s=self._eta(),
                class_names=self.class_names, checkpoint=self._checkpoint, snapshot_epoch=self._snapshot_epoch,
                advice=self._advice)

    def _elapsed(self, now: float) -> float:
        current = now - self._running_since if self._running_since is not None else 0.0
        return self._elapsed_before + current

    def _eta(self) -> float | None:
        if self._status != RUNNING or len(self._rate) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return (self._total_steps - s1) * (t1 - t0) / (s1 - s0)

    def _advised(self, event: ev.Advice, now: float) -> None:
        self._advice = (event.epoch, event.message)

    def _budget_fitted(self, event: ev.BudgetFitted, now: float) -> None:
        self._total_steps, self._message, self._fitting = event.total_steps, event.message, 0.0
        if self._recipe is not None:
            self._recipe = (event.epochs, *self._recipe[1:])

    def _started(self, event: ev.RunStarted, now: float) -> None:
        self._device = event.device
        self._total_steps, self._steps_per_epoch = event.total_steps, event.steps_per_epoch
        self._rewind(event.start_step)
        self._status, self._running_since = RUNNING, now
        if self._started_at is None:
            self._started_at = time.time()
        # The window starts at the first step: the time before it (baselines) is not step time.
        self._rate.clear()
        stage, self._stage_starting = self._stage_starting, None
        if stage is not None:
            self._message = MESSAGE_STAGE.format(stage=stage, step=event.start_step, device=event.device,
                                                 n_train=event.n_train, n_test=event.n_test)
        elif event.start_step:
            self._message = MESSAGE_RESUMED.format(step=event.start_step, device=event.device)
        else:
            self._message = MESSAGE_STARTED.format(device=event.device, millions=event.parameters / 1e6,
                                                   n_train=event.n_train, n_test=event.n_test)
        self._counts = event.class_counts
        self._fitting = event.budget_minutes
        self._predicts_classes = event.predicts_classes
        self._recipe = (event.epochs, event.batch_size, event.lr) if event.batch_size else None
        if unequal(self._counts):
            self._message += MESSAGE_IMBALANCE.format(ratio=imbalance(self._counts),
                                                      weights=MESSAGE_WEIGHTS if event.class_weights else "")

    def _rewind(self, start_step: int) -> None:
        """A run resumed from an older checkpoint redoes steps: forget what comes after it."""
        keep = int(np.searchsorted(self._steps.snapshot(), start_step, side="right"))
        if keep < self._steps.size:
            for column in (self._steps, self._losses, self._lrs):
                column.truncate(keep)
        self._epoch_rows = [row for row in self._epoch_rows if row[1] <= start_step]
        if self._confusion and self._confusion[0] > start_step // max(self._steps_per_epoch, 1):
            self._confusion = None
        last_epoch = start_step // max(self._steps_per_epoch, 1)
        self._layouts = tuple(layout for layout in self._layouts if layout.epoch <= last_epoch)

    def _baselines_known(self, event: ev.Baselines, now: float) -> None:
        self._baselines = (event.raw_pixels, event.random_init)
        self._baseline_event = event

    def _stepped(self, event: ev.StepMetrics, now: float) -> None:
        self._steps.append(event.step)
        self._losses.append(event.loss)
        self._lrs.append(event.lr)
        previous = self._images_per_s
        self._images_per_s = event.images_per_s if previous is None else (
            THROUGHPUT_SMOOTHING * previous + (1 - THROUGHPUT_SMOOTHING) * event.images_per_s)
        self._rate.append((now, event.step))
        while len(self._rate) > 2 and self._rate[0][0] < now - RATE_WINDOW_S:
            self._rate.popleft()

    def _epoch_ended(self, event: ev.EpochMetrics, now: float) -> None:
        self._epoch_rows.append((event.epoch, event.step, event.knn_top1, event.test_top1, event.knn_balanced,
                                 event.test_balanced, event.held_out))
        if event.confusion is not None:
            matrix = np.array(event.confusion, dtype=np.int64)
            matrix.flags.writeable = False
            self._confusion = (event.epoch, matrix)

    def _snapshot_taken(self, event: ev.EmbeddingSnapshot, now: float) -> None:
        self._snapshot_epoch = event.epoch  # the arrays go to the UMAP worker, not into the history

    def _saved(self, event: ev.CheckpointSaved, now: float) -> None:
        self._checkpoint = event.path

    def _finished(self, event: ev.Finished, now: float) -> None:
        template = {COMPLETED: MESSAGE_COMPLETED, ev.HANDED_OVER: MESSAGE_HANDED_OVER}.get(event.reason,
                                                                                          MESSAGE_STOPPED)
        message = template.format(epoch=event.epoch, step=event.step)
        if event.knn_top1 is not None:
            message += MESSAGE_KNN.format(knn=event.knn_top1)
        if event.test_top1 is not None:
            message += MESSAGE_TOP1.format(top1=event.test_top1)
        if event.knn_top1 is not None and self._baseline_event and not self._predicts_classes:
            stick = watchdog.Yardstick.of(self._baseline_event, self._counts)
            balanced = next((row[4] for row in reversed(self._epoch_rows) if row[2] is not None), None)
            judged = stick.read(event.knn_top1, balanced)
            message += f"  \n{watchdog.ending(judged, stick.raw_pixels, stick.random_init, stick.metric)}"
        self._stop(now, COMPLETED if event.reason == COMPLETED else STOPPED, message, event.checkpoint)

    def _pipeline_ended(self, event: ev.PipelineEnded, now: float) -> None:
        """A pipeline stopped after a stage that completed, before the next one began: the run is stopped, not
        completed (its last stage's Finished said completed)."""
        if event.reason == ev.STOPPED and self._status == COMPLETED:
            self._status, self._message = STOPPED, MESSAGE_BETWEEN

    def _failed(self, event: ev.Failed, now: float) -> None:
        self._stop(now, FAILED, event.message, event.checkpoint)

    def _stop(self, now: float, status: str, message: str, checkpoint: str | None) -> None:
        if self._running_since is not None:
            self._elapsed_before += now - self._running_since
        self._running_since = None
        self._status, self._message = status, message
        self._checkpoint = checkpoint or self._checkpoint


def _balanced(rows: list[tuple]) -> np.ndarray:
    """The balanced accuracies of (epoch, value, balanced) rows; NaN where a run did not measure one."""
    return np.array([np.nan if row[2] is None else row[2] for row in rows], dtype=np.float64)


def shift(event: ev.Event, steps: int, epochs: int) -> ev.Event:
    """An event of a later stage renumbered to continue the run: stage-local steps and epochs plus the
    (steps, epochs) the earlier stages did. Events without steps or epochs pass unchanged."""
    if not (steps or epochs):
        return event
    fields = {f.name for f in dataclasses.fields(event)}
    changes = {name: getattr(event, name) + offset
               for name, offset in (("step", steps), ("start_step", steps), ("total_steps", steps), ("epoch", epochs))
               if name in fields}
    return dataclasses.replace(event, **changes) if changes else event
