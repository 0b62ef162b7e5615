"""How often the classifier says "unlike the training images", and on what: `python -m bench.honest_answers CKPT`.

A trained checkpoint's published model (core.classify) answers images of four kinds; the table gives the
share flagged as unlike the training images (nearest training similarity below the UNLIKE_SHARE
percentile of the training images' own), and the share refused as blank:
- its own dataset's test images, as stored (e.g. Fashion-MNIST's light garments on black);
- the same test images as product photos: dark on a white ground, enlarged to 112 px;
- other things drawn the same way: MNIST digits for a Fashion-MNIST model (and garments for a digits one);
- real photos of other things: random crops of the two photos scikit-learn ships (a temple and a flower);
- blank images: flat white, flat black, a fully transparent PNG, flat gray.
Asserts nothing; prints a markdown table.
"""
from __future__ import annotations

import argparse
import io
import sys

import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

from core.data.images import ImageError, decode
from core.data.sources import load_dataset
from core.serve.classifier import Classifier
from core.serve.model_file import UNLIKE_SHARE, ModelFile
from core.trainer.checkpoint import Checkpoint

N_IMAGES = 300


def _pil(image: np.ndarray) -> Image.Image:
    """uint8 (C, H, W) -> PIL."""
    return Image.fromarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))


def _as_product_photo(image: Image.Image) -> Image.Image:
    """Dark on white at 112 px, as a shop photographs a garment."""
    inverted = Image.eval(image.convert("L"), lambda v: 255 - v)
    return inverted.resize((112, 112), Image.Resampling.BICUBIC).convert("RGB")


def _photo_crops(n: int, rng: np.random.Generator) -> list[Image.Image]:
    photos = load_sample_images().images
    crops = []
    for _ in range(n):
        photo = photos[rng.integers(len(photos))]
        side = int(rng.integers(64, min(photo.shape[:2])))
        top, left = rng.integers(0, photo.shape[0] - side), rng.integers(0, photo.shape[1] - side)
        crops.append(Image.fromarray(photo[top:top + side, left:left + side]))
    return crops


def _blanks() -> list[Image.Image]:
    transparent = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(transparent, format="PNG")
    return [Image.new("L", (64, 64), 255), Image.new("L", (64, 64), 0), decode(transparent.getvalue()),
            Image.new("RGB", (300, 200), (128, 128, 128))]


def rates(classifier: Classifier, images: list[Image.Image]) -> tuple[float, float, float]:
    """(share flagged unlike, share refused blank, median typicality) over `images`."""
    flagged = blank = 0
    typical = []
    for image in images:
        try:
            prediction = classifier.classify(image)
        except ImageError:
            blank += 1
            continue
        flagged += prediction.unlike_training
        typical.append(prediction.typicality)
    return flagged / len(images), blank / len(images), float(np.median(typical)) if typical else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.honest_answers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--n", type=int, default=N_IMAGES, help="images per kind")
    args = parser.parse_args(argv)
    checkpoint = Checkpoint.load(args.checkpoint)
    data = load_dataset(checkpoint.config.dataset, size=checkpoint.config.data_size, seed=checkpoint.config.seed)
    checkpoint.check_matches(data)
    classifier = Classifier(ModelFile.from_checkpoint(checkpoint, data.train))
    rng = np.random.default_rng(0)
    tests = [_pil(image) for image in data.test.images[:args.n].numpy()]
    other = "digits" if checkpoint.config.dataset != "digits" else "fashion"
    others = [_pil(image) for image in load_dataset(other).test.images[:args.n].numpy()]
    kinds = {f"{checkpoint.config.dataset} test images, as stored": tests,
             f"{checkpoint.config.dataset} test images as product photos (dark on white, 112 px)":
                 [_as_product_photo(image) for image in tests],
             f"{other} test images (other things, drawn the same way)": others,
             "crops of real photos (scikit-learn's temple and flower)": _photo_crops(args.n, rng),
             "blank images (white, black, transparent, gray)": _blanks()}
    print(f"checkpoint {args.checkpoint}: {checkpoint.config.dataset}, {checkpoint.config.objective}, "
          f"epoch {checkpoint.epoch}; flagged below the {UNLIKE_SHARE:.0%} percentile of the training images' "
          "own nearest-neighbour similarity\n")
    print("| images | n | flagged unlike the training images | refused as blank | median typicality |")
    print("|---|---|---|---|---|")
    for name, images in kinds.items():
        flagged, blank, typical = rates(classifier, images)
        print(f"| {name} | {len(images)} | {flagged:.1%} | {blank:.0%} | {typical:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
