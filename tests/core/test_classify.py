import dataclasses
import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from core.classify import Classifier, PublishedModel
from core.upload import Framing, ImageError, framing_of, load_upload, preprocess
from core.config import ModelConfig, TrainConfig
from core.evaluate import embed, knn_predict
from core.model import Backbone
from tests.core.conftest import TINY_AUGMENT, TINY_MODEL, make_splits

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"


def publish(channels=1, classes=6, n_train=48, model=TINY_MODEL, light_on_dark=False, knn_k=5) -> PublishedModel:
    torch.manual_seed(0)
    backbone = Backbone(model, channels).eval()
    train = make_splits(n_train=n_train, classes=classes, size=model.image_size, channels=channels).train
    config = TrainConfig(dataset="toy", model=model, augment=TINY_AUGMENT, knn_k=knn_k)
    return PublishedModel(config=config, weights={k: v.clone() for k, v in backbone.state_dict().items()},
                          channels=channels, class_names=train.class_names, train_images=train.images,
                          train_labels=train.labels, train_embeddings=embed(backbone, train.images), epoch=3,
                          light_on_dark=light_on_dark)


@pytest.fixture(scope="module")
def published() -> PublishedModel:
    return publish()


@pytest.fixture(scope="module")
def classifier(published) -> Classifier:
    return Classifier(published)


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 (C, H, W) -> PIL."""
    return Image.fromarray(image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy())


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


def object_box(pixels: np.ndarray, threshold=64) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) inclusive of the pixels above threshold."""
    rows, cols = np.flatnonzero((pixels > threshold).any(axis=1)), np.flatnonzero((pixels > threshold).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


# --- classification -------------------------------------------------------------------------------

def test_top5_is_sorted_and_sums_to_at_most_one(classifier, published):
    prediction = classifier.classify(to_pil(published.train_images[7]))
    probabilities = [p for _, p in prediction.top]
    assert len(prediction.top) == 5  # 6 classes, top 5 of them
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 <= p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-6
    assert {name for name, _ in prediction.top} <= set(published.class_names)


def test_probabilities_are_the_normalised_knn_votes(classifier, published):
    image = make_splits(classes=6, seed=5).test.images[3]  # not a training image
    prediction = classifier.classify(to_pil(image))
    backbone = Backbone(published.config.model, 1)
    backbone.load_state_dict(published.weights)
    scores = knn_predict(published.train_embeddings, published.train_labels, embed(backbone, image[None]), 6,
                         k=published.config.knn_k, temperature=published.config.knn_temperature)[0]
    expected = scores / scores.sum()
    for name, probability in prediction.top:
        assert probability == pytest.approx(float(expected[published.class_names.index(name)]), abs=1e-5)


@pytest.mark.parametrize("index", [0, 13, 47])
def test_a_training_image_is_its_own_nearest_neighbour(classifier, published, index):
    prediction = classifier.classify(to_pil(published.train_images[index]))
    first, label = prediction.neighbours[0], published.class_names[int(published.train_labels[index])]
    assert first[0] == index and first[1] == label
    assert first[2] == pytest.approx(1.0, abs=1e-4)
    assert prediction.top[0][0] == label


def test_neighbours_are_the_eight_most_similar_training_images(classifier, published):
    image = make_splits(classes=6, seed=9).test.images[0]
    prediction = classifier.classify(to_pil(image))
    backbone = Backbone(published.config.model, 1)
    backbone.load_state_dict(published.weights)
    cosine = F.normalize(published.train_embeddings, dim=1) @ F.normalize(embed(backbone, image[None])[0], dim=0)
    assert [i for i, _, _ in prediction.neighbours] == cosine.topk(8).indices.tolist()
    for index, name, similarity in prediction.neighbours:
        assert name == published.class_names[int(published.train_labels[index])]
        assert similarity == pytest.approx(float(cosine[index]), abs=1e-5)


def test_prediction_reports_what_the_model_saw_and_how(classifier, published):
    prediction = classifier.classify(to_pil(published.train_images[2]))
    assert prediction.model_input.dtype == np.uint8 and prediction.model_input.shape == (14, 14)
    assert np.array_equal(prediction.model_input, published.train_images[2, 0].numpy())
    assert prediction.method == "kNN vote over 48 training embeddings (k=5)"


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_attention_map_covers_the_input_in_zero_to_one(pool):
    model = ModelConfig(**{**TINY_MODEL.__dict__, "image_size": 28, "pool": pool})  # a 4x4 patch grid
    classifier = Classifier(publish(model=model))
    prediction = classifier.classify(to_pil(classifier.published.train_images[0]))
    attention = prediction.attention
    assert attention.shape == (28, 28) and attention.dtype == np.float32
    assert attention.min() >= 0 and attention.max() <= 1
    assert attention.max() == pytest.approx(1.0, abs=1e-6) and attention.min() < 0.5


def test_attention_is_the_last_layers_cls_row_averaged_over_heads(classifier, published):
    captured = []
    backbone = Backbone(dataclasses.replace(published.config.model, attention="explicit"), 1).eval()
    backbone.load_state_dict(published.weights)
    backbone.vit.transformer.layers[-1][0].attend.register_forward_hook(lambda m, i, out: captured.append(out))
    image = published.train_images[5]
    embed(backbone, image[None])
    cls_row = captured[0][0].mean(dim=0)[0, 1:].reshape(2, 2)  # 14 px / patch 7: a 2x2 grid
    attention = classifier.classify(to_pil(image)).attention
    # bilinear upsampling keeps each patch's ordering: the most attended patch holds the maximum
    top_left = np.unravel_index(attention.argmax(), attention.shape)
    assert (top_left[0] // 7, top_left[1] // 7) == np.unravel_index(int(cls_row.argmax()), (2, 2))


def test_concurrent_classification_matches_sequential(classifier):
    images = [to_pil(image) for image in make_splits(classes=6, seed=3).test.images[:6]]
    expected = [classifier.classify(image) for image in images]
    jobs = [i % len(images) for i in range(60)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: (i, classifier.classify(images[i])), jobs))
    for i, prediction in results:
        assert prediction.top == expected[i].top and prediction.neighbours == expected[i].neighbours
        assert np.array_equal(prediction.attention, expected[i].attention)


def test_classifier_holds_its_own_copy_of_the_weights_and_embeddings():
    published = publish()
    classifier = Classifier(published)
    image = to_pil(make_splits(classes=6, seed=4).test.images[0])
    before = classifier.classify(image)
    for tensor in published.weights.values():
        tensor.mul_(-3.0).add_(1.0)
    published.train_embeddings.mul_(-1.0)
    after = classifier.classify(image)
    assert after.top == before.top and after.neighbours == before.neighbours
    assert np.array_equal(after.attention, before.attention)


def test_classify_leaves_the_callers_torch_thread_count_alone(classifier, published):
    threads = torch.get_num_threads()
    torch.set_num_threads(3)  # any count but the 1 classification runs on
    try:
        classifier.classify(to_pil(published.train_images[0]))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)


def test_thumbnails_are_copies_of_the_training_images(classifier, published):
    thumb = classifier.thumbnail(4)
    assert thumb.dtype == np.uint8 and np.array_equal(thumb, published.train_images[4, 0].numpy())
    thumb[:] = 0
    assert published.train_images[4].any()
    with pytest.raises(IndexError):
        classifier.thumbnail(len(published.train_labels))


def test_an_rgb_model_sees_and_shows_colour():
    classifier = Classifier(publish(channels=3))
    train = classifier.published.train_images
    prediction = classifier.classify(to_pil(train[1]))
    assert prediction.model_input.shape == (14, 14, 3) and classifier.thumbnail(1).shape == (14, 14, 3)
    assert prediction.neighbours[0][0] == 1


def test_a_light_on_dark_model_sees_paper_drawings_as_white_on_black():
    classifier = Classifier(publish(light_on_dark=True))
    seen = classifier.classify(drawing()).model_input
    assert seen[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0 and seen.max() == 255


def test_published_model_rejects_inconsistent_parts(published):
    with pytest.raises(ValueError, match="as many"):
        PublishedModel(**{**published.__dict__, "train_labels": published.train_labels[:-1]})
    with pytest.raises(ValueError, match="lie in"):
        PublishedModel(**{**published.__dict__, "class_names": ("a", "b")})


# --- preprocessing --------------------------------------------------------------------------------

def test_dark_on_light_is_inverted_and_light_on_dark_is_not():
    from_paper = preprocess(drawing(dark_on_light=True), 28, 1, light_on_dark=True)[0].numpy()
    from_screen = preprocess(drawing(dark_on_light=False), 28, 1, light_on_dark=True)[0].numpy()
    for pixels in (from_paper, from_screen):
        corners = pixels[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert corners.max() == 0  # black background, as in Fashion-MNIST
        assert pixels.max() == 255 and pixels[14, 14] > 80  # white stroke, grey fill: bright on black
        top, bottom, left, right = object_box(pixels)
        assert (left, right) == (0, 27) and 17 <= bottom - top + 1 <= 20  # the 3:2 ellipse, cropped
    assert np.abs(from_paper.astype(int) - from_screen.astype(int)).max() <= 2


def test_light_on_dark_off_leaves_polarity_alone():
    pixels = preprocess(drawing(dark_on_light=True), 28, 1, light_on_dark=False)[0].numpy()
    assert pixels[0, 0] == 255  # paper stays white for photo datasets


def test_a_wide_rectangle_stays_wide_and_centred():
    image = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(image).rectangle((50, 20, 249, 69), fill=0)  # 200 x 50, off-centre on the page
    pixels = preprocess(image, 28, 1, light_on_dark=True)[0].numpy()
    top, bottom, left, right = object_box(pixels)
    assert (left, right) == (0, 27)  # the longer side fills the frame, as Fashion-MNIST's objects do
    assert 6 <= bottom - top + 1 <= 8  # 200:50 kept: 28 x 7
    assert abs(top - (27 - bottom)) <= 1  # centred vertically


def test_framing_puts_the_object_in_a_box_centred_on_its_mass():
    image = Image.new("L", (300, 300), 255)
    ImageDraw.Draw(image).rectangle((100, 40, 139, 239), fill=0)  # a tall bar, like a "1"
    pixels = preprocess(image, 28, 1, light_on_dark=True, framing=Framing(fill=20 / 28, by_mass=True))[0].numpy()
    top, bottom, left, right = object_box(pixels)
    assert bottom - top + 1 == 20 and (top, bottom) == (4, 23)
    assert abs((left + right) / 2 - 14) <= 1


def test_low_contrast_uploads_are_stretched_to_full_range():
    image = Image.new("L", (90, 60), 220)
    ImageDraw.Draw(image).ellipse((20, 10, 70, 50), fill=180)  # a pale grey object on light grey
    pixels = preprocess(image, 28, 1, light_on_dark=True)[0].numpy()
    assert pixels.max() == 255 and pixels[0, 0] == 0


def test_rgb_datasets_get_a_centre_crop_like_the_loader():
    image = Image.new("RGB", (90, 30))
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        image.paste(colour, (30 * i, 0, 30 * i + 30, 30))
    pixels = preprocess(image, 14, 3, light_on_dark=False)
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
    pixels = preprocess(image, 28, channels, light_on_dark)
    assert pixels.shape == (channels, 28, 28) and pixels.dtype == torch.uint8


def test_a_thin_strip_classifies_end_to_end(classifier):
    prediction = classifier.classify(load_upload(encode(Image.new("L", (1, 5000), 90))))
    assert prediction.model_input.shape == (14, 14) and len(prediction.neighbours) == 8


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
    assert framing_of(filled).fill == pytest.approx(1.0) and not framing_of(filled).by_mass
    assert framing_of(digits).fill == pytest.approx(20 / 28) and framing_of(digits).by_mass
    assert framing_of(torch.zeros(3, 1, 28, 28, dtype=torch.uint8)) == Framing()


# --- uploads --------------------------------------------------------------------------------------

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


@pytest.mark.parametrize("kind", sorted(UPLOADS))
def test_uploads_of_any_mode_become_gray_or_rgb_and_classify(kind, classifier):
    image = load_upload(UPLOADS[kind]())
    assert image.mode in ("L", "RGB")
    pixels = preprocess(image, 28, 1, light_on_dark=True)
    assert pixels[0, 0, 0] == 0 and pixels.max() == 255  # paper became background, ink became object
    assert len(classifier.classify(image).top) == 5


def test_transparency_is_composited_on_white():
    image = load_upload(encode(rgba()))
    assert image.getpixel((0, 0)) == (255, 255, 255) and image.getpixel((20, 15)) == (0, 0, 0)


def test_sixteen_bit_is_rescaled_not_clipped():
    pixels = np.asarray(load_upload(encode(sixteen_bit())))
    assert pixels.min() == 0 and pixels.max() == 255 and 100 < pixels.mean() < 155


def test_exif_orientation_is_applied():
    stored = Image.new("L", (60, 20), 255)
    stored.paste(0, (0, 0, 20, 20))  # dark square on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = load_upload(encode(stored, format="JPEG", exif=exif.tobytes(), quality=95))
    assert image.size == (20, 60)
    assert np.asarray(image)[:20].mean() < 30 and np.asarray(image)[40:].mean() > 225  # left became top


def test_a_pil_image_is_accepted_and_not_modified():
    original = rgba()
    image = load_upload(original)
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
        load_upload(data)


def test_unusable_files_raise_a_clear_image_error(tmp_path):
    empty, text = tmp_path / "empty.png", tmp_path / "notes.jpg"
    empty.write_bytes(b"")
    text.write_text("not a picture")
    with pytest.raises(ImageError, match="empty"):
        load_upload(empty)
    with pytest.raises(ImageError, match="not an image"):
        load_upload(str(text))
    with pytest.raises(ImageError, match="not a readable file"):
        load_upload(tmp_path / "missing.png")
    assert isinstance(ImageError("x"), ValueError)


def test_too_many_pixels_are_refused():
    with pytest.raises(ImageError, match=r"40×30 = 1,200 pixels, over the limit of 1,000"):
        load_upload(encode(Image.new("L", (40, 30))), max_pixels=1_000)
    assert load_upload(encode(Image.new("L", (40, 25))), max_pixels=1_000).size == (40, 25)


def test_the_pixel_limit_is_checked_before_decoding():
    """A header promising 9 M pixels over 2 KB of data: refused for its size, never decoded."""
    data = encode(Image.new("L", (3000, 3000)))[:2000]
    with pytest.raises(ImageError, match="over the limit"):
        load_upload(data, max_pixels=1_000_000)


def test_headers_beyond_pillows_own_bomb_limit_are_refused():
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)  # 10^10 gray pixels, 8 bit
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    with pytest.raises(ImageError, match="too large"):
        load_upload(png, max_pixels=10**12)


# --- example assets and the real datasets ---------------------------------------------------------

def test_example_assets_are_small_and_become_white_on_black():
    files = sorted(EXAMPLES.glob("*.png"))
    assert 6 <= len(files) <= 10
    assert sum(f.stat().st_size for f in files) < 300_000
    digit = Framing(fill=20 / 28, by_mass=True)
    for file in files:
        image = load_upload(file)
        assert image.width != image.height  # photographed, not dataset-shaped
        framing = digit if file.name.startswith("digit") else Framing()
        pixels = preprocess(image, 28, 1, light_on_dark=True, framing=framing)[0].numpy()
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
    from core.data import load_dataset
    from scripts.make_examples import pen_on_paper, product_photo
    data = load_dataset(dataset)
    framing = framing_of(data.train.images)
    assert framing.fill == pytest.approx(1.0 if dataset == "fashion" else 20 / 28)
    assert framing.by_mass == (dataset == "digits")
    render = product_photo if dataset == "fashion" else pen_on_paper
    originals = data.test.images[:40, 0]
    errors, identity = [], []
    for original in originals:
        back = preprocess(render(original.numpy()), 28, 1, light_on_dark=True, framing=framing)[0]
        errors.append((back.float() - original.float()).abs().mean())
        same = preprocess(Image.fromarray(original.numpy()), 28, 1, light_on_dark=True, framing=framing)[0]
        identity.append((same.float() - original.float()).abs().mean())
    unrelated = (originals[1:].float() - originals[:-1].float()).abs().mean()
    assert torch.stack(errors).mean() < 0.4 * unrelated
    assert torch.stack(identity).mean() < 4  # a dataset image passes through (almost) unchanged


def test_a_class_head_classifies_by_softmax_and_the_knn_vote_stays_available(published):
    torch.manual_seed(1)
    head = torch.nn.Linear(TINY_MODEL.dim, len(published.class_names))
    with_head = Classifier(PublishedModel(**{**published.__dict__, "head": {"head.weight": head.weight.detach(),
                                                                             "head.bias": head.bias.detach()}}))
    assert with_head.methods == ("class head", "kNN vote") and Classifier(published).methods == ("kNN vote",)
    image = to_pil(published.train_images[5])
    by_head = with_head.classify(image)
    assert by_head.method == "fine-tuned class head, softmax over 6 classes"
    backbone = Backbone(published.config.model, 1)
    backbone.load_state_dict(published.weights)
    expected = head(embed(backbone, published.train_images[5:6])[0]).softmax(dim=0)
    assert [name for name, _ in by_head.top] == [published.class_names[i] for i in expected.topk(5).indices]
    assert [p for _, p in by_head.top] == pytest.approx(expected.topk(5).values.tolist(), abs=1e-5)
    by_vote = with_head.classify(image, "kNN vote")
    assert by_vote.top == Classifier(published).classify(image).top
    with pytest.raises(ValueError, match="cannot classify by 'class head'"):
        Classifier(published).classify(image, "class head")
