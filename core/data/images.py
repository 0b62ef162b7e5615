"""Image files -> pixels: the one place that decodes a file and resizes pixels to a square side.

Training folders and uploaded photos both come through `decode`, so they share one pixel limit, one
treatment of every Pillow mode (transparency composited on white, 16-bit rescaled, CMYK and palettes
converted) and EXIF orientation; `fit_square` is the one resize to a model's side, for a decoded
file, a fixed-size source and an in-memory set alike.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageOps, UnidentifiedImageError

# Decompression-bomb guard, checked from the header before any pixel is decoded (read at call time,
# so a test can lower it).
MAX_PIXELS = 40_000_000
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
WIDE_GRAY_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


class ImageError(ValueError):
    """A file or upload that cannot be used as an image; the message says why and names only the file."""


def decode(source: str | Path | bytes | Image.Image, max_pixels: int | None = None) -> Image.Image:
    """Open an image as 'L' or 'RGB' with its EXIF orientation applied; ImageError says what is wrong.

    Image.open reads only the header, so the pixel count is checked before any pixel is decoded.
    """
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    image = source if isinstance(source, Image.Image) else _open(source)
    try:
        width, height = image.size
        if width * height == 0:
            raise ImageError("the image has no pixels")
        if width * height > limit:
            raise ImageError(f"the image is {width}×{height} = {width * height:,} pixels, over the limit "
                             f"of {limit:,} (decompression-bomb guard); scale it down and retry")
        try:
            upright = ImageOps.exif_transpose(image)  # decodes the pixels; always a new image
        # Pillow's decoders raise many exception types on malformed data (OSError on truncation,
        # SyntaxError, ValueError, struct.error...); to the user they all mean the same thing.
        except Exception as exc:  # noqa: BLE001
            raise ImageError(f"the image data is corrupt or truncated ({exc})") from exc
    finally:
        if image is not source:
            image.close()
    return normalise_mode(upright)


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


BLANK_STD = 2.0  # gray levels: below this spread an image is one flat colour (JPEG noise is ~1)


def is_blank(image: Image.Image) -> bool:
    """Whether an 'L' or 'RGB' image is blank: one flat colour (a fully transparent PNG becomes white)."""
    return float(np.asarray(image.convert("L"), dtype=np.float32).std()) < BLANK_STD


def normalise_mode(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L' or 'RGB'."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode in WIDE_GRAY_MODES:
        # 16-bit data (0..65535) is rescaled rather than clipped to white; mode I/F carries no bit
        # depth, so values above 255 are taken to be 16-bit too.
        wide = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if image.mode.startswith("I;16") or wide.max() > 255:
            wide = wide / 257.0
        return Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8))
    try:
        return _flatten_alpha(image)
    except (ValueError, OSError) as exc:
        raise ImageError(f"unsupported image mode {image.mode}") from exc


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite on white: transparent areas are usually page background (icons, product shots,
    line art), and black would swallow dark strokes drawn on a transparent canvas."""
    if image.mode in ("LA", "La"):
        image = image.convert("LA")
        background = Image.new("LA", image.size, (255, 255))
        return Image.alpha_composite(background, image).convert("L")
    if image.mode == "P" and "transparency" not in image.info:
        return image.convert("RGB")
    if image.mode in ("RGBA", "RGBa", "PA", "P") or "transparency" in image.info:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An 'L' or 'RGB' image -> uint8 (1 or 3, H, W)."""
    pixels = torch.from_numpy(np.array(image))
    return pixels.unsqueeze(0) if pixels.dim() == 2 else pixels.permute(2, 0, 1)


def fit_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (C, H, W) or (N, C, H, W): shorter side to `size` (bilinear, antialiased), centre-cropped."""
    if images.shape[-2:] == (size, size):
        return images
    images = TF.resize(images, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(images, [size, size])


GRAY_MODES = frozenset({"1", "L", "LA", "La"}) | WIDE_GRAY_MODES  # decoded to one channel (normalise_mode)


def header_facts(paths: list[Path]) -> tuple[int | None, int]:
    """(the median shorter side, the channels they decode to: 3 when any has colour) of image files, read
    from their headers (nothing is decoded); the side is None when no header can be read."""
    sides, channels = [], 1
    for path in paths:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
                channels = channels if image.mode in GRAY_MODES else 3
        except (OSError, ValueError, Image.DecompressionBombError):  # the load will name the bad file
            continue
    return (int(np.median(sides)) if sides else None), channels


def load_square(path: str | Path, size: int) -> torch.Tensor:
    """One image file -> uint8 (C, size, size), C = 1 for grayscale-like modes and 3 otherwise."""
    return fit_square(to_tensor(decode(path)), size)
