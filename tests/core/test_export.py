"""`python -m core.export`: a model file from a run or a checkpoint, and an ONNX graph that runs without us."""
import threading

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from core import export
from core.config import TrainConfig
from core.data.images import decode
from core.plan.stage import run_stage
from core.runs.folder import StageFolder
from core.serve.classifier import HEAD, KNN, Classifier
from core.serve.model_file import ModelFile
from tests.core.conftest import TINY_AUGMENT, TINY_MODEL, Recorder, make_splits


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A pretraining and a supervised toy run on the same data (RGB), as folders of checkpoints."""
    root, data = tmp_path_factory.mktemp("export"), make_splits(channels=3)
    for objective in ("instance", "supervised"):
        config = TrainConfig(dataset="toy", objective=objective, model=TINY_MODEL, augment=TINY_AUGMENT, epochs=1,
                             warmup_epochs=0, batch_size=16, knn_k=5)
        run_stage(config, data, StageFolder(root / objective), Recorder(), threading.Event())
    return root, data


@pytest.mark.parametrize("objective, method", [("supervised", HEAD), ("instance", KNN)])
def test_the_onnx_graph_answers_as_the_model_does_on_real_images(runs, tmp_path, capsys, monkeypatch, objective,
                                                                   method):
    root, data = runs
    monkeypatch.setattr(export.DatasetCache, "get", lambda self, config: data)  # the toy set is in memory only
    model_path, graph = tmp_path / "model.pt", tmp_path / "model.onnx"
    assert export.main([str(root / objective / "last.pt"), "--out", str(model_path), "--onnx", str(graph)]) == 0
    printed = capsys.readouterr().out
    assert f"ONNX graph {graph}: uint8 (N, 3, 14, 14) in, 4 class probabilities out" in printed
    model = ModelFile.load(model_path)
    classifier = Classifier(model)
    photos = []
    for i, image in enumerate(data.test.images[:8]):  # the test images as files, back through the decoder
        Image.fromarray(image.permute(1, 2, 0).numpy()).resize((30, 30)).save(tmp_path / f"{i}.png")
        photos.append(classifier.model_input(decode(tmp_path / f"{i}.png")))
    pixels = torch.stack(photos)
    session = onnxruntime.InferenceSession(str(graph))
    probabilities = session.run(None, {"pixels": pixels.numpy()})[0]
    expected = np.array([[dict(answer.top)[name] for name in model.class_names]
                         for answer in classifier.answers(pixels, [False] * 8, method, top=4)])
    difference = float(np.abs(probabilities - expected).max())
    print(f"{objective}: ONNX against PyTorch, max difference {difference:.2e}")
    assert difference < 1e-4 and (probabilities.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_a_run_folder_exports_its_model_file_and_bad_sources_are_refused(runs, tmp_path, capsys, monkeypatch):
    root, data = runs
    monkeypatch.setattr(export.DatasetCache, "get", lambda self, config: data)
    assert export.main([str(root / "supervised"), "--out", str(tmp_path / "m.pt")]) == 0  # its last checkpoint
    assert ModelFile.load(tmp_path / "m.pt").head is not None
    assert export.main([str(tmp_path / "m.pt"), "--onnx", str(tmp_path / "m.onnx"), "--method", "knn"]) == 0
    assert export.main([str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "model file or checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export.main([str(root / "supervised")])  # nothing to write


def test_the_readmes_lines_run_the_graph_without_this_project(runs, tmp_path, monkeypatch):
    """The README's ONNX snippet, as written, on a photo: it needs numpy, Pillow and onnxruntime alone."""
    import re
    import subprocess
    import sys
    from pathlib import Path
    root, data = runs
    monkeypatch.setattr(export.DatasetCache, "get", lambda self, config: data)
    assert export.main([str(root / "supervised" / "last.pt"), "--onnx", str(tmp_path / "model.onnx")]) == 0
    Image.fromarray(data.test.images[0].permute(1, 2, 0).numpy()).resize((40, 30)).save(tmp_path / "cat.jpg")
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    done = subprocess.run([sys.executable, "-I", "-c", snippet], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)  # -I: the project is not importable, as on someone else's machine
    assert done.returncode == 0, done.stderr
    probabilities = [float(value) for value in re.findall(r"\d\.\d*(?:e[-+]\d+)?", done.stdout)]
    assert len(probabilities) == 4 and abs(sum(probabilities) - 1) < 1e-4
