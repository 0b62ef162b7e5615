"""Tests for core.splits: ImageSet and DataSplits validation, fingerprints, the cached resize and framing."""
from __future__ import annotations

import pytest
import torch

from core.data.splits import DataSplits, ImageSet


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
