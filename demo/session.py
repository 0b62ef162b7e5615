"""The app's one stateful object: the runs (their histories and training threads, demo/run_thread.py)
and the publisher (the UMAP worker and the published classifier, demo/publisher.py). Every browser tab
talks to the same Session, so all tabs see one run.

Locks guard only swaps of references; loading data, training, projecting and building a
classifier all happen in worker threads, never in a UI callback.
"""
from __future__ import annotations

import itertools
import shutil
import threading
from pathlib import Path

import numpy as np

from core import events as ev
from core.config import TrainConfig
from core.data import labels
from core.data.cache import DatasetCache
from core.objectives import Supervised
from core.plan.recipe import FINETUNE, recipe
from core.runs import folder as runs
from core.serve.classifier import Classifier, Prediction, PublishedModel
from core.trainer.checkpoint import Checkpoint
from core.trainer.handover import BEST, best_epoch, best_words
from demo import planning, run_thread, saved_runs
from demo.history import COMPLETED, FAILED, STOPPED, RunHistory
from demo.publisher import Publisher
from demo.run_thread import Run
from demo.run_view import RunView
from demo.saved_runs import STAGE_FINETUNE

ENDED = (COMPLETED, STOPPED, FAILED)


class Session:
    def __init__(self, runs_dir: str | Path, data_root: str | Path | None = None, download: bool = False):
        self.runs_dir = Path(runs_dir)
        self.datasets = DatasetCache(data_root, download)
        self._lock = threading.Lock()
        self._runs: list[Run] = self._saved_runs()  # every run folder in runs_dir, from earlier sessions too
        self._summaries = runs.Summaries()  # the run table's rows, read again only when a run's files change
        taken = [int(run.history.run_id[4:]) for run in self._runs if run.history.run_id[4:].isdigit()]
        self._ids = itertools.count(max(taken, default=0) + 1)
        self.publisher = Publisher()  # the published classifier and the UMAP layouts
        self._helpers = list(self.publisher.threads)  # joined by close()

    def _saved_runs(self) -> list[Run]:
        saved = []
        for folder in runs.find(self.runs_dir):
            config = runs.read_config(folder)
            if config is None:  # not a run this version can read: left alone, not listed
                continue
            run_id = folder.relative_to(self.runs_dir).as_posix()
            saved.append(Run(saved_runs.history_of(folder, run_id), config, folder, folder, stop=threading.Event()))
        return saved

    # -- reading (UI thread) -----------------------------------------------------------------
    def views(self) -> list[RunView]:
        """Every run's history, oldest first; the last one is the current run."""
        with self._lock:
            runs = list(self._runs)
        return [run.history.view() for run in runs]

    def running(self) -> bool:
        with self._lock:
            return bool(self._runs) and self._runs[-1].alive()

    def classifier(self) -> Classifier | None:
        return self.publisher.classifier()

    def classify(self, image, method: str | None = None) -> Prediction:
        """Classify with the published model; `method` is one of its `methods` (default: its first)."""
        classifier = self.classifier()
        if classifier is None:
            raise LookupError("no model yet: start training (the first snapshot arrives after an epoch) "
                              "or load a checkpoint")
        return classifier.classify(image, method if method in classifier.methods else None)

    def thumbnails(self) -> np.ndarray | None:
        """The current run's training images as (N, H, W) or (N, H, W, 3) uint8; None before they load."""
        with self._lock:
            run = self._runs[-1] if self._runs else None
        if run is None or run.data is None:
            return None
        images = run.data.train.images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
        return images[..., 0] if images.shape[-1] == 1 else images

    # -- training ----------------------------------------------------------------------------
    def start(self, config: TrainConfig, auto_budget: tuple[int | None, float] | None = None,
              pipeline_minutes: float = 0.0) -> str:
        """Train `config`; with `auto_budget` (epochs or None, minutes), the training thread first fits the
        auto recipe (core.auto_recipe) to the dataset, the device and the budget, and trains
        `config.objective` on it, `config.snapshot_every` kept. With `pipeline_minutes`, the run is the
        best model those minutes allow (core/stages.py): `config` (or the auto recipe) is the base, and
        pretraining `config.objective` then fine-tuning, or supervised training from scratch, as
        core/payoff.py expects; the second stage starts by itself."""
        if pipeline_minutes < 0 or (auto_budget and pipeline_minutes and auto_budget[1] != pipeline_minutes):
            raise ValueError("the pipeline's minutes are its whole budget: give them once")
        with self._lock:
            self._refuse_if_running()
            run_id = f"run-{next(self._ids)}"
            recipe_name = (" · auto" if auto_budget else "") + (" · pipeline" if pipeline_minutes else "")
            run = Run(RunHistory(run_id, f"{run_id} · {config.objective} · {config.dataset}{recipe_name}", ()),
                       config, self.runs_dir / run_id, self.runs_dir / run_id, auto_budget=auto_budget,
                       pipeline=planning.Pipeline(pipeline_minutes) if pipeline_minutes else None)
            self._runs.append(run)
            self._launch(run, resume_from=None)
        return f"started {run_id}"

    def resume(self) -> str:
        """Continue the last stopped (or failed) run from its checkpoint; its curves carry on."""
        with self._lock:
            self._refuse_if_running()
            run = self._runs[-1] if self._runs else None
            view = run.history.view() if run else None
            if view is None or view.checkpoint is None or run.stop is None:
                raise LookupError("nothing to resume: no stopped run with a checkpoint")
            if view.status == "completed":
                raise LookupError("the last run completed: start a new one")
            self._launch(run, resume_from=view.checkpoint)
        return f"resuming {run.history.run_id} from step {view.step}"

    def finetune(self, epochs: int | None = None, labels_per_class: int = 0) -> str:
        """Stage 2 on the last run: supervised fine-tuning from its checkpoint, as the same run (its
        curves continue), on every label or only `labels_per_class` per class (core/labels.py); from the
        backbone a hand-over run kept at its best held-out epoch when it kept one (core/handover.py).
        The pretrained checkpoint stays where it is; stage 2 writes to a subfolder."""
        with self._lock:
            self._refuse_if_running()
            run = self._runs[-1] if self._runs else None
            view = run.history.view() if run else None
            if view is None or view.checkpoint is None or view.status not in ("completed", "stopped"):
                raise LookupError("nothing to fine-tune: pretrain a run (or load a checkpoint) first")
            if run.config.objective == Supervised.name or view.stages:
                raise LookupError("this run already trains on the labels: fine-tune a pretrained run")
            folder = Path(view.checkpoint).parent
            start = str(folder / BEST) if (best := best_epoch(folder)) else view.checkpoint
            run.config = recipe(run.config, stage=FINETUNE, init_from=start, epochs=epochs,
                                labels_per_class=labels_per_class)
            run.out_dir = run.folder / runs.FINETUNE_DIR
            run.offset = run.history.begin_stage(STAGE_FINETUNE)
            run.pipeline = None  # fine-tuned by hand: a stopped pipeline's own next stage no longer follows
            self._launch(run, resume_from=None)
        few = f" on {labels.describe(run.config)}" if labels_per_class else ""
        kept = f" ({best_words(best)})" if best else ""
        return (f"fine-tuning {run.history.run_id} for {run.config.epochs} epochs{few} "
                f"from {Path(start).name}{kept}")

    def stop(self) -> str:
        with self._lock:
            run = self._runs[-1] if self._runs else None
        if run is None or not run.alive():
            return "nothing is running"
        run.stop.set()
        return "stopping after the current step; a checkpoint will be saved"

    def _refuse_if_running(self) -> None:
        run = self._runs[-1] if self._runs else None
        if run is not None and run.alive() and run.history.view().status in ENDED:
            run.thread.join(timeout=10)  # it has ended and is only writing its config and closing its log
        if run is not None and run.alive():
            raise RuntimeError("a run is already going: stop it first (every tab shares one run)")

    def _launch(self, run: Run, resume_from: str | None) -> None:
        run_thread.launch(run, self.datasets, self.publisher, resume_from)

    def preload(self, config: TrainConfig) -> threading.Thread:
        """Decode a dataset in the background so the first Start does not wait for it."""
        def target() -> None:
            try:
                self.datasets.get(config)
            except ValueError:  # a missing dataset is reported when a run asks for it
                return
        thread = threading.Thread(target=target, name="vit2040-preload", daemon=True)
        thread.start()
        self._helpers.append(thread)
        return thread

    # -- keep --------------------------------------------------------------------------------
    def export_checkpoint(self, dest_dir: str | Path) -> Path:
        """Copy the current run's latest checkpoint to `dest_dir` for download."""
        with self._lock:
            run = self._runs[-1] if self._runs else None
        checkpoint = run.history.view().checkpoint if run else None
        if checkpoint is None:
            raise LookupError("no checkpoint yet: a run saves one every few epochs and when stopped")
        dest = Path(dest_dir) / f"vit2040-{run.history.run_id}-{run.config.dataset}.pt"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoint, dest)
        return dest

    def load(self, path: str | Path) -> str:
        """Load a checkpoint file: validate it against its dataset, then show it as a finished run
        (a run folder's checkpoint brings its curves; one of a listed run makes that run current).

        Called from a Gradio worker thread; embedding the training set is one batched forward pass.
        """
        checkpoint = Checkpoint.load(path)
        config = checkpoint.config
        data = self.datasets.get(config)
        checkpoint.check_matches(data)
        published = PublishedModel.from_checkpoint(checkpoint, data.train)
        folder = Path(path).resolve().parent
        if folder.name == runs.FINETUNE_DIR and (folder.parent / runs.METRICS).is_file():
            folder = folder.parent  # a fine-tuning stage's checkpoint: the run is its parent
        logged = (folder / runs.METRICS).is_file()  # a run folder: its curves come with it
        with self._lock:
            self._refuse_if_running()
            run = next((r for r in self._runs if r.folder.resolve() == folder), None)
            if run is not None:
                self._runs.remove(run)
                run.data = data
            else:
                run_id = f"run-{next(self._ids)}"
                history = (saved_runs.history_of(folder, run_id) if logged else
                           RunHistory(run_id, f"{run_id} · loaded {Path(path).name}", data.class_names))
                run = Run(history, config, folder, folder, data=data)
            self._runs.append(run)
        if not logged and checkpoint.baselines:
            run.history(ev.Baselines(*checkpoint.baselines))
        if not logged:
            run.history(ev.Finished("completed", checkpoint.epoch, checkpoint.step, None, str(path)))
        self.publisher.loaded(run.history, published)
        return f"loaded {Path(path).name}: {config.dataset}, {config.objective}, epoch {checkpoint.epoch}"

    def open(self, run_id: str) -> str:
        """Make a listed run current: its latest checkpoint is loaded and published for classifying."""
        checkpoint = self._find(run_id).history.view().checkpoint
        if not checkpoint or not Path(checkpoint).is_file():
            raise LookupError(f"{run_id} has no checkpoint on disk to open")
        return self.load(checkpoint)

    # -- the run table ---------------------------------------------------------------------------
    def _find(self, run_id: str) -> Run:
        with self._lock:
            found = next((run for run in self._runs if run.history.run_id == run_id), None)
        if found is None:
            raise LookupError(f"no run {run_id!r}")
        return found

    def table(self) -> list[list]:
        """One row per run (saved_runs.TABLE_HEADERS), oldest first, read from the run folders."""
        with self._lock:
            listed = list(self._runs)
        return [saved_runs.table_row(run.history.run_id, self._summaries.of(run.folder)) for run in listed
                if (run.folder / runs.METRICS).is_file()]

    def rename(self, run_id: str, label: str) -> str:
        run = self._find(run_id)
        run.history.label = runs.rename(run.folder, label)
        return f"{run_id} is now called {run.history.label!r}"

    def delete(self, run_id: str) -> str:
        """Delete a run's folder (never one outside the runs folder) and drop it from the list."""
        run = self._find(run_id)
        if run.alive():
            raise RuntimeError(f"{run_id} is training: stop it first")
        runs.delete(self.runs_dir, run.folder)
        with self._lock:
            self._runs.remove(run)
        return f"deleted {run_id} ({run.folder})"

    def diff(self, a: str, b: str) -> list[list[str]]:
        return saved_runs.diff_rows(self._summaries.of(self._find(a).folder), self._summaries.of(self._find(b).folder))

    def export_metrics(self, run_ids: list[str], dest_dir: str | Path) -> Path:
        folders = [self._find(run_id).folder for run_id in run_ids]
        if not folders:
            raise LookupError("select the runs to export first")
        return runs.metrics_csv(folders, Path(dest_dir) / "vit2040-metrics.csv")

    def close(self) -> None:
        """Stop every run (each saves a checkpoint), then wait for every thread of this session.

        Joining matters: a daemon thread still inside torch or numba when the interpreter exits
        aborts the process ("terminate called without an active exception").
        """
        with self._lock:
            runs = list(self._runs)
        for run in runs:
            if run.stop is not None:
                run.stop.set()
        self.publisher.close()
        for thread in [run.thread for run in runs if run.thread is not None] + self._helpers:
            thread.join(timeout=120)
