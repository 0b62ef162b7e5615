"""`python -m core.classify MODEL PATH...`: files and folders, one line an image, its flags, CSV and embeddings."""
import csv
import re
import threading

import numpy as np
import pytest
from PIL import Image

from core import classify
from core.config import TrainConfig
from core.plan.stage import run_stage
from core.runs.folder import RunFolder, StageFolder
from core.serve.model_file import ModelFile
from core.trainer.checkpoint import Checkpoint
from tests.core.conftest import TINY_AUGMENT, TINY_MODEL, Recorder, make_splits


@pytest.fixture(scope="module")
def model_and_photos(tmp_path_factory):
    """A toy run's model file (in its run folder) and a folder of its test images as PNG files."""
    data, root = make_splits(), tmp_path_factory.mktemp("classify")
    config = TrainConfig(dataset="toy", model=TINY_MODEL, augment=TINY_AUGMENT, epochs=1, warmup_epochs=0,
                         batch_size=16, knn_k=5)
    run_stage(config, data, StageFolder(root / "run"), Recorder(), threading.Event())
    model = ModelFile.from_checkpoint(Checkpoint.load(root / "run" / "last.pt"), data.train)
    model.save(RunFolder(root / "run").model_path)
    photos = root / "photos"
    for i, image in enumerate(data.test.images[:6]):
        (photos / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).resize((40, 40)).save(photos / f"c{i % 2}" / f"{i}.png")
    Image.new("L", (30, 30), 255).save(photos / "blank.png")
    (photos / ".hidden.png").write_bytes(b"")  # hidden files are not images to classify
    return root / "run", photos


def test_a_folder_is_classified_recursively_one_line_an_image_with_its_flags(model_and_photos, capsys, tmp_path):
    run, photos = model_and_photos
    table, vectors = tmp_path / "answers.csv", tmp_path / "embeddings.npz"
    assert classify.main([str(run), str(photos), "--top", "2", "--csv", str(table), "--embeddings", str(vectors)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7 and all(len(re.findall(r"c\d [01]\.\d{3}", line)) == 2 and "(kNN vote)" in line
                                   for line in lines)
    assert [line for line in lines if "[blank]" in line] == [next(line for line in lines if "blank.png" in line)]
    rows = list(csv.DictReader(table.open()))
    assert [row["file"] for row in rows] == [line.split(": ")[0] for line in lines]
    assert float(rows[0]["p_1"]) >= float(rows[0]["p_2"]) and rows[0]["class_1"] in ("c0", "c1", "c2", "c3")
    saved = np.load(vectors)
    assert list(saved["names"]) == [row["file"] for row in rows] and saved["embeddings"].shape == (7, TINY_MODEL.dim)


def test_an_unreadable_file_gets_its_reason_and_the_rest_go_on(model_and_photos, capsys, tmp_path):
    run, photos = model_and_photos
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    code = classify.main([str(run / "model.pt"), str(tmp_path / "broken.jpg"), str(photos / "c0" / "0.png"),
                          str(tmp_path / "missing.png")])
    out = capsys.readouterr()
    assert code == 1 and "2 of 3 files could not be classified" in out.err
    lines = out.out.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'broken.jpg'}: error: ") and "0.png: c" in lines[1]
    assert lines[2] == f"{tmp_path / 'missing.png'}: error: missing.png is not a readable file"


def test_a_model_that_cannot_answer_so_is_refused_before_any_image(model_and_photos, capsys, tmp_path):
    run, photos = model_and_photos
    assert classify.main([str(run), str(photos), "--method", "head"]) == 2  # no class head: said at once
    assert "cannot classify by 'class head'" in capsys.readouterr().err
    assert classify.main([str(run / "last.pt"), str(photos)]) == 2
    assert "not a vit2040 model file (a training checkpoint; python -m core.export" in capsys.readouterr().err
    assert classify.main([str(run), str(tmp_path)]) == 2 and "no image files" in capsys.readouterr().err
