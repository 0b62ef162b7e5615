"""The publishing worker: snapshots in, the published classifier and the run's UMAP layouts out."""
import dataclasses

import numpy as np
import pytest

from core.events import EmbeddingSnapshot
from demo.history import RunHistory
from demo.publisher import LatestSlot, Publisher
from tests.core.conftest import make_splits
from tests.core.serve.test_classifier import publish
from tests.demo.test_session import wait_for

pytestmark = pytest.mark.slow  # the worker's UMAP compiles its kernels on the first fit


@pytest.fixture
def publisher():
    p = Publisher()
    yield p
    p.close()
    for thread in p.threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in p.threads)


def test_latest_slot_keeps_only_the_newest_item():
    slot = LatestSlot()
    slot.put(1)
    slot.put(2)
    assert slot.take() == 2
    slot.close()
    assert slot.take() is None


def test_a_training_snapshot_is_published_for_classifying_and_projected_into_its_runs_history(publisher):
    model = publish(n_train=60)
    history = RunHistory("run-1", "run 1", model.class_names)
    assert publisher.classifier() is None
    event = EmbeddingSnapshot(7, model.embeddings.numpy().astype(np.float16), model.labels.numpy(),
                              model.backbone)
    images = make_splits(n_train=60, classes=6, size=model.side).train
    publisher.snapshot(history, model.trained_with, images, event)
    wait_for(lambda: history.view().layouts)
    layout = history.view().layouts[-1]
    assert layout.epoch == 7 and layout.xy.shape == (60, 2) and np.isfinite(layout.xy).all()
    assert np.array_equal(layout.labels, images.labels.numpy())
    assert publisher.classifier().published.epoch == 7 and publisher.answering() == "run 1"


def test_a_loaded_model_replaces_the_published_one(publisher):
    first, second = publish(n_train=60), dataclasses.replace(publish(n_train=60), epoch=5)
    history = RunHistory("run-1", "run 1", first.class_names)
    publisher.loaded(history, first)
    assert publisher.classifier().published is first  # answers at once: the projection follows in the worker
    wait_for(lambda: len(history.view().layouts) == 1)
    publisher.loaded(history, second)
    wait_for(lambda: len(history.view().layouts) == 2)
    assert [layout.epoch for layout in history.view().layouts] == [3, 5]
    assert publisher.classifier().published is second


def test_a_failed_snapshot_is_said_in_the_status_line_and_the_worker_goes_on(publisher):
    model = publish(n_train=60)
    history = RunHistory("run-1", "run 1", model.class_names)
    broken = EmbeddingSnapshot(4, np.zeros((60, 8), np.float16), np.zeros(60, np.int64), {"not": "a backbone"})
    publisher.snapshot(history, model.trained_with, None, broken)  # no training set: building the model fails
    wait_for(lambda: "embedding view failed at epoch 4" in history.view().message)
    publisher.loaded(history, model)
    wait_for(lambda: history.view().layouts)
    assert publisher.classifier().published is model
