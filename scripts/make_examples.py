"""Write the click-to-try example uploads in assets/examples/ (deterministic).

Run from the repository root: `.venv/bin/python -m scripts.make_examples`.

Garments come from the Fashion-MNIST test split, rendered as product photos (dark on white,
upscaled, non-square white margin); digits come from the digits test split, rendered as blue ink
on cream paper. Each is the test image closest to its class's mean, so the examples are typical
of their class, and none of them is a training image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.data.sources import load_dataset
from core.data.splits import ImageSet

OUT_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"
GARMENTS = {"t-shirt": 0, "trouser": 1, "pullover": 2, "dress": 3, "sneaker": 7, "bag": 8, "ankle-boot": 9}
DIGITS = (3, 7)
PRODUCT_SCALE = 8  # 28 px -> 224 px
PRODUCT_MARGIN = (40, 16)  # white margin left/right and top/bottom: a non-square photo
PEN_SCALE = 5
PAGE_SIZE = (300, 240)
PAGE_OFFSET = (60, 40)  # the digit sits off-centre on the page, as a quick snapshot would
PAPER = np.array([250, 245, 230], dtype=np.float32)
INK = np.array([25, 35, 110], dtype=np.float32)


def typical_index(images: ImageSet, label: int) -> int:
    """Index of the image of `label` closest (L2 in pixels) to that class's mean image."""
    members = torch.nonzero(images.labels == label).flatten()
    pixels = images.images[members].flatten(1).float()  # (m, C*H*W)
    distance = (pixels - pixels.mean(dim=0)).norm(dim=1)
    return int(members[distance.argmin()])


def product_photo(image: np.ndarray) -> Image.Image:
    """White-on-black uint8 (28, 28) -> a dark-on-white 'L' product shot with a wide white margin."""
    side = image.shape[0] * PRODUCT_SCALE
    dark = Image.fromarray(255 - image).resize((side, side), Image.Resampling.BICUBIC)
    margin_x, margin_y = PRODUCT_MARGIN
    canvas = Image.new("L", (side + 2 * margin_x, side + 2 * margin_y), 255)
    canvas.paste(dark, (margin_x, margin_y))
    return canvas


def pen_on_paper(image: np.ndarray) -> Image.Image:
    """White-on-black uint8 (28, 28) -> an RGB page with the digit in ink, off-centre."""
    side = image.shape[0] * PEN_SCALE
    ink = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float32)
    coverage = np.zeros((PAGE_SIZE[1], PAGE_SIZE[0], 1), dtype=np.float32)  # (H, W, 1) ink share
    left, top = PAGE_OFFSET
    coverage[top:top + side, left:left + side, 0] = ink / 255.0
    page = PAPER * (1.0 - coverage) + INK * coverage  # (H, W, 3)
    return Image.fromarray(np.rint(page).astype(np.uint8))


def examples() -> dict[str, Image.Image]:
    fashion, digits = load_dataset("fashion").test, load_dataset("digits").test
    out = {f"{name}.png": product_photo(fashion.images[typical_index(fashion, label), 0].numpy())
           for name, label in GARMENTS.items()}
    for digit in DIGITS:
        out[f"digit-{digit}.png"] = pen_on_paper(digits.images[typical_index(digits, digit), 0].numpy())
    return out


def main() -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, image in examples().items():
        path = OUT_DIR / name
        image.save(path, optimize=True)
        print(f"{path.relative_to(OUT_DIR.parent.parent)}: {image.width}x{image.height}, "
              f"{path.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
