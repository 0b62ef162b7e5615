"""The app's one stateful object: the training thread, the run histories, the UMAP worker and the
published classifier. Every browser tab talks to the same Session, so all tabs see one run.

Locks guard only swaps of references; loading data, training, projecting and building a
classifier all happen in worker threads, never in a UI callback.
"""
from __future__ import annotations

import itertools
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core import events as ev
from core.checkpoint import check_matches, load_checkpoint
from core.classify import Classifier, Prediction, PublishedModel
from core.config import TrainConfig, supervised_config
from core.data import DataSplits, load_dataset
from core.embed import Projector
from core.evaluate import backbone_from_checkpoint, embed, eval_images
from core.objectives import OBJECTIVES
from core.trainer import Trainer
from demo.history import Layout, RunHistory, RunView, shift

LIGHT_ON_DARK = ("fashion", "digits")  # datasets whose images are a light object on black
STAGE_FINETUNE = "fine-tuning"


class LatestSlot:
    """A one-item mailbox: a new job replaces a pending one (only the newest snapshot matters)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False

    def put(self, item) -> None:
        with self._cond:
            self._item = item
            self._cond.notify()

    def take(self):
        """Block until an item arrives or the slot is closed (then None)."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _folder_stamp(spec: str) -> int | None:
    """For a folder dataset, a hash of its files' names, sizes and times, so that a folder changed
    since it was decoded is decoded again (named datasets never change: None)."""
    if not spec.startswith("folder:"):
        return None
    root = Path(spec[len("folder:"):]).expanduser()
    if not root.is_dir():
        return None  # load_dataset reports the missing folder
    entries = []
    for path in sorted(root.rglob("*")):
        try:
            stat = path.stat()
        except OSError:  # vanished or unreadable: the decode will say so
            continue
        entries.append((str(path), stat.st_size, stat.st_mtime_ns))
    return hash(tuple(entries))


@dataclass
class _Run:
    history: RunHistory
    config: TrainConfig
    out_dir: Path
    data: DataSplits | None = None
    thread: threading.Thread | None = None
    stop: threading.Event | None = None
    offset: tuple[int, int] = (0, 0)  # (steps, epochs) of earlier stages, added to this stage's events
    # (data, side, images): the training images at the model's side, for the published classifier
    _resized: tuple | None = None

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def classifier_images(self) -> torch.Tensor:
        """The training images at the model's resolution, resized once per (data, resolution) rather
        than at every snapshot (Flowers: 2,040 images, 144 -> 112 px). Only the worker thread calls it."""
        side = self.config.model.image_size
        if self._resized is None or self._resized[0] is not self.data or self._resized[1] != side:
            self._resized = (self.data, side, eval_images(self.data.train.images, side))
        return self._resized[2]


class Session:
    def __init__(self, runs_dir: str | Path, data_root: str | Path | None = None, download: bool = False):
        self.runs_dir = Path(runs_dir)
        self.data_root = data_root
        self.download = download
        self._lock = threading.Lock()
        self._runs: list[_Run] = []
        self._ids = itertools.count(1)
        self._classifier: Classifier | None = None
        self._data_cache: dict[tuple, DataSplits] = {}
        self._data_lock = threading.Lock()
        self._jobs = LatestSlot()
        self._projector = Projector()  # used only by the worker thread
        self._worker = threading.Thread(target=self._work, name="vit2040-umap", daemon=True)
        self._worker.start()
        # numba compiles UMAP's kernels on the first fit (~20 s): do it now, off the UI thread.
        self._warmup = threading.Thread(target=Projector.warm_up, name="vit2040-umap-warmup", daemon=True)
        self._warmup.start()
        self._helpers = [self._worker, self._warmup]  # joined by close()

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
        with self._lock:
            return self._classifier

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
    def start(self, config: TrainConfig) -> str:
        with self._lock:
            self._refuse_if_running()
            run_id = f"run-{next(self._ids)}"
            run = _Run(RunHistory(run_id, f"{run_id} · {config.objective} · {config.dataset}", ()), config,
                       self.runs_dir / run_id)
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

    def finetune(self, epochs: int | None = None) -> str:
        """Stage 2 on the last run: supervised fine-tuning from its checkpoint, as the same run (its
        curves continue). The pretrained checkpoint stays where it is; stage 2 writes to a subfolder."""
        with self._lock:
            self._refuse_if_running()
            run = self._runs[-1] if self._runs else None
            view = run.history.view() if run else None
            if view is None or view.checkpoint is None or view.status not in ("completed", "stopped"):
                raise LookupError("nothing to fine-tune: pretrain a run (or load a checkpoint) first")
            if run.config.objective == "supervised":
                raise LookupError("this run already trains on the labels: fine-tune a pretrained run")
            run.config = supervised_config(run.config, init_from=view.checkpoint, epochs=epochs)
            run.out_dir = run.out_dir / "finetune"
            run.offset = run.history.begin_stage(STAGE_FINETUNE)
            self._launch(run, resume_from=None)
        return f"fine-tuning {run.history.run_id} for {run.config.epochs} epochs from {Path(view.checkpoint).name}"

    def stop(self) -> str:
        with self._lock:
            run = self._runs[-1] if self._runs else None
        if run is None or not run.alive():
            return "nothing is running"
        run.stop.set()
        return "stopping after the current step; a checkpoint will be saved"

    def _refuse_if_running(self) -> None:
        if self._runs and self._runs[-1].alive():
            raise RuntimeError("a run is already going: stop it first (every tab shares one run)")

    def _launch(self, run: _Run, resume_from: str | None) -> None:
        run.stop = threading.Event()
        run.thread = threading.Thread(target=self._train, args=(run, resume_from),
                                      name=f"vit2040-{run.history.run_id}", daemon=True)
        run.thread.start()

    def preload(self, config: TrainConfig) -> threading.Thread:
        """Decode a dataset in the background so the first Start does not wait for it."""
        def target() -> None:
            try:
                self._dataset(config)
            except ValueError:  # a missing dataset is reported when a run asks for it
                return
        thread = threading.Thread(target=target, name="vit2040-preload", daemon=True)
        thread.start()
        self._helpers.append(thread)
        return thread

    def _dataset(self, config: TrainConfig) -> DataSplits:
        key = (config.dataset, config.data_size, config.seed, _folder_stamp(config.dataset))
        with self._data_lock:  # one decode per dataset, even when preload and Start race
            if key not in self._data_cache:
                for stale in [k for k in self._data_cache if k[:3] == key[:3]]:  # an older state of the folder
                    del self._data_cache[stale]
                self._data_cache[key] = load_dataset(config.dataset, root=self.data_root,
                                                     download=self.download, size=config.data_size,
                                                     seed=config.seed)
            return self._data_cache[key]

    def _train(self, run: _Run, resume_from: str | None) -> None:
        """Training thread: load data, train, route events. Failures end up in the run's history."""
        def emit(event: ev.Event) -> None:
            event = shift(event, *run.offset)
            run.history(event)
            if isinstance(event, ev.EmbeddingSnapshot):
                self._jobs.put((run, event))

        try:
            run.data = self._dataset(run.config)
            run.history.set_class_names(run.data.class_names)
            trainer = Trainer(run.config, run.data, out_dir=run.out_dir, resume_from=resume_from)
            trainer.run(emit, run.stop)
        except Exception as exc:  # shown to the person in the status line, not lost in a log
            run.history(ev.Failed(f"{exc.__class__.__name__}: {exc}", 0, 0, None))

    # -- the worker: publishing and UMAP -----------------------------------------------------
    def _work(self) -> None:
        projected_run = None
        while (job := self._jobs.take()) is not None:
            run, snapshot = job
            try:
                self._publish(run, snapshot)
                if run is not projected_run:  # a new run starts a fresh layout sequence
                    self._projector.reset()
                    projected_run = run
                xy = self._projector.project(snapshot.embeddings.astype(np.float32))
                run.history.add_layout(Layout(snapshot.epoch, xy, snapshot.labels))
            except Exception as exc:  # a failed projection must not kill the worker; say so
                run.history.note(f"embedding view failed at epoch {snapshot.epoch}: {exc}")

    def _publish(self, run: _Run, snapshot: ev.EmbeddingSnapshot) -> None:
        data, config = run.data, run.config
        published = PublishedModel(
            config=config, weights=snapshot.weights, channels=data.train.channels,
            class_names=data.class_names, train_images=run.classifier_images(),
            train_labels=data.train.labels,
            train_embeddings=torch.from_numpy(snapshot.embeddings.astype(np.float32)),
            epoch=snapshot.epoch, light_on_dark=config.dataset in LIGHT_ON_DARK, head=snapshot.head)
        classifier = Classifier(published)
        with self._lock:
            self._classifier = classifier

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
        """Load a checkpoint file: validate it against its dataset, then show it as a finished run.

        Called from a Gradio worker thread; embedding the training set is one batched forward pass.
        """
        payload = load_checkpoint(path)
        config = payload["config"]
        data = self._dataset(config)
        check_matches(payload, data.fingerprint, data.class_names)
        backbone = backbone_from_checkpoint(payload, torch.device("cpu"))
        features = embed(backbone, eval_images(data.train.images, config.model.image_size))
        epoch, step = int(payload["epoch"]), int(payload["step"])
        with self._lock:
            self._refuse_if_running()
            run_id = f"run-{next(self._ids)}"
            run = _Run(RunHistory(run_id, f"{run_id} · loaded {Path(path).name}", data.class_names), config,
                       Path(path).parent, data=data)
            self._runs.append(run)
        if payload.get("baselines"):
            run.history(ev.Baselines(*payload["baselines"]))
        run.history(ev.Finished("completed", epoch, step, None, str(path)))
        head = payload["objective"] if hasattr(OBJECTIVES.get(config.objective), "class_logits") else None
        self._jobs.put((run, ev.EmbeddingSnapshot(epoch, features.half().numpy(), data.train.labels.numpy(),
                                                  payload["backbone"], head)))
        return f"loaded {Path(path).name}: {config.dataset}, {config.objective}, epoch {epoch}"

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
        self._jobs.close()
        for thread in [run.thread for run in runs if run.thread is not None] + self._helpers:
            thread.join(timeout=120)
