"""An uploaded photo -> the uint8 image the model sees.

Decoding is defensive (empty, truncated, foreign and oversized files are refused with a message
naming only the file; every Pillow mode is normalised; EXIF orientation is applied). Preprocessing
frames the photo like the training images: for light-on-dark sets (Fashion-MNIST, MNIST) the
object is found, cropped, fitted keeping its aspect ratio and placed as the training set places
its objects (`Framing`, measured from the training images by `framing_of`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from core.data import WIDE_GRAY_MODES, _flatten_alpha

WORK_SIDE = 512  # light-on-dark uploads are analysed at most this large: a 28 px model needs no more
MIN_CONTRAST = 16  # below this the "object" is noise: no cropping or stretching
OBJECT_FRACTION = 0.1  # a pixel brighter than this share of the peak (above background) is object
OBJECT_THRESHOLD = 32  # a training pixel above this is object (white-on-black images)

class ImageError(ValueError):
    """An upload that cannot be classified; the message says why."""



def load_upload(source: str | Path | bytes | Image.Image, max_pixels: int = 40_000_000) -> Image.Image:
    """Open an upload as an 'L' or 'RGB' image with its EXIF orientation applied.

    Image.open reads only the header, so the pixel count is checked before any pixel is decoded:
    a decompression bomb is refused before it can allocate memory.
    """
    image = source if isinstance(source, Image.Image) else _open(source)
    try:
        width, height = image.size
        if width * height == 0:
            raise ImageError("the image has no pixels")
        if width * height > max_pixels:
            raise ImageError(f"the image is {width}×{height} = {width * height:,} pixels, over the limit "
                             f"of {max_pixels:,} (decompression-bomb guard); scale it down and retry")
        try:
            upright = ImageOps.exif_transpose(image)  # decodes the pixels; always a new image
        # Pillow's decoders raise many exception types on malformed data (OSError on truncation,
        # SyntaxError, ValueError, struct.error...); to the user they all mean the same thing.
        except Exception as exc:  # noqa: BLE001
            raise ImageError(f"the image data is corrupt or truncated ({exc})") from exc
    finally:
        if image is not source:
            image.close()
    return _normalise_mode(upright)


def _open(source: str | Path | bytes) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("the upload is empty (0 bytes)")
        stream, name = io.BytesIO(source), "the upload"
    else:
        stream = Path(source)
        name = stream.name  # only the file's name: in the app the rest is a server temp path
        if not stream.is_file():
            raise ImageError(f"{name} is not a readable file")
        if stream.stat().st_size == 0:
            raise ImageError(f"{name} is empty (0 bytes)")
    try:
        return Image.open(stream)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name} is far too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} is not an image format Pillow can read") from exc
    except OSError as exc:
        raise ImageError(f"cannot read {name}: {exc}") from exc


def _normalise_mode(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L' or 'RGB'; transparency is composited on white, as for training folders."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode in WIDE_GRAY_MODES:
        # 16-bit data (0..65535) is rescaled rather than clipped to white; mode I/F carries no bit
        # depth, so values above 255 are taken to be 16-bit too (as core.data does).
        wide = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if image.mode.startswith("I;16") or wide.max() > 255:
            wide = wide / 257.0
        return Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8))
    try:
        return _flatten_alpha(image)
    except (ValueError, OSError) as exc:
        raise ImageError(f"unsupported image mode {image.mode}") from exc


@dataclass(frozen=True)
class Framing:
    """Where white-on-black training images put their object; uploads are framed the same way."""

    fill: float = 1.0  # share of the frame the object's longer side spans
    by_mass: bool = False  # centred on its centre of mass (MNIST) rather than its bounding box


def preprocess(image: Image.Image, size: int, channels: int, light_on_dark: bool, *,
               framing: Framing = Framing()) -> torch.Tensor:
    """An image -> uint8 (channels, size, size), framed the way the training images were.

    light_on_dark (Fashion-MNIST, MNIST): grayscale, cropped to the object, fitted with its aspect
    ratio kept, turned white-on-black and stretched to 0..255. Otherwise the shorter side is resized
    to `size` and the centre cropped, as core.data loads photos.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = _normalise_mode(image)
    if light_on_dark:
        square = _light_on_dark_square(image.convert("L"), size, framing)
    else:
        square = _centre_square(image, size)
    pixels = torch.from_numpy(np.array(square.convert("L" if channels == 1 else "RGB")))  # (S, S) or (S, S, 3)
    return pixels[None] if channels == 1 else pixels.permute(2, 0, 1).contiguous()


def _centre_square(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # reducing_gap: a fast integer reduction first, with results Pillow documents as indistinguishable.
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side),
                        reducing_gap=3.0)


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


def framing_of(images: torch.Tensor) -> Framing:
    """Measure how white-on-black uint8 (N, C, H, W) training images frame their object.

    Fashion-MNIST's objects fill the frame, centred by extent; MNIST's digits sit in a 20 px box,
    centred on their mass. Measuring covers both (and user data) without naming datasets.
    """
    weight = images.amax(dim=1).float()  # (N, H, W)
    mask = weight > OBJECT_THRESHOLD
    keep = mask.flatten(1).any(dim=1)
    if not keep.any():
        return Framing()
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
    return Framing(fill=fill, by_mass=mass_spread < box_spread)


def _bounds(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L) bool -> first and last True index per row, (N,) float each."""
    index = torch.arange(present.shape[1])
    first = torch.where(present, index, present.shape[1]).amin(dim=1)
    last = torch.where(present, index, -1).amax(dim=1)
    return first.float(), last.float()


