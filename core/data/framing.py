"""How the training images frame their object, and an image -> the pixels the model sees, framed alike.

`measure_framing` reads the facts from the training images themselves, never from a dataset's name:
whether they are a light object on a dark ground (Fashion-MNIST, MNIST, or a user's folder of such
images), how much of the frame the object spans and whether it is centred by extent or by mass.
`preprocess` then frames an upload the same way: for light-on-dark sets the object is found,
cropped, fitted keeping its aspect ratio, turned white-on-black and stretched; photos are resized
and centre-cropped as the training folders were (core.images.fit_square).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from core.data.images import fit_square, normalise_mode, to_tensor

WORK_SIDE = 512  # light-on-dark uploads are analysed at most this large: a 28 px model needs no more
MIN_CONTRAST = 16  # below this the "object" is noise: no cropping or stretching
OBJECT_FRACTION = 0.1  # a pixel brighter than this share of the peak (above background) is object
OBJECT_THRESHOLD = 32  # a training pixel above this is object; a border at or below it is dark ground
# A set is light-on-dark when nearly all its images have a dark border and something bright inside;
# photos with a dark background here and there (night, studio shots) stay photos.
LIGHT_ON_DARK_SHARE = 0.9


@dataclass(frozen=True)
class Framing:
    """How the training images frame their object; uploads are framed the same way."""

    light_on_dark: bool = False  # a light object on a dark ground: uploads are found, cropped, inverted
    fill: float = 1.0  # share of the frame the object's longer side spans (light-on-dark sets)
    by_mass: bool = False  # centred on its centre of mass (MNIST) rather than its bounding box


def measure_framing(images: torch.Tensor) -> Framing:
    """The framing of uint8 (N, C, H, W) training images.

    Fashion-MNIST's objects fill the frame, centred by extent; MNIST's digits sit in a 20 px box,
    centred on their mass; photos are none of this. Measuring covers all three, and user data.
    """
    weight = images.amax(dim=1).float()  # (N, H, W): the brightest channel
    ring = torch.cat([weight[:, 0], weight[:, -1], weight[:, :, 0], weight[:, :, -1]], dim=1)  # (N, 4S)
    mask = weight > OBJECT_THRESHOLD
    dark_ground = (ring.median(dim=1).values <= OBJECT_THRESHOLD) & mask.flatten(1).any(dim=1)
    if len(images) == 0 or dark_ground.float().mean() < LIGHT_ON_DARK_SHARE:
        return Framing()
    keep = mask.flatten(1).any(dim=1)
    weight, mask = weight[keep], mask[keep]
    index = torch.arange(images.shape[-1], dtype=torch.float32)
    extents, box_spread, mass_spread = [], 0.0, 0.0
    for across in (2, 1):  # reduce across columns -> per-row profiles (n, H), then across rows (n, W)
        first, last = _bounds(mask.any(dim=across))
        profile = weight.sum(dim=across)
        extents.append(last - first + 1)
        # Whichever centre the dataset aligned stays (nearly) put from image to image.
        box_spread += float(((first + last) / 2).std())
        mass_spread += float((profile @ index / profile.sum(dim=1)).std())
    fill = float((torch.maximum(*extents) / images.shape[-1]).median())
    return Framing(light_on_dark=True, fill=fill, by_mass=mass_spread < box_spread)


def _bounds(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L) bool -> first and last True index per row, (N,) float each."""
    index = torch.arange(present.shape[1])
    first = torch.where(present, index, present.shape[1]).amin(dim=1)
    last = torch.where(present, index, -1).amax(dim=1)
    return first.float(), last.float()


def preprocess(image: Image.Image, size: int, channels: int, framing: Framing = Framing()) -> torch.Tensor:
    """An image -> uint8 (channels, size, size), framed the way the training images were."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = normalise_mode(image)
    if framing.light_on_dark:
        square = to_tensor(_light_on_dark_square(image.convert("L"), size, framing))  # (1, S, S)
        return square.expand(channels, -1, -1).contiguous()
    return fit_square(to_tensor(image.convert("L" if channels == 1 else "RGB")), size).contiguous()


def _light_on_dark_square(gray: Image.Image, size: int, framing: Framing) -> Image.Image:
    gray = _shrink(gray, max(WORK_SIDE, 4 * size))
    pixels = np.asarray(gray, dtype=np.float32)  # (H, W)
    ring = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = float(np.median(ring))
    if background > 127:  # dark on light (product shot, pen on paper): flip to the datasets' polarity
        pixels, background = 255.0 - pixels, 255.0 - background
    framed = _frame(_crop_to_object(pixels, background), size, framing, background)  # (S, S)
    return Image.fromarray(_stretch(framed, background))


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    """Box-downscale so the longer side is at most max_side: later steps then cost the same for any upload."""
    width, height = image.size
    scale = max_side / max(width, height)
    if scale >= 1:
        return image
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)


def _crop_to_object(pixels: np.ndarray, background: float) -> np.ndarray:
    """The bounding box of what stands out above the background (the datasets' objects are trimmed)."""
    above = pixels - background
    peak = float(above.max())
    if peak < MIN_CONTRAST:
        return pixels
    mask = above > peak * OBJECT_FRACTION
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _frame(pixels: np.ndarray, size: int, framing: Framing, background: float) -> np.ndarray:
    """Fit (h, w) so its longer side spans size*fill, on a background canvas: float32 (size, size)."""
    height, width = pixels.shape
    scale = max(1, round(size * framing.fill)) / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    # Float mode "F" keeps sub-level precision until the contrast stretch; a box filter shrinks
    # without ringing, bilinear enlarges without blocks.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    resized = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), resample))
    top, left = _placement(resized - background, size, framing.by_mass)
    canvas = np.full((size, size), background, dtype=np.float32)
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas


def _placement(above: np.ndarray, size: int, by_mass: bool) -> tuple[int, int]:
    """Top-left corner for an (h, w) object in the frame: box-centred, or mass-centred but kept inside."""
    height, width = above.shape
    weight = np.clip(above, 0, None)
    total = float(weight.sum())
    if not by_mass or total <= 0:
        # An odd leftover puts the extra pixel above/left of the object, as Fashion-MNIST does.
        return (size - height + 1) // 2, (size - width + 1) // 2
    # Pixel-index centre of mass to index size/2: MNIST puts it at (14, 14) in a 28 px frame.
    mass_y = float(weight.sum(axis=1) @ np.arange(height)) / total
    mass_x = float(weight.sum(axis=0) @ np.arange(width)) / total
    top = min(max(round(size / 2 - mass_y), 0), size - height)
    left = min(max(round(size / 2 - mass_x), 0), size - width)
    return top, left


def _stretch(pixels: np.ndarray, background: float) -> np.ndarray:
    """Background -> 0 and the brightest object pixel -> 255, as in Fashion-MNIST and MNIST."""
    peak = float(pixels.max())
    if peak - background >= MIN_CONTRAST:
        pixels = (pixels - background) * (255.0 / (peak - background))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
