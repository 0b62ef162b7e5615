"""The app's publishing worker: embedding snapshots (and loaded checkpoints) in, the published classifier
and a run's UMAP layouts out, in one thread that is never a UI callback.

Only the newest snapshot matters (a classifier or a layout of an older epoch is stale once a newer one
exists), so a new job replaces one still pending rather than queueing behind it.
"""
from __future__ import annotations

import threading

import numpy as np
import torch

from core.config import TrainConfig
from core.data.splits import ImageSet
from core.events import EmbeddingSnapshot
from core.serve.classifier import Classifier
from core.serve.model_file import ModelFile
from core.serve.projection import Projector
from demo.history import RunHistory
from demo.run_view import Layout


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


class Publisher:
    """Publishes the newest model for classifying and projects its training embeddings into the run's history."""

    def __init__(self):
        self._lock = threading.Lock()  # guards only the swap of the published classifier
        self._classifier: Classifier | None = None
        self._answering: RunHistory | None = None  # the run whose model the classifier is
        self._jobs = LatestSlot()
        self._projector = Projector()  # used only by the worker thread
        worker = threading.Thread(target=self._work, name="vit2040-umap", daemon=True)
        # numba compiles UMAP's kernels on the first fit (~20 s): do it now, off the UI thread.
        warmup = threading.Thread(target=Projector.warm_up, name="vit2040-umap-warmup", daemon=True)
        self.threads = (worker, warmup)  # the owner joins them after close()
        for thread in self.threads:
            thread.start()

    def classifier(self) -> Classifier | None:
        with self._lock:
            return self._classifier

    def answering(self) -> str:
        """The name of the run whose model answers ("" before any)."""
        with self._lock:
            return self._answering.label if self._answering is not None else ""

    def snapshot(self, history: RunHistory, config: TrainConfig, train: ImageSet, event: EmbeddingSnapshot) -> None:
        """A training run's snapshot of its weights and training embeddings, to publish and project."""
        self._jobs.put((history, (config, train, event)))

    def loaded(self, history: RunHistory, published: ModelFile) -> None:
        """A loaded model (a model file, or one built from a checkpoint): it answers from now on (an Open or a Load
        is a person's click, and the photo they drop next is for this model), and is projected in the worker."""
        classifier = Classifier(published)
        with self._lock:
            self._classifier, self._answering = classifier, history
        self._jobs.put((history, published))

    def close(self) -> None:
        """The worker ends once its current job is done (join `threads`)."""
        self._jobs.close()

    def _work(self) -> None:
        projected = None  # the history whose layouts the projector is aligning
        while (job := self._jobs.take()) is not None:
            history, item = job
            epoch = item.epoch if isinstance(item, ModelFile) else item[2].epoch
            try:
                if isinstance(item, ModelFile):  # published already, when it was loaded
                    published = item
                else:
                    published = _published(*item)
                    classifier = Classifier(published)
                    with self._lock:
                        self._classifier, self._answering = classifier, history
                if history is not projected:  # a new run starts a fresh layout sequence
                    self._projector.reset()
                    projected = history
                xy = self._projector.project(published.embeddings)
                history.add_layout(Layout(published.epoch, xy, published.labels.numpy(), published.names))
            except Exception as exc:  # a failed projection must not kill the worker; say so
                history.note(f"embedding view failed at epoch {epoch}: {exc}")


def _published(config: TrainConfig, train: ImageSet, event: EmbeddingSnapshot) -> ModelFile:
    embeddings = torch.from_numpy(event.embeddings.astype(np.float32))  # (N, D)
    return ModelFile.build(config, train, event.weights, embeddings, event.epoch, event.head)
