"""The folder-dataset generator: real on-disk shapes (JPEG and PNG, RGB and gray, 64-1,000 px, unequal
classes) that the folder loader reads like a person's own folder."""
from collections import Counter

from PIL import Image

from core.data.sources import load_dataset
from scripts.make_folder_dataset import class_counts, main


def test_counts_fall_geometrically_from_the_largest_to_the_smallest():
    assert class_counts(3, 40, 4.0) == [40, 20, 10]
    assert class_counts(2, 5, 1.0) == [5, 5]


def test_composites_come_in_the_shapes_people_have(tmp_path):
    out = tmp_path / "garments"
    assert main([str(out), "--classes", "3", "--largest", "24", "--imbalance", "3"]) == 0
    files = sorted(out.glob("*/*"))
    counts = Counter(f.parent.name for f in files)
    assert sorted(counts.values()) == [8, 14, 24]
    kinds = Counter((f.suffix, Image.open(f).mode) for f in files)
    assert {suffix for suffix, _ in kinds} == {".jpg", ".png"} and {mode for _, mode in kinds} == {"RGB", "L"}
    sides = [min(Image.open(f).size) for f in files]
    assert min(sides) >= 48 and max(max(Image.open(f).size) for f in files) <= 1400 and len(set(sides)) > 20
    splits = load_dataset(f"folder:{out}", size=32)
    assert splits.train.channels == 3 and len(splits.train) + len(splits.test) == 46
    assert main([str(out)]) == 2  # never writes into a folder that is not empty


def test_plain_export_holds_the_training_images_and_a_quarter_as_many_test_images(tmp_path):
    out = tmp_path / "digits"
    assert main([str(out), "--source", "digits", "--plain"]) == 0
    files = sorted(out.glob("*/*.png"))
    assert len(files) == 2040 + 510 and len({f.parent.name for f in files}) == 10
    assert Image.open(files[0]).size == (28, 28)
    splits = load_dataset(f"folder:{out}")
    assert len(splits.train) == 2040 and splits.train.framing.light_on_dark  # measured, not named
