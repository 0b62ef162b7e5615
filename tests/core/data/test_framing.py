from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from core.data.framing import Framing, measure_framing, preprocess
from core.data.images import decode
from tests.core.data.test_images import UPLOADS, drawing

EXAMPLES = Path(__file__).resolve().parents[3] / "assets" / "examples"
LIGHT_ON_DARK = Framing(light_on_dark=True)


def object_box(pixels: np.ndarray, threshold=64) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) inclusive of the pixels above threshold."""
    rows, cols = np.flatnonzero((pixels > threshold).any(axis=1)), np.flatnonzero((pixels > threshold).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def white_squares(n=50, side=28, square=20) -> torch.Tensor:
    """uint8 (n, 1, side, side): a bright square of `square` px in the middle of a black frame."""
    images = torch.zeros(n, 1, side, side, dtype=torch.uint8)
    start = (side - square) // 2
    images[:, :, start:start + square, start:start + square] = 255
    return images


# --- preprocessing --------------------------------------------------------------------------------

def test_dark_on_light_is_inverted_and_light_on_dark_is_not():
    from_paper = preprocess(drawing(dark_on_light=True), 28, 1, LIGHT_ON_DARK)[0].numpy()
    from_screen = preprocess(drawing(dark_on_light=False), 28, 1, LIGHT_ON_DARK)[0].numpy()
    for pixels in (from_paper, from_screen):
        corners = pixels[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert corners.max() == 0  # black background, as in Fashion-MNIST
        assert pixels.max() == 255 and pixels[14, 14] > 80  # white stroke, grey fill: bright on black
        top, bottom, left, right = object_box(pixels)
        assert (left, right) == (0, 27) and 17 <= bottom - top + 1 <= 20  # the 3:2 ellipse, cropped
    assert np.abs(from_paper.astype(int) - from_screen.astype(int)).max() <= 2


def test_light_on_dark_off_leaves_polarity_alone():
    pixels = preprocess(drawing(dark_on_light=True), 28, 1, Framing(light_on_dark=False))[0].numpy()
    assert pixels[0, 0] == 255  # paper stays white for photo datasets
    assert np.array_equal(preprocess(drawing(), 28, 1)[0].numpy(), pixels)  # the default framing is a photo's


def test_a_wide_rectangle_stays_wide_and_centred():
    image = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(image).rectangle((50, 20, 249, 69), fill=0)  # 200 x 50, off-centre on the page
    pixels = preprocess(image, 28, 1, LIGHT_ON_DARK)[0].numpy()
    top, bottom, left, right = object_box(pixels)
    assert (left, right) == (0, 27)  # the longer side fills the frame, as Fashion-MNIST's objects do
    assert 6 <= bottom - top + 1 <= 8  # 200:50 kept: 28 x 7
    assert abs(top - (27 - bottom)) <= 1  # centred vertically


def test_framing_puts_the_object_in_a_box_centred_on_its_mass():
    image = Image.new("L", (300, 300), 255)
    ImageDraw.Draw(image).rectangle((100, 40, 139, 239), fill=0)  # a tall bar, like a "1"
    pixels = preprocess(image, 28, 1, Framing(light_on_dark=True, fill=20 / 28, by_mass=True))[0].numpy()
    top, bottom, left, right = object_box(pixels)
    assert bottom - top + 1 == 20 and (top, bottom) == (4, 23)
    assert abs((left + right) / 2 - 14) <= 1


def test_low_contrast_uploads_are_stretched_to_full_range():
    image = Image.new("L", (90, 60), 220)
    ImageDraw.Draw(image).ellipse((20, 10, 70, 50), fill=180)  # a pale grey object on light grey
    pixels = preprocess(image, 28, 1, LIGHT_ON_DARK)[0].numpy()
    assert pixels.max() == 255 and pixels[0, 0] == 0


def test_rgb_datasets_get_a_centre_crop_like_the_loader():
    image = Image.new("RGB", (90, 30))
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        image.paste(colour, (30 * i, 0, 30 * i + 30, 30))
    pixels = preprocess(image, 14, 3, Framing(light_on_dark=False))
    assert pixels.shape == (3, 14, 14) and pixels.dtype == torch.uint8
    # only the green middle third is left (the resampling filter blends a little red/blue into the edges)
    assert (pixels[1] > 200).all() and (pixels[0] < 40).all() and (pixels[2] < 40).all()
    assert (pixels[:, :, 1:-1] == torch.tensor([0, 255, 0])[:, None, None]).all()


@pytest.mark.parametrize("size", [(1, 5000), (5000, 1), (1, 1)])
@pytest.mark.parametrize("light_on_dark", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_degenerate_shapes_do_not_crash(size, light_on_dark, channels):
    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).line((0, 0, *size), fill=0)
    pixels = preprocess(image, 28, channels, Framing(light_on_dark=light_on_dark))
    assert pixels.shape == (channels, 28, 28) and pixels.dtype == torch.uint8


@pytest.mark.parametrize("kind", sorted(UPLOADS))
def test_uploads_of_any_mode_are_framed_white_on_black(kind):
    pixels = preprocess(decode(UPLOADS[kind]()), 28, 1, LIGHT_ON_DARK)
    assert pixels[0, 0, 0] == 0 and pixels.max() == 255  # paper became background, ink became object


# --- measuring the training images' framing -------------------------------------------------------

def test_framing_is_measured_from_the_training_images():
    g = torch.Generator().manual_seed(0)
    filled = torch.zeros(20, 1, 28, 28, dtype=torch.uint8)  # full-height objects, box-centred
    digits = torch.zeros(20, 1, 28, 28, dtype=torch.uint8)  # 20 px "7"s, centred on their mass
    index = torch.arange(28.0)
    for i in range(20):
        width, bar = int(torch.randint(4, 20, (1,), generator=g)), int(torch.randint(3, 12, (1,), generator=g))
        left = (28 - width + 1) // 2
        filled[i, 0, :, left:left + width] = 120
        filled[i, 0, 2:2 + bar, left:left + 2] = 255  # a heavy corner pulls the mass off-centre
        digits[i, 0, 4:24, 9:11] = 255  # stem
        digits[i, 0, 4:4 + bar // 3 + 1, 9:9 + bar + 4] = 255  # bar on top
        weight = digits[i, 0].float()
        mass = [float(weight.sum(dim=d) @ index / weight.sum()) for d in (1, 0)]  # rows, columns
        digits[i] = digits[i].roll((round(14 - mass[0]), round(14 - mass[1])), dims=(1, 2))
    assert measure_framing(filled) == Framing(light_on_dark=True, fill=pytest.approx(1.0), by_mass=False)
    assert measure_framing(digits) == Framing(light_on_dark=True, fill=pytest.approx(20 / 28), by_mass=True)
    assert measure_framing(torch.zeros(3, 1, 28, 28, dtype=torch.uint8)) == Framing()


def test_white_on_black_images_measure_as_light_on_dark():
    framing = measure_framing(white_squares())
    assert framing.light_on_dark
    assert framing.fill == pytest.approx(20 / 28)
    rgb = white_squares(square=16).expand(-1, 3, -1, -1)  # colour images are measured by their brightest channel
    assert measure_framing(rgb) == Framing(light_on_dark=True, fill=pytest.approx(16 / 28), by_mass=framing.by_mass)


def test_photo_like_images_do_not_measure_as_light_on_dark():
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (50, 3, 28, 28), dtype=torch.uint8, generator=g)
    assert measure_framing(noise) == Framing()
    gray_border = white_squares()
    gray_border[:, :, [0, -1], :] = 128
    gray_border[:, :, :, [0, -1]] = 128  # a bright object inside a mid-gray ring: not a dark ground
    assert measure_framing(gray_border) == Framing()


def test_a_few_dark_photos_do_not_make_a_set_light_on_dark():
    """Light-on-dark needs nearly all (>= 90 %) images on a dark ground: 85 % is not enough, 90 % is."""
    g = torch.Generator().manual_seed(0)
    photos = torch.randint(0, 256, (20, 1, 28, 28), dtype=torch.uint8, generator=g)
    squares = white_squares(n=20)
    assert not measure_framing(torch.cat([squares[:17], photos[:3]])).light_on_dark
    assert measure_framing(torch.cat([squares[:18], photos[:2]])).light_on_dark
    assert not measure_framing(torch.zeros(20, 1, 28, 28, dtype=torch.uint8)).light_on_dark  # all dark, no object


# --- example assets and the real datasets ---------------------------------------------------------

def test_example_assets_are_small_and_become_white_on_black():
    files = sorted(EXAMPLES.glob("*.png"))
    assert 6 <= len(files) <= 10
    assert sum(f.stat().st_size for f in files) < 300_000
    digit = Framing(light_on_dark=True, fill=20 / 28, by_mass=True)
    for file in files:
        image = decode(file)
        assert image.width != image.height  # photographed, not dataset-shaped
        framing = digit if file.name.startswith("digit") else LIGHT_ON_DARK
        pixels = preprocess(image, 28, 1, framing)[0].numpy()
        assert pixels[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0 and pixels.max() == 255, file.name
        top, bottom, left, right = object_box(pixels)
        if framing.by_mass:
            assert 18 <= bottom - top + 1 <= 21, file.name  # MNIST's 20 px box
        else:
            assert (top, bottom) == (0, 27) or (left, right) == (0, 27), file.name  # fills the frame


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["fashion", "digits"])
def test_rendered_test_images_come_back_close_to_the_originals(dataset):
    """The example renderings (product photo, pen on paper), preprocessed, resemble their source images."""
    from core.data.sources import load_dataset
    from scripts.make_examples import pen_on_paper, product_photo
    data = load_dataset(dataset)
    framing = measure_framing(data.train.images)
    assert framing.light_on_dark  # both datasets are white objects on black
    assert framing.fill == pytest.approx(1.0 if dataset == "fashion" else 20 / 28)
    assert framing.by_mass == (dataset == "digits")
    render = product_photo if dataset == "fashion" else pen_on_paper
    originals = data.test.images[:40, 0]
    errors, identity = [], []
    for original in originals:
        back = preprocess(render(original.numpy()), 28, 1, framing)[0]
        errors.append((back.float() - original.float()).abs().mean())
        same = preprocess(Image.fromarray(original.numpy()), 28, 1, framing)[0]
        identity.append((same.float() - original.float()).abs().mean())
    unrelated = (originals[1:].float() - originals[:-1].float()).abs().mean()
    assert torch.stack(errors).mean() < 0.4 * unrelated
    assert torch.stack(identity).mean() < 4  # a dataset image passes through (almost) unchanged
