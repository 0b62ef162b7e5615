import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from core.data.images import ImageError, decode, fit_square, load_square


def encode(image: Image.Image, format="PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def drawing(size=(120, 80), box=(30, 20, 90, 60), dark_on_light=True) -> Image.Image:
    """A filled ellipse with a stroke, dark ink on white paper (or the reverse)."""
    paper, ink = (255, 0) if dark_on_light else (0, 255)
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    draw.ellipse(box, fill=abs(paper - 120), outline=ink, width=4)
    return image


def rgba() -> Image.Image:
    image = Image.new("RGBA", (40, 30), (0, 0, 0, 0))  # transparent canvas
    ImageDraw.Draw(image).rectangle((10, 10, 30, 20), fill=(0, 0, 0, 255))
    return image


def sixteen_bit() -> Image.Image:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    return Image.fromarray(ramp)  # mode I;16


UPLOADS = {
    "rgba": lambda: encode(rgba()),
    "palette": lambda: encode(drawing().convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)),
    "palette-transparent": lambda: encode(rgba().convert("P"), transparency=0),
    "16-bit": lambda: encode(sixteen_bit()),
    "cmyk": lambda: encode(drawing().convert("CMYK"), format="JPEG"),
    "gray-alpha": lambda: encode(drawing().convert("LA")),
    "bilevel": lambda: encode(drawing().convert("1")),
    "float": lambda: encode(drawing().convert("F"), format="TIFF"),
    "gif": lambda: encode(drawing(), format="GIF"),
    "webp": lambda: encode(drawing().convert("RGB"), format="WEBP"),
}


# --- decoding -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(UPLOADS))
def test_uploads_of_any_mode_decode_to_gray_or_rgb(kind):
    assert decode(UPLOADS[kind]()).mode in ("L", "RGB")


def test_transparency_is_composited_on_white():
    image = decode(encode(rgba()))
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((20, 15)) == (0, 0, 0)


def test_sixteen_bit_is_rescaled_not_clipped():
    pixels = np.asarray(decode(encode(sixteen_bit())))
    assert pixels.min() == 0 and pixels.max() == 255 and 100 < pixels.mean() < 155


def test_exif_orientation_is_applied():
    stored = Image.new("L", (60, 20), 255)
    stored.paste(0, (0, 0, 20, 20))  # dark square on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = decode(encode(stored, format="JPEG", exif=exif.tobytes(), quality=95))
    assert image.size == (20, 60)
    assert np.asarray(image)[:20].mean() < 30 and np.asarray(image)[40:].mean() > 225  # left became top


def test_a_pil_image_is_accepted_and_not_modified():
    original = rgba()
    image = decode(original)
    assert image is not original and original.mode == "RGBA" and image.mode == "RGB"


def truncated_png() -> bytes:
    data = encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)))
    return data[: len(data) // 2]


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"name,size\nsneaker,42\n", "not an image"),
    (truncated_png(), "corrupt or truncated"),
])
def test_unusable_bytes_raise_a_clear_image_error(data, message):
    with pytest.raises(ImageError, match=message):
        decode(data)


def test_unusable_files_raise_a_clear_image_error(tmp_path):
    empty, text = tmp_path / "empty.png", tmp_path / "notes.jpg"
    empty.write_bytes(b"")
    text.write_text("not a picture")
    with pytest.raises(ImageError, match="empty"):
        decode(empty)
    with pytest.raises(ImageError, match="not an image"):
        decode(str(text))
    with pytest.raises(ImageError, match="not a readable file"):
        decode(tmp_path / "missing.png")
    assert isinstance(ImageError("x"), ValueError)


def test_too_many_pixels_are_refused():
    with pytest.raises(ImageError, match=r"40×30 = 1,200 pixels, over the limit of 1,000"):
        decode(encode(Image.new("L", (40, 30))), max_pixels=1_000)
    assert decode(encode(Image.new("L", (40, 25))), max_pixels=1_000).size == (40, 25)


def test_the_default_pixel_limit_is_read_at_call_time(monkeypatch):
    monkeypatch.setattr("core.data.images.MAX_PIXELS", 1_000)
    with pytest.raises(ImageError, match="over the limit of 1,000"):
        decode(encode(Image.new("L", (40, 30))))


def test_the_pixel_limit_is_checked_before_decoding():
    """A header promising 9 M pixels over 2 KB of data: refused for its size, never decoded."""
    data = encode(Image.new("L", (3000, 3000)))[:2000]
    with pytest.raises(ImageError, match="over the limit"):
        decode(data, max_pixels=1_000_000)


def test_headers_beyond_pillows_own_bomb_limit_are_refused():
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10^10 gray pixels, 8 bit
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="too large"):
        decode(png, max_pixels=10**12)


# --- square resizing ------------------------------------------------------------------------------

def test_fit_square_centre_crops_a_non_square_image_to_the_side():
    wide = torch.zeros(3, 10, 30, dtype=torch.uint8)
    wide[:, :, 10:20] = 255  # three 10 px squares: black, white, black
    square = fit_square(wide, 10)  # the shorter side is already 10: only the crop acts
    assert square.shape == (3, 10, 10) and square.dtype == torch.uint8
    assert (square == 255).all()  # the middle third is what is left
    tall = torch.randint(0, 256, (1, 40, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert fit_square(tall, 14).shape == (1, 14, 14)
    assert fit_square(tall[None].expand(4, -1, -1, -1), 14).shape == (4, 1, 14, 14)


def test_fit_square_leaves_a_square_of_the_right_side_untouched():
    square = torch.randint(0, 256, (3, 14, 14), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert fit_square(square, 14) is square
    assert fit_square(square, 7).shape == (3, 7, 7) and fit_square(square, 7) is not square


def test_load_square_composites_transparency_on_white(tmp_path):
    path = tmp_path / "icon.png"
    rgba().save(path)  # 40 x 30, transparent around a black rectangle
    pixels = load_square(path, 14)
    assert pixels.shape == (3, 14, 14) and pixels.dtype == torch.uint8
    assert (pixels[:, [0, 0, -1, -1], [0, -1, 0, -1]] == 255).all()  # transparent corners became white
    assert (pixels[:, 7, 7] == 0).all()  # the opaque black rectangle stays black


def test_flat_images_are_blank_and_faint_strokes_are_not():
    from core.data.images import is_blank
    flat = np.full((40, 50), 200, np.uint8)
    assert is_blank(Image.fromarray(flat)) and is_blank(Image.new("RGB", (9, 9), (10, 200, 30)))
    noisy = flat + np.random.default_rng(0).integers(0, 2, flat.shape, dtype=np.uint8)  # JPEG-like noise
    assert is_blank(Image.fromarray(noisy))
    stroke = flat.copy()
    stroke[18:22, 5:45] = 40  # one thin dark line
    assert not is_blank(Image.fromarray(stroke))
