"""Bad datasets, given to the running app's Start as a folder path (the one path a person may type)
and to the command line: each is refused with a message naming the problem and the path, before
any training step."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reliability.conftest import ROOT, app_error, ensure_idle, start, wait_status

pytestmark = [pytest.mark.reliability(section="Bad datasets"), pytest.mark.slow]


def image(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def classes(root: Path, counts: dict[str, int]) -> None:
    for name, count in counts.items():
        for i in range(count):
            image(root / name / f"{i}.png", seed=i)


def junk(root: Path) -> None:
    """What real folders collect: hidden files and folders, notes, OS litter, images nested too deep."""
    (root / ".cache").mkdir(parents=True)
    image(root / ".cache" / "thumb.png")
    for folder in (root / "cats", root / "dogs"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (folder / "._0.png").write_bytes(b"\0\5\26\7 AppleDouble")
        (folder / "notes.txt").write_text("to do: sort these")
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
        image(folder / "deeper" / "nested.png")  # only a class folder's own files count
    (root / "README.md").write_text("my pictures")


def unreadable(root: Path) -> None:
    for name in ("cats", "dogs"):
        (root / name).mkdir(parents=True)
        (root / name / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n and then nothing")
        (root / name / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
        (root / name / "2.png").write_text("not a picture")


# case -> (how to build the folder (None: leave it missing), what the message must say)
CASES: dict[str, tuple[Callable[[Path], None] | None, str]] = {
    "missing folder": (None, "does not exist"),
    "empty folder": (lambda root: root.mkdir(), "no class subfolders"),
    "one class only": (lambda root: classes(root, {"cats": 5}), "only one class subfolder ('cats'); need at least 2"),
    "a class with one image": (lambda root: classes(root, {"cats": 5, "dogs": 1}),
                               "class 'dogs' in {root} has 1 image(s)"),
    "a folder of unreadable files": (unreadable, "has 0 image(s) after skipping 6 unreadable file(s)"),
    "nested junk only (hidden files, non-images)": (junk, "no images in the class subfolders of {root}"),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.reliability(case=n)) for n in CASES])
def test_bad_dataset_is_refused_before_training(name, app, client, tmp_path, record):
    build, expected = CASES[name]
    root = tmp_path / "photos"
    if build is not None:
        build(root)
    ensure_idle(client)
    start(client, dataset="folder", folder=str(root), epochs=2)
    ended = wait_status(client, lambda s: s.status not in ("idle", "running"), timeout=60)
    assert ended.status == "failed", ended.text
    message = ended.text.split("\n", 1)[1].strip()
    assert expected.format(root=root) in message and str(root) in message, message
    # No RunStarted ever came: the status line still counts 0 of 0 steps, and the run saved nothing.
    assert (ended.step, ended.total) == (0, 0), ended.text
    run_id = ended.label.split(" · ")[0]
    assert not (app.runs_dir / run_id).exists()
    record(f"status “failed”, 0 steps: “{message}”")


@pytest.mark.reliability(case="junk beside real classes")
def test_junk_beside_real_classes_is_ignored(app, client, tmp_path, record):
    root = tmp_path / "photos"
    classes(root, {"cats": 5, "dogs": 5})
    junk(root)
    ensure_idle(client)
    start(client, dataset="folder", folder=str(root), epochs=1, batch_size=8)
    ended = wait_status(client, lambda s: s.status not in ("idle", "running"), timeout=120)
    assert ended.status == "completed", ended.text
    # 4 + 4 training images (one of each class's 5 is held out for testing): the training set is
    # exactly the class folders' own images, none of the junk.
    message = app_error(lambda: client.predict(99, api_name="/thumbnail"))
    assert "the set has 8" in message, message
    record(f"trained, junk skipped silently: status “{ended.text.splitlines()[0]}”; “{message}”")


@pytest.mark.reliability(case="the command line, given the folder of unreadable files")
def test_the_command_line_refuses_a_bad_folder_with_a_message(tmp_path, record):
    root = tmp_path / "photos"
    unreadable(root)
    done = subprocess.run([sys.executable, "-m", "core.train", "--dataset", f"folder:{root}", "--out",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert "after skipping 6 unreadable file(s)" in message and str(root) in message, message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.pt"))
    record(f"exit status 2 before any step: “{message}”")
