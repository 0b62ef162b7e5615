"""A person's own images: a folder with one subfolder of images per class, validated before anything
is decoded (each problem named with its path), decoded to squares, and split into train and test with the
seeded stratified hold-out (core.splits)."""
from __future__ import annotations

from pathlib import Path

import torch

from core.data.images import IMAGE_EXTENSIONS, load_square
from core.data.splits import DatasetError, DataSplits, ImageSet, holdout_mask


def _scan_folder(folder: Path) -> dict[str, list[Path]]:
    """Class name -> image paths, validated before anything is decoded."""
    if not folder.exists():
        raise DatasetError(f"dataset folder {folder} does not exist")
    if not folder.is_dir():
        raise DatasetError(f"dataset path {folder} is not a directory")
    visible = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    classes = {d.name: sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith(".")
                              and f.suffix.lower() in IMAGE_EXTENSIONS)
               for d in visible if d.is_dir()}
    if not classes:
        raise DatasetError(f"no class subfolders in {folder}: put each class's images "
                           "in its own subfolder")
    if not any(classes.values()):
        raise DatasetError(f"no images in the class subfolders of {folder} "
                           f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    if len(classes) < 2:
        raise DatasetError(f"{folder} has only one class subfolder ({next(iter(classes))!r}); "
                           "need at least 2 classes")
    _check_class_counts(classes, folder)
    return classes


def folder_files(path: str) -> list[Path]:
    """Every image file of the folder dataset at `path`, validated as load_folder validates it, without
    decoding any (what core.data.sources.survey reads the headers of)."""
    return sorted(f for found in _scan_folder(Path(path).expanduser()).values() for f in found)


def _check_class_counts(classes: dict[str, list[Path]], folder: Path, note: str = "") -> None:
    for name, files in classes.items():
        if len(files) < 2:
            raise DatasetError(f"class {name!r} in {folder} has {len(files)} image(s){note}; "
                               "every class needs at least 2 (one to train on, one to test)")


def load_folder(path: str, size: int, seed: int) -> DataSplits:
    """`path`'s images as squares of `size` (channels: 3 when any image has colour), split with `seed`;
    unreadable files are skipped and listed in `skipped`, not fatal."""
    if not path:
        raise DatasetError("folder: needs a path, e.g. folder:/data/my_images")
    folder = Path(path).expanduser().resolve()
    classes = _scan_folder(folder)
    decoded: dict[str, list[torch.Tensor]] = {}
    names, skipped = [], []
    for name, files in classes.items():
        decoded[name] = []
        for file in files:
            try:
                decoded[name].append(load_square(file, size))
                names.append(file.relative_to(folder).as_posix())
            # Pillow's plugins raise many exception types on malformed input; one bad file in a
            # user's folder must not abort the load, and the reason is reported with the path.
            except Exception as exc:  # noqa: BLE001
                skipped.append(f"{file}: {exc}")
    _check_class_counts(decoded, folder, note=f" after skipping {len(skipped)} unreadable file(s)")
    channels = max(t.shape[0] for tensors in decoded.values() for t in tensors)
    images = torch.stack([t.expand(channels, -1, -1) for ts in decoded.values() for t in ts])
    labels = torch.tensor([c for c, ts in enumerate(decoded.values()) for _ in ts])
    data = ImageSet(images, labels, tuple(classes), tuple(names))
    test_mask = holdout_mask(labels, seed)
    return DataSplits(f"folder:{folder}", data.subset(~test_mask), data.subset(test_mask),
                      tuple(skipped))
