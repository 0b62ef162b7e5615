"""`python -m scripts.make_folder_dataset OUT`: a folder dataset in the shapes people bring.

There are no photo datasets on these machines, so this makes one with real visual content: Fashion-MNIST
garments or MNIST digits (the class is the garment or the digit), coloured and composited at a random
scale and position onto random crops of the two photos scikit-learn ships (a temple and a flower), saved
as JPEG or PNG, in RGB or grayscale, from 64 to 1,000 px a side and not always square, in unequal
classes (`--imbalance`: the largest class over the smallest, counts spaced geometrically between).
`--plain` instead writes the source's own 28 px images as PNG files, one subfolder per class (its 2,040
training images and 510 of its test images): Fashion-MNIST or MNIST exported the way a person would hold them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from core.data.sources import load_dataset

SIDES = (64, 1000)  # shorter sides drawn log-uniformly between these
ASPECTS = (0.75, 1.33)  # width over height
OBJECT_SHARE = (0.5, 0.9)  # the object's side over the image's shorter side: the subject of the photo
OPACITY = 3.0  # the source's gray levels times this (clipped) is the object's opacity: a solid silhouette
GRAY_SHARE = 0.3  # images saved in grayscale
JPEG_SHARE = 0.6  # images saved as JPEG (the rest PNG)


def class_counts(n_classes: int, largest: int, imbalance: float) -> list[int]:
    """Images per class from `largest` down to largest / imbalance, geometrically spaced."""
    ratios = np.geomspace(1.0, 1.0 / imbalance, n_classes) if n_classes > 1 else np.ones(1)
    return [max(2, round(largest * r)) for r in ratios]


def composite(obj: np.ndarray, backgrounds: list[np.ndarray], rng: np.random.Generator) -> Image.Image:
    """A 28 px white-on-black object (H, W) uint8, coloured and pasted onto a random crop of a photo."""
    short = round(float(np.exp(rng.uniform(*np.log(SIDES)))))
    aspect = rng.uniform(*ASPECTS)
    width, height = (round(short * aspect), short) if aspect >= 1 else (short, round(short / aspect))
    photo = backgrounds[rng.integers(len(backgrounds))]
    crop = max(32, round(min(photo.shape[:2]) * rng.uniform(0.3, 1.0)))
    top, left = rng.integers(0, photo.shape[0] - crop + 1), rng.integers(0, photo.shape[1] - crop + 1)
    background = Image.fromarray(photo[top:top + crop, left:left + crop]).resize((width, height),
                                                                                 Image.Resampling.BILINEAR)
    side = max(8, round(min(width, height) * rng.uniform(*OBJECT_SHARE)))
    solid = np.clip(obj.astype(np.float32) * OPACITY, 0, 255).astype(np.uint8)
    mask = Image.fromarray(solid).resize((side, side), Image.Resampling.BILINEAR)
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    x, y = rng.integers(0, width - side + 1), rng.integers(0, height - side + 1)
    background.paste(Image.new("RGB", (side, side), colour), (int(x), int(y)), mask)
    return background


def write_composites(out: Path, source: str, imbalance: float, largest: int, n_classes: int, seed: int) -> dict:
    data = load_dataset(source, seed=seed)
    images = torch.cat([data.train.images, data.test.images])[:, 0].numpy()  # (N, 28, 28)
    labels = torch.cat([data.train.labels, data.test.labels]).numpy()
    rng = np.random.default_rng(seed)
    backgrounds = list(load_sample_images().images)
    counts = class_counts(n_classes, largest, imbalance)
    written = {}
    for cls, count in enumerate(counts):
        name = data.class_names[cls].replace("/", "-")
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        members = rng.permutation(np.flatnonzero(labels == cls))[:count]
        for i, index in enumerate(members):
            image = composite(images[index], backgrounds, rng)
            if rng.random() < GRAY_SHARE:
                image = image.convert("L")
            if rng.random() < JPEG_SHARE:
                image.save(folder / f"{i:04d}.jpg", quality=int(rng.integers(70, 96)))
            else:
                image.save(folder / f"{i:04d}.png")
        written[name] = len(members)
    return written


def write_plain(out: Path, source: str, seed: int) -> dict:
    """The source's 2,040 training images and a quarter as many of its test images (the same share of
    each class) as 28 px PNGs: the folder loader's own 80/20 split then trains on about 2,040."""
    data = load_dataset(source, seed=seed)
    per_class = len(data.train) // 4 // len(data.class_names)
    test = data.test.subset(torch.cat([torch.nonzero(data.test.labels == c).flatten()[:per_class]
                                       for c in range(len(data.class_names))]))
    written = {}
    for split in (data.train, test):
        for index, (image, label) in enumerate(zip(split.images[:, 0].numpy(), split.labels.tolist())):
            name = data.class_names[label].replace("/", "-")
            (out / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(out / name / f"{len(split)}-{index:05d}.png")
            written[name] = written.get(name, 0) + 1
    return written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scripts.make_folder_dataset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to create (one subfolder per class)")
    parser.add_argument("--source", choices=("fashion", "digits"), default="fashion")
    parser.add_argument("--plain", action="store_true", help="the source's own 28 px images as PNGs")
    parser.add_argument("--classes", type=int, default=5, help="how many of the source's classes (composites)")
    parser.add_argument("--largest", type=int, default=400, help="images in the largest class (composites)")
    parser.add_argument("--imbalance", type=float, default=4.0, help="largest class over smallest (composites)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        print(f"error: {args.out} exists and is not empty", file=sys.stderr)
        return 2
    if not 2 <= args.classes <= 10 or args.imbalance < 1 or args.largest < 2:
        print("error: need 2 <= --classes <= 10, --imbalance >= 1 and --largest >= 2", file=sys.stderr)
        return 2
    written = (write_plain(args.out, args.source, args.seed) if args.plain else
               write_composites(args.out, args.source, args.imbalance, args.largest, args.classes, args.seed))
    print(f"wrote {sum(written.values())} images to {args.out}: " + ", ".join(f"{k} {v}" for k, v in written.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
