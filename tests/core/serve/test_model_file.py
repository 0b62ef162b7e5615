"""The model file: what classification needs, portable, answering as the live model did; foreign files refused."""
import threading
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from core.config import TrainConfig
from core.plan.stage import run_stage
from core.runs.folder import StageFolder
from core.serve.classifier import Classifier
from core.serve.model_file import ModelFile, ModelFileError, describe, read
from core.trainer.checkpoint import Checkpoint
from tests.core.conftest import TINY_AUGMENT, TINY_MODEL, Recorder, make_splits


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A fine-tuned toy run: a checkpoint with a class head, and its data."""
    data, folder = make_splits(channels=3), tmp_path_factory.mktemp("run")
    config = TrainConfig(dataset="toy", objective="supervised", model=TINY_MODEL, augment=TINY_AUGMENT, epochs=2,
                         warmup_epochs=0, batch_size=16, knn_k=5, labels_per_class=6)
    run_stage(config, data, StageFolder(folder), Recorder(), threading.Event())
    return Checkpoint.load(folder / "last.pt"), data


def test_a_model_file_round_trips_everything_classification_needs(trained, tmp_path):
    checkpoint, data = trained
    model = ModelFile.from_checkpoint(checkpoint, data.train)
    loaded = ModelFile.load(model.save(tmp_path / "model.pt"))
    assert loaded.model == model.model and loaded.framing == model.framing and loaded.trained_with == model.trained_with
    assert loaded.class_names == data.class_names and loaded.epoch == 2 and loaded.channels == 3
    for name in ("embeddings", "labels", "labelled", "thumbnails"):
        assert torch.equal(getattr(loaded, name), getattr(model, name)), name
    assert len(loaded.labelled) == 4 * 6  # the run saw 6 labels a class: only they vote
    assert all(torch.equal(loaded.backbone[k], v) for k, v in checkpoint.backbone.items())
    assert torch.equal(loaded.head["weight"], checkpoint.objective["head.weight"])
    assert describe(loaded) == "toy · supervised, epoch 2, 4 classes, 14 px"
    assert isinstance(read(tmp_path / "model.pt"), ModelFile)


def test_a_loaded_model_file_answers_exactly_as_the_live_model_did(trained, tmp_path):
    """No dataset on disk: the loaded file's answers, neighbours and flags are the live classifier's."""
    checkpoint, data = trained
    live = Classifier(ModelFile.from_checkpoint(checkpoint, data.train))
    path = live.published.save(tmp_path / "model.pt")
    loaded = Classifier(ModelFile.load(path))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8))
    images = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in data.test.images[:6]] + [noise]
    for image in images:
        for method in live.methods:
            a, b = live.classify(image, method), loaded.classify(image, method)
            assert a.top == b.top and a.neighbours == b.neighbours and a.votes == b.votes
            assert (a.typicality, a.unlike_training) == (b.typicality, b.unlike_training)
            assert np.array_equal(a.attention, b.attention) and np.array_equal(a.model_input, b.model_input)
        assert np.array_equal(live.thumbnail(3), loaded.thumbnail(3))


def test_a_foreign_or_damaged_file_is_refused_in_one_sentence(trained, tmp_path):
    checkpoint, _ = trained
    checkpoint.save(tmp_path / "last.pt")
    with pytest.raises(ModelFileError, match="last.pt is not a vit2040 model file .a training checkpoint"):
        ModelFile.load(tmp_path / "last.pt")
    assert isinstance(read(tmp_path / "last.pt"), Checkpoint)  # the app's Load takes either
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="junk.pt is not a readable model file"):
        ModelFile.load(tmp_path / "junk.pt")
    torch.save({"format": "vit2040-model-v1", "class_names": ["a"]}, tmp_path / "damaged.pt")
    with pytest.raises(ModelFileError, match="damaged.pt is a damaged vit2040 model file .it lacks backbone"):
        ModelFile.load(tmp_path / "damaged.pt")
    with zipfile.ZipFile(tmp_path / "cut.pt", "w") as archive:
        archive.writestr("x/data.pkl", b"\x80\x02}")  # a zip that is no torch archive
    with pytest.raises(ModelFileError) as refused:
        ModelFile.load(tmp_path / "cut.pt")
    assert "\n" not in str(refused.value) and "cut.pt" in str(refused.value)
