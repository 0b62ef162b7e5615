"""The app's one stateful object: the runs (their histories and training threads, demo/run_thread.py)
and the publisher (the UMAP worker and the published classifier, demo/publisher.py). Every browser tab
talks to the same Session, so all tabs see one run.

Locks guard only swaps of references; loading data, training, projecting and building a
classifier all happen in worker threads, never in a UI callback.
"""
from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np

from core import events as ev
from core.config import TrainConfig
from core.data import upload
from core.data.cache import DatasetCache
from core.data.folder import folder_files
from core.data.labels import describe as describe_labels
from core.plan.pipeline import Pipeline
from core.plan.request import ONLY, Request
from core.runs import folder as runs
from core.runs.table import Summaries, metrics_csv
from core.serve import model_file
from core.serve.classifier import Classifier, Prediction
from core.serve.model_file import ModelFile
from core.trainer.checkpoint import Checkpoint
from core.trainer.handover import best_words
from demo import run_thread, saved_runs
from demo.history import COMPLETED, FAILED, STOPPED, RunHistory
from demo.publisher import Publisher
from demo.run_thread import Run
from demo.run_view import RunView

ENDED = (COMPLETED, STOPPED, FAILED)
UPLOADS = "uploads"  # under the runs folder: training data unpacked from the browser


def dataset_name(spec: str) -> str:
    """'fashion', or a folder's own name: how a run is called."""
    return spec.removeprefix("folder:").rstrip("/").rsplit("/", 1)[-1]


class Session:
    def __init__(self, runs_dir: str | Path, data_root: str | Path | None = None, download: bool = False):
        self.runs_dir = Path(runs_dir)
        self.datasets = DatasetCache(data_root, download)
        self._lock = threading.Lock()
        self._runs: list[Run] = self._saved_runs()  # every run folder in runs_dir, from earlier sessions too
        self._summaries = Summaries()  # the run table's rows, read again only when a run's files change
        taken = [int(run.history.run_id[4:]) for run in self._runs if run.history.run_id[4:].isdigit()]
        self._ids = itertools.count(max(taken, default=0) + 1)
        self.publisher = Publisher()  # the published classifier and the UMAP layouts
        self._helpers = list(self.publisher.threads)  # joined by close()

    def _saved_runs(self) -> list[Run]:
        saved = []
        for run in runs.find(self.runs_dir):
            stages = run.stages()
            if not stages or stages[0][1].config() is None:  # not a run this version can read: left alone
                continue
            run_id = run.path.relative_to(self.runs_dir).as_posix()
            saved.append(Run(saved_runs.history_of(run, run_id), run, stop=threading.Event()))
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

    def answering(self) -> str:
        """The name of the run whose model answers."""
        return self.publisher.answering()

    def classify(self, image, method: str | None = None) -> Prediction:
        """Classify with the published model; `method` is one of its `methods` (default: its first)."""
        classifier = self.classifier()
        if classifier is None:
            raise LookupError("no model yet: start training (the first snapshot arrives after an epoch) "
                              "or load a checkpoint")
        return classifier.classify(image, method if method in classifier.methods else None)

    def thumbnails(self) -> np.ndarray | None:
        """The current run's training images as (N, H, W) or (N, H, W, 3) uint8 (a loaded model file's own
        thumbnails); None before they load."""
        with self._lock:
            run = self._runs[-1] if self._runs else None
        classifier = self.classifier()
        if run is not None and run.data is not None:
            images = run.data.train.images
        elif run is not None and classifier is not None and run.loaded and run.loaded[1] is None:
            images = classifier.published.thumbnails
        else:
            return None
        images = images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
        return images[..., 0] if images.shape[-1] == 1 else images

    # -- training ----------------------------------------------------------------------------
    def start(self, what: TrainConfig | Request) -> str:
        """Train a request as a pipeline run (core/plan/pipeline.py: the auto recipe fitted, or the best model the
        minutes allow, in the training thread), or a config as it is, one stage."""
        request = what if isinstance(what, Request) else Request(what, "", ONLY, what.minutes)
        base = request.base
        with self._lock:
            self._refuse_if_running()
            run_id = f"run-{next(self._ids)}"
            label = f"{run_id} · {dataset_name(base.dataset)}"  # then what each stage trains, as it starts
            folder = runs.RunFolder(self.runs_dir / run_id)
            pipeline = Pipeline.start(folder, request, self.datasets.get, label)
            run = Run(RunHistory(run_id, label, ()), folder, pipeline)
            self._runs.append(run)
            run_thread.launch(run, self.publisher)
        return f"started {run_id}"

    def resume(self) -> str:
        """Continue the last stopped (or failed) run where it stopped, here or in another process: its stage from
        its checkpoint, then the stages after it; its curves carry on."""
        with self._lock:
            self._refuse_if_running()
            run = self._runs[-1] if self._runs else None
            view = run.history.view() if run else None
            if view is None or run.stop is None or view.status in ("idle", COMPLETED):
                raise LookupError("nothing to resume: no stopped run" if view is None or view.status != COMPLETED
                                  else "the last run completed: start a new one")
            run.pipeline = self._pipeline(run, "nothing to resume: this checkpoint is not in a run folder")
            run_thread.launch(run, self.publisher)
        return f"resuming {run.history.run_id} from step {view.step}"

    def finetune(self, epochs: int | None = None, labels_per_class: int = 0) -> str:
        """Stage 2 on the last run: supervised fine-tuning from its pretraining, as the same run (its curves
        continue), on every label or only `labels_per_class` per class (core/data/labels.py); from the backbone
        a hand-over kept at its best held-out epoch when it kept one (core/trainer/handover.py)."""
        with self._lock:
            self._refuse_if_running()
            run = self._runs[-1] if self._runs else None
            if run is None or run.history.view().status not in (COMPLETED, STOPPED):
                raise LookupError("nothing to fine-tune: pretrain a run (or open one) first")
            run.pipeline = self._pipeline(run, "nothing to fine-tune: this checkpoint is not in a run folder")
            config, start = run.pipeline.finetune(epochs, labels_per_class)
            run_thread.launch(run, self.publisher)
        few = f" on {describe_labels(config)}" if labels_per_class else ""
        best = run.pipeline.stages[-2]["best_epoch"]
        kept = f" ({best_words(best)})" if best else ""
        return f"fine-tuning {run.history.run_id} for {config.epochs} epochs{few} from {start}{kept}"

    def _pipeline(self, run: Run, refusal: str) -> Pipeline:
        """The run's pipeline as its folder holds it (the command line may have started it)."""
        try:
            return Pipeline.open(run.folder, self.datasets.get)
        except ValueError:
            raise LookupError(refusal) from None

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

    def unpack(self, archive: str | Path) -> tuple[Path, str]:
        """A zip of class subfolders unpacked safely under the runs folder (core/data/upload.py): the folder to
        train on, and what it holds in words. Called from a Gradio worker thread."""
        folder = upload.unpack(archive, self.runs_dir / UPLOADS)
        files = folder_files(str(folder))
        classes = sorted({path.parent.name for path in files})
        return folder, f"{len(files):,} images in {len(classes)} classes ({', '.join(classes[:6])}" + (
            ", ..." if len(classes) > 6 else "") + ")"

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
    def export_model(self, dest_dir: str | Path) -> Path:
        """The model file of what answers now (core/serve/model_file.py), named after its run, for download."""
        classifier = self.classifier()
        with self._lock:
            run = self._runs[-1] if self._runs else None
        if classifier is None or run is None:
            raise LookupError("no model yet: a run publishes one after its first snapshot")
        name = "-".join(run.history.label.split(" · ")[0].split()) or run.history.run_id
        return classifier.published.save(Path(dest_dir) / f"vit2040-{name}-epoch{classifier.published.epoch}.pt")

    def load(self, path: str | Path) -> str:
        """Load a model file (no dataset needed) or a training checkpoint (validated against its dataset), and
        show it as a finished run: one of a run folder brings the run's curves, and one of a listed run makes
        that run current. Called from a Gradio worker thread; a checkpoint's training set is embedded in one
        batched forward pass."""
        path = Path(path).resolve()
        opened = model_file.read(path)
        if isinstance(opened, Checkpoint):
            data = self.datasets.get(opened.config)
            opened.check_matches(data)
            published, loaded = ModelFile.from_checkpoint(opened, data.train), (opened.config, data)
        else:
            published, loaded = opened, (opened.trained_with, None)
        holder = runs.run_of(path)  # a run's checkpoint or model file brings the run's curves
        folder = holder or runs.RunFolder(path.parent)
        with self._lock:
            self._refuse_if_running()
            run = next((r for r in self._runs if r.folder.path.resolve() == folder.path.resolve()), None)
            if run is not None:
                self._runs.remove(run)
            else:
                run_id = f"run-{next(self._ids)}"
                history = (saved_runs.history_of(folder, run_id) if holder else
                           RunHistory(run_id, f"{run_id} · loaded {path.name}", published.class_names))
                run = Run(history, folder)
            run.pipeline, run.loaded = None, loaded
            self._runs.append(run)
        if holder is None:
            run.history(ev.Finished("completed", published.epoch, 0, None, str(path)))
        self.publisher.loaded(run.history, published)
        return f"loaded {path.name}: {model_file.describe(published)}"

    def open(self, run_id: str) -> str:
        """Make a listed run current: its model file (or, before it has one, its latest checkpoint) is loaded and
        published for classifying."""
        run = self._find(run_id)
        model = run.folder.model()
        if model is None:
            raise LookupError(f"{run_id} has no model file or checkpoint on disk to open")
        return self.load(model)

    def open_last(self) -> str | None:
        """At start-up, the newest listed run that holds a model file answers again, as it did before the
        restart (only a model file: it needs no dataset, so opening it is quick and cannot fail on a moved
        folder). None when there is none."""
        with self._lock:
            listed = list(self._runs)
        for run in reversed(listed):
            if run.folder.model_path.is_file():
                return self.open(run.history.run_id)
        return None

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
                if run.folder.stages() and run.folder.stages()[0][1].started()]

    def rename(self, run_id: str, label: str) -> str:
        run = self._find(run_id)
        run.history.label = run.folder.rename(label)
        return f"{run_id} is now called {run.history.label!r}"

    def delete(self, run_id: str) -> str:
        """Delete a run's folder (never one outside the runs folder) and drop it from the list."""
        run = self._find(run_id)
        if run.alive():
            raise RuntimeError(f"{run_id} is training: stop it first")
        runs.delete(self.runs_dir, run.folder)
        with self._lock:
            self._runs.remove(run)
        return f"deleted {run_id} ({run.folder.path})"

    def diff(self, a: str, b: str) -> list[list[str]]:
        return saved_runs.diff_rows(self._summaries.of(self._find(a).folder), self._summaries.of(self._find(b).folder))

    def export_metrics(self, run_ids: list[str], dest_dir: str | Path) -> Path:
        folders = [self._find(run_id).folder for run_id in run_ids]
        if not folders:
            raise LookupError("select the runs to export first")
        return metrics_csv(folders, Path(dest_dir) / "vit2040-metrics.csv")

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
