"""Tests for core.folder_data: a folder of a person's images, its modes, its split and its errors."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import images
from core.data import sources as data
from core.data.sources import load_dataset
from core.data.splits import DatasetError
from tests.core.conftest import random_rgb, save

SIZE = 16


def two_class_folder(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(1)
    for cls in ("ants", "bees"):
        for i in range(n):
            save(root / cls / f"{i}.png", random_rgb(rng, 20 + i, 24))
    return root


def build_mixed_folder(root: Path) -> dict[str, int]:
    rng = np.random.default_rng(2)
    transparent = root / "a_transparent"
    save(transparent / "rgba.png", Image.new("RGBA", (30, 20), (0, 0, 0, 0)))
    save(transparent / "la.png", Image.new("LA", (20, 30), (0, 0)))
    palette = Image.new("P", (25, 25), 3)
    palette.putpalette([0, 0, 0] * 256)
    save(transparent / "palette.png", palette, transparency=3)
    cmyk = root / "b_cmyk"
    for i in range(2):
        save(cmyk / f"red{i}.jpg", Image.new("CMYK", (24, 24), (0, 255, 255, 0)), quality=95)
    gray = root / "c_gray"
    save(gray / "l.png", Image.new("L", (20, 20), 100))
    save(gray / "l.bmp", Image.new("L", (20, 20), 100))
    save(gray / "wide.png", Image.new("I;16", (20, 20), 25700))  # 25700 / 257 = 100
    colour = root / "d_rgb"
    for i, ext in enumerate(["JPEG", "gif", "webp", "tiff", "png", "jpg"]):
        save(colour / f"img{i}.{ext}", random_rgb(rng, 20 + 5 * i, 40 - 3 * i))
    # Everything below must be ignored without being reported.
    (colour / ".hidden.png").write_bytes(b"junk")
    (colour / "notes.txt").write_text("not an image")
    (root / ".git").mkdir()
    save(root / ".git" / "x.png", Image.new("RGB", (8, 8)))
    (root / "README.md").write_text("readme")
    return {"a_transparent": 3, "b_cmyk": 2, "c_gray": 3, "d_rgb": 6}


def test_folder_mixed_modes(tmp_path):
    counts = build_mixed_folder(tmp_path)
    splits = load_dataset(f"folder:{tmp_path}", size=SIZE)
    assert splits.name == f"folder:{tmp_path.resolve()}" and splits.skipped == ()
    assert splits.class_names == tuple(counts)
    assert splits.train.images.shape[1:] == (3, SIZE, SIZE)
    expected_test = [max(1, round(n * 0.2)) for n in counts.values()]
    assert torch.bincount(splits.test.labels).tolist() == expected_test
    assert torch.bincount(splits.train.labels).tolist() == [
        n - t for n, t in zip(counts.values(), expected_test)]

    images = torch.cat([splits.train.images, splits.test.images]).int()
    labels = torch.cat([splits.train.labels, splits.test.labels])
    assert torch.all(images[labels == 0] == 255)  # transparency composited on white
    red = images[labels == 1].float().mean(dim=(0, 2, 3))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    gray = images[labels == 2]
    assert torch.all((gray - 100).abs() <= 1)  # 16-bit scaled, not clipped to 255


def test_folder_grayscale_only_gives_one_channel(tmp_path):
    for cls in ("x", "y"):
        save(tmp_path / cls / "l.png", Image.new("L", (20, 30), 40))
        save(tmp_path / cls / "bits.png", Image.new("1", (30, 20), 1))
        gradient = np.linspace(0, 65535, 20 * 20).reshape(20, 20).astype(np.uint16)
        save(tmp_path / cls / "wide.png", Image.fromarray(gradient))
    splits = load_dataset(f"folder:{tmp_path}", size=SIZE)
    assert splits.train.channels == 1
    values = torch.cat([splits.train.images, splits.test.images])
    assert set(torch.unique(values).tolist()) > {40, 255}
    assert len(torch.unique(values)) > 50  # the gradient survived with its tones spread out


def test_folder_applies_exif_orientation(tmp_path):
    # Stored landscape, dark left half; orientation 6 means "rotate 90 degrees clockwise to view",
    # so the displayed image is portrait with the dark half on top.
    stored = np.full((20, 40, 3), 255, dtype=np.uint8)
    stored[:, :20] = 0
    exif = Image.Exif()
    exif[0x0112] = 6
    for cls in ("p", "q"):
        for i in range(2):
            save(tmp_path / cls / f"{i}.jpg", Image.fromarray(stored), exif=exif, quality=95)
    splits = load_dataset(f"folder:{tmp_path}", size=SIZE)
    for image in torch.cat([splits.train.images, splits.test.images]).float():
        assert image[:, :4].mean() < 40 and image[:, -4:].mean() > 215


def test_folder_split_is_seeded_and_location_independent(tmp_path):
    source = two_class_folder(tmp_path / "one", n=10)
    first = load_dataset(f"folder:{source}", size=SIZE)
    assert len(first.train) == 16 and len(first.test) == 4
    assert load_dataset(f"folder:{source}", size=SIZE).fingerprint == first.fingerprint
    moved = shutil.copytree(source, tmp_path / "two")
    assert load_dataset(f"folder:{moved}", size=SIZE).fingerprint == first.fingerprint
    assert load_dataset(f"folder:{source}", size=SIZE, seed=5).fingerprint != first.fingerprint


def test_folder_two_images_per_class_gives_one_and_one(tmp_path):
    splits = load_dataset(f"folder:{two_class_folder(tmp_path, n=2)}", size=SIZE)
    assert splits.train.labels.tolist() == [0, 1] and splits.test.labels.tolist() == [0, 1]
    assert splits.train.size == SIZE and splits.train.channels == 3


def test_folder_default_size(tmp_path):
    splits = load_dataset(f"folder:{two_class_folder(tmp_path)}")
    assert splits.train.size == data.DEFAULT_SIZE


def test_folder_skips_and_lists_unreadable_files(tmp_path):
    two_class_folder(tmp_path)
    garbage = tmp_path / "ants" / "garbage.png"
    garbage.write_bytes(b"\x89PNG but not really")
    truncated = tmp_path / "bees" / "truncated.jpg"
    full = save(tmp_path / "full.jpg", random_rgb(np.random.default_rng(3), 64, 64)).read_bytes()
    truncated.write_bytes(full[: len(full) // 3])
    splits = load_dataset(f"folder:{tmp_path}", size=SIZE)
    assert len(splits.skipped) == 2
    assert any(entry.startswith(f"{garbage}: ") for entry in splits.skipped)
    assert any(entry.startswith(f"{truncated}: ") for entry in splits.skipped)
    assert len(splits.train) + len(splits.test) == 6


def test_folder_skips_decompression_bombs(tmp_path, monkeypatch):
    two_class_folder(tmp_path)
    big = save(tmp_path / "bees" / "big.png", Image.new("RGB", (40, 40)))
    monkeypatch.setattr(images, "MAX_PIXELS", 30 * 30)
    splits = load_dataset(f"folder:{tmp_path}", size=SIZE)
    assert len(splits.skipped) == 1 and splits.skipped[0].startswith(f"{big}: ")
    assert "decompression-bomb" in splits.skipped[0]


def test_folder_class_emptied_by_skipping(tmp_path):
    two_class_folder(tmp_path)
    (tmp_path / "bees" / "1.png").write_bytes(b"broken")
    (tmp_path / "bees" / "2.png").write_bytes(b"broken")
    with pytest.raises(DatasetError, match="'bees'.*after skipping 2 unreadable") as info:
        load_dataset(f"folder:{tmp_path}", size=SIZE)
    assert str(tmp_path) in str(info.value)


def _folder_error(spec_path: Path | str) -> str:
    with pytest.raises(DatasetError) as info:
        load_dataset(f"folder:{spec_path}", size=SIZE)
    return str(info.value)


def test_folder_errors_name_problem_and_path(tmp_path):
    missing = tmp_path / "missing"
    assert "does not exist" in _folder_error(missing) and str(missing) in _folder_error(missing)

    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"x")
    message = _folder_error(a_file)
    assert "not a directory" in message and str(a_file) in message

    empty = tmp_path / "empty"
    save(empty / "loose.png", Image.new("RGB", (8, 8)))
    (empty / ".hidden").mkdir()
    message = _folder_error(empty)
    assert "no class subfolders" in message and str(empty) in message

    no_images = tmp_path / "no_images"
    (no_images / "cats").mkdir(parents=True)
    (no_images / "cats" / "notes.txt").write_text("x")
    (no_images / "dogs").mkdir()
    message = _folder_error(no_images)
    assert "no images" in message and str(no_images) in message


def test_folder_errors_on_class_counts(tmp_path):
    single = tmp_path / "single"
    for i in range(3):
        save(single / "only" / f"{i}.png", Image.new("RGB", (8, 8)))
    message = _folder_error(single)
    assert "at least 2 classes" in message and "'only'" in message and str(single) in message

    lonely = two_class_folder(tmp_path / "lonely")
    save(lonely / "lonely_class" / "one.png", Image.new("RGB", (8, 8)))
    (lonely / "lonely_class" / ".hidden.png").write_bytes(b"hidden files do not count")
    message = _folder_error(lonely)
    assert "'lonely_class'" in message and "1 image" in message and str(lonely) in message

    with pytest.raises(DatasetError, match="needs a path"):
        load_dataset("folder:")
