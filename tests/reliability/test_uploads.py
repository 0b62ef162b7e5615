"""Bad uploads, sent to the running app's Classify panel (its upload event) and to the several-at-once
box: each is classified like the same picture saved plainly, or refused with a message that says
why; either way the next request works."""
from __future__ import annotations

import io
import re
import struct
import time
import zlib
from collections.abc import Callable

import httpx
import numpy as np
import pytest
from gradio_client import handle_file
from PIL import Image

from tests.reliability.conftest import REFERENCE, REFERENCE_CLASS, classify, not_answered, top_class

pytestmark = [pytest.mark.reliability(section="Bad uploads"), pytest.mark.slow]

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # demo.app.MAX_UPLOAD, "20mb"


def encode(image: Image.Image, format: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def sneaker() -> Image.Image:
    """The reference photo (dark product on white) as 8-bit gray."""
    with Image.open(REFERENCE) as image:
        return image.convert("L")


def rgba() -> bytes:
    """Black ink whose opacity is the darkness: a cut-out on a transparent canvas."""
    darkness = 255 - np.asarray(sneaker())
    pixels = np.zeros(darkness.shape + (4,), dtype=np.uint8)
    pixels[..., 3] = darkness
    return encode(Image.fromarray(pixels, "RGBA"))


def exif_rotated() -> bytes:
    """Stored sideways with orientation tag 6 ("rotate 90° clockwise to view"), as phones save photos."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(sneaker().convert("RGB").transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92,
                  exif=exif.tobytes())


def corrupt_jpeg() -> bytes:
    """Valid JPEG headers, then random bytes where the compressed scan should be."""
    data = encode(sneaker().convert("RGB"), "JPEG", quality=92)
    scan = data.index(b"\xff\xda") + 20
    return data[:scan] + np.random.default_rng(0).integers(0, 256, len(data) - scan, dtype=np.uint8).tobytes()


def truncated_png() -> bytes:
    data = encode(sneaker())
    return data[:len(data) // 2]


def png_header(width: int, height: int) -> bytes:
    """A PNG that promises width x height 8-bit gray pixels and holds almost no data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def thin_strip() -> bytes:
    """1 x 5,000 pixels: a dark bar across the middle fifth of a white strip."""
    strip = np.full((1, 5000), 255, dtype=np.uint8)
    strip[0, 2000:3000] = 0
    return encode(Image.fromarray(strip))


# name -> (file name, bytes, the message it must be refused with, or None if it must classify)
CASES: dict[str, tuple[str, Callable[[], bytes], str | None]] = {
    "corrupt JPEG": ("corrupt.jpg", corrupt_jpeg, "corrupt or truncated"),
    "truncated PNG": ("truncated.png", truncated_png, "corrupt or truncated"),
    "zero bytes": ("empty.png", lambda: b"", r"empty \(0 bytes\)"),
    "a text file renamed .jpg": ("notes.jpg", lambda: b"name,size\nsneaker,42\n", "not an image format"),
    "huge image, 8,000 x 8,000 (64 M pixels)": ("huge.png", lambda: encode(Image.new("L", (8000, 8000), 255)),
                                                 "over the limit of 40,000,000"),
    "decompression bomb, 100,000 x 100,000 header": ("bomb.png", lambda: png_header(100_000, 100_000),
                                                     "too large to decode safely"),
    "grayscale": ("gray.png", lambda: encode(sneaker()), None),
    "RGBA (transparent background)": ("cutout.png", rgba, None),
    "palette": ("palette.png", lambda: encode(sneaker().convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)),
                None),
    "16-bit PNG": ("deep.png", lambda: encode(Image.fromarray(np.asarray(sneaker()).astype(np.uint16) * 257)), None),
    "CMYK JPEG": ("print.jpg", lambda: encode(sneaker().convert("CMYK"), "JPEG", quality=92), None),
    "EXIF-rotated photo": ("phone.jpg", exif_rotated, None),
    "thin strip, 1 x 5,000": ("strip.png", thin_strip, None),
}
LOSSY = {"CMYK JPEG", "EXIF-rotated photo"}


def seen_pixels(result) -> np.ndarray:
    """The 'what the model sees' image the page shows, fetched as the browser fetches it (gray)."""
    response = httpx.get(result[0]["url"], timeout=30)
    response.raise_for_status()
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("L"), dtype=np.float32)


@pytest.fixture(scope="module")
def reference(model_loaded):
    """The plain photo, classified by the app: what every re-encoding of it must come back as."""
    result = classify(model_loaded, REFERENCE)
    return top_class(result), seen_pixels(result)


def next_request_works(client, reference) -> None:
    assert top_class(classify(client, REFERENCE)) == reference[0], "the request after it classified differently"


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.reliability(case=n)) for n in CASES])
def test_bad_upload(name, app, model_loaded, reference, tmp_path, record):
    client = model_loaded
    filename, make, refusal = CASES[name]
    path = tmp_path / filename
    path.write_bytes(make())
    (expected, _), expected_seen = reference
    assert expected == REFERENCE_CLASS  # the plain photo itself is read correctly

    started = time.perf_counter()
    if refusal is not None:
        message = not_answered(classify(client, path))
        seconds = time.perf_counter() - started
        assert re.search(refusal, message), message
        # One plain line: no traceback, and no server path (the app's temp folders live under its home).
        assert "\n" not in message and str(app.runs_dir.parent) not in message, message
        [item] = client.predict([handle_file(str(path))], api_name="/classify_many")
        caption = item["caption"]
        assert caption.startswith(f"{filename}: refused (") and message in caption, caption
        happened = f"refused: “{message}” ({seconds:.2f} s); several-at-once caption: “{caption}”"
    else:
        result = classify(client, path)
        seconds = time.perf_counter() - started
        label, probability = top_class(result)
        seen = seen_pixels(result)
        if name.startswith("thin strip"):
            # The bar fills the frame's width in one thin band, centred: nothing was stretched or lost.
            rows = np.flatnonzero(seen.max(axis=1) > 128)
            cols = np.flatnonzero(seen.max(axis=0) > 128)
            assert len(rows) <= 3 * seen.shape[0] // 28 and abs(rows.mean() - seen.shape[0] / 2) < seen.shape[0] / 8
            assert len(cols) > 0.8 * seen.shape[1]
            shown = f"a one-row bar across the frame ({len(rows)} of {seen.shape[0]} rows lit)"
        else:
            difference = float(np.abs(seen - expected_seen).mean())
            assert difference <= (4.0 if name in LOSSY else 1.0), f"the model saw another picture (Δ {difference:.1f})"
            assert label == expected, f"classified {label}, the plain photo {expected}"
            shown = f"the same picture as the plain photo (mean |Δ| {difference:.2f} of 255)"
        [item] = client.predict([handle_file(str(path))], api_name="/classify_many")
        caption = item["caption"]
        assert caption.startswith(f"{filename}: {label} ("), caption
        happened = f"classified {label} ({probability:.0%}) in {seconds:.2f} s; the model saw {shown}"
    next_request_works(client, reference)
    record(happened + "; the next request classified normally", seconds=round(seconds, 3))


def sketch(composite):
    """What the browser sends for a drawing: the Sketchpad's layers flattened into one PNG, which the
    Classify button copies out of the Sketchpad in the page (demo.text.SKETCH_COMPOSITE_JS)."""
    return composite


@pytest.mark.reliability(case="a drawing on the sketchpad, then an empty one")
def test_drawings_classify_and_an_empty_one_is_refused(model_loaded, reference, tmp_path, record):
    client = model_loaded
    drawn, blank = tmp_path / "drawing.png", tmp_path / "blank.png"
    drawn.write_bytes(rgba())  # black strokes on the transparent canvas
    blank.write_bytes(encode(Image.new("RGBA", (280, 280), (0, 0, 0, 0))))
    result = client.predict(None, sketch(handle_file(str(drawn))), api_name="/classify")
    label, probability = top_class(result)
    assert label == reference[0][0] and float(np.abs(seen_pixels(result) - reference[1]).mean()) <= 1.0
    message = not_answered(client.predict(None, sketch(handle_file(str(blank))), api_name="/classify"))
    assert message == "Drop a photo or draw something first.", message
    next_request_works(client, reference)
    record(f"the drawing classified {label} ({probability:.0%}), seen as the photo is; "
           f"an empty canvas: “{message}”")


@pytest.mark.reliability(case="over-size upload (21 MB, limit 20 MB)")
def test_an_over_size_upload_is_refused_by_the_running_app(app, model_loaded, reference, record):
    body = np.random.default_rng(0).integers(0, 256, MAX_UPLOAD_BYTES + 1024 * 1024, dtype=np.uint8).tobytes()
    response = httpx.post(f"{app.url}gradio_api/upload", files={"files": ("big.png", body, "image/png")}, timeout=120)
    assert response.status_code == 413, (response.status_code, response.text[:200])
    assert "maximum allowed size" in response.text
    uploads = app.runs_dir.parent / "gradio"
    assert not any(f.stat().st_size > MAX_UPLOAD_BYTES for f in uploads.rglob("*") if f.is_file())
    next_request_works(model_loaded, reference)
    record(f"HTTP {response.status_code}: “{response.text.strip()}”; nothing kept on disk; "
           "the next request classified normally")
