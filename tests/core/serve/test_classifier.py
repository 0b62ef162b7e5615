import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core.config import ModelConfig, TrainConfig
from core.data.framing import Framing, measure_framing
from core.data.images import ImageError, decode, fit_square
from core.data.splits import ImageSet
from core.metrics import knn_predict
from core.model.backbone import Backbone, embed
from core.serve.classifier import BLANK_MESSAGE, KNN, Classifier
from core.serve.model_file import UNLIKE_SHARE, ModelFile, ModelFileError
from tests.core.conftest import TINY_AUGMENT, TINY_MODEL, make_splits
from tests.core.data.test_images import UPLOADS, drawing, encode

PHOTO = Framing()  # the default: uploads are resized and centre-cropped, as photo datasets are


def publish(channels=1, classes=6, n_train=48, model=TINY_MODEL, framing=PHOTO, knn_k=5) -> ModelFile:
    torch.manual_seed(0)
    backbone = Backbone(model, channels).eval()
    train = make_splits(n_train=n_train, classes=classes, size=model.image_size, channels=channels).train
    config = TrainConfig(dataset="toy", model=model, augment=TINY_AUGMENT, knn_k=knn_k)
    built = ModelFile.build(config, train, {k: v.clone() for k, v in backbone.state_dict().items()},
                            embed(backbone, train.images), epoch=3)
    return dataclasses.replace(built, framing=framing)


@pytest.fixture(scope="module")
def published() -> ModelFile:
    return publish()


@pytest.fixture(scope="module")
def classifier(published) -> Classifier:
    return Classifier(published)


def to_pil(image: torch.Tensor) -> Image.Image:
    """uint8 (C, H, W) -> PIL."""
    return Image.fromarray(image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy())


def white_on_black(n=24, classes=3, side=14) -> ImageSet:
    """A bright square of a class's own size in the middle of a black frame, like Fashion-MNIST's objects."""
    labels = torch.arange(n) % classes
    images = torch.zeros(n, 1, side, side, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        start = 1 + label
        images[i, :, start:side - start, start:side - start] = 255
    return ImageSet(images, labels, tuple(f"c{i}" for i in range(classes)))


# --- classification -------------------------------------------------------------------------------

def test_top5_is_sorted_and_sums_to_at_most_one(classifier, published):
    prediction = classifier.classify(to_pil(published.thumbnails[7]))
    probabilities = [p for _, p in prediction.top]
    assert len(prediction.top) == 5  # 6 classes, top 5 of them
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 <= p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-6
    assert {name for name, _ in prediction.top} <= set(published.class_names)


def test_probabilities_are_the_normalised_knn_votes(classifier, published):
    image = make_splits(classes=6, seed=5).test.images[3]  # not a training image
    prediction = classifier.classify(to_pil(image))
    backbone = Backbone(published.model, 1)
    backbone.load_state_dict(published.backbone)
    scores = knn_predict(published.embeddings, published.labels, embed(backbone, image[None]), 6,
                         k=published.knn_k, temperature=published.knn_temperature)[0]
    expected = scores / scores.sum()
    for name, probability in prediction.top:
        assert probability == pytest.approx(float(expected[published.class_names.index(name)]), abs=1e-5)


@pytest.mark.parametrize("index", [0, 13, 47])
def test_a_training_image_is_its_own_nearest_neighbour(classifier, published, index):
    prediction = classifier.classify(to_pil(published.thumbnails[index]))
    first, label = prediction.neighbours[0], published.class_names[int(published.labels[index])]
    assert first[0] == index and first[1] == label
    assert first[2] == pytest.approx(1.0, abs=1e-4)
    assert prediction.top[0][0] == label


def test_neighbours_are_the_eight_most_similar_training_images(classifier, published):
    image = make_splits(classes=6, seed=9).test.images[0]
    prediction = classifier.classify(to_pil(image))
    backbone = Backbone(published.model, 1)
    backbone.load_state_dict(published.backbone)
    cosine = F.normalize(published.embeddings, dim=1) @ F.normalize(embed(backbone, image[None])[0], dim=0)
    assert [i for i, _, _ in prediction.neighbours] == cosine.topk(8).indices.tolist()
    for index, name, similarity in prediction.neighbours:
        assert name == published.class_names[int(published.labels[index])]
        assert similarity == pytest.approx(float(cosine[index]), abs=1e-5)


def test_prediction_reports_what_the_model_saw_and_how(classifier, published):
    prediction = classifier.classify(to_pil(published.thumbnails[2]))
    assert prediction.model_input.dtype == np.uint8 and prediction.model_input.shape == (14, 14)
    assert np.array_equal(prediction.model_input, published.thumbnails[2, 0].numpy())
    assert prediction.method == "kNN vote over 48 labelled training embeddings (k=5)"


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_attention_map_covers_the_input_in_zero_to_one(pool):
    model = ModelConfig(**{**TINY_MODEL.__dict__, "image_size": 28, "pool": pool})  # a 4x4 patch grid
    classifier = Classifier(publish(model=model))
    prediction = classifier.classify(to_pil(classifier.published.thumbnails[0]))
    attention = prediction.attention
    assert attention.shape == (28, 28) and attention.dtype == np.float32
    assert attention.min() >= 0 and attention.max() <= 1
    assert attention.max() == pytest.approx(1.0, abs=1e-6) and attention.min() < 0.5


def test_attention_is_the_last_layers_cls_row_averaged_over_heads(classifier, published):
    backbone = Backbone(dataclasses.replace(published.model, attention="explicit"), 1).eval()
    backbone.load_state_dict(published.backbone)
    image = published.thumbnails[5]
    with backbone.last_attention() as captured:
        embed(backbone, image[None])
    assert len(captured) == 1
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
    for tensor in published.backbone.values():
        tensor.mul_(-3.0).add_(1.0)
    published.embeddings.mul_(-1.0)
    after = classifier.classify(image)
    assert after.top == before.top and after.neighbours == before.neighbours
    assert np.array_equal(after.attention, before.attention)


def test_classify_leaves_the_callers_torch_thread_count_alone(classifier, published):
    threads = torch.get_num_threads()
    torch.set_num_threads(3)  # any count but the 1 classification runs on
    try:
        classifier.classify(to_pil(published.thumbnails[0]))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)


def test_thumbnails_are_copies_of_the_training_images(classifier, published):
    thumb = classifier.thumbnail(4)
    assert thumb.dtype == np.uint8 and np.array_equal(thumb, published.thumbnails[4, 0].numpy())
    thumb[:] = 0
    assert published.thumbnails[4].any()
    with pytest.raises(IndexError):
        classifier.thumbnail(len(published.labels))


def test_an_rgb_model_sees_and_shows_colour():
    classifier = Classifier(publish(channels=3))
    train = classifier.published.thumbnails
    prediction = classifier.classify(to_pil(train[1]))
    assert prediction.model_input.shape == (14, 14, 3) and classifier.thumbnail(1).shape == (14, 14, 3)
    assert prediction.neighbours[0][0] == 1


def test_a_light_on_dark_model_sees_paper_drawings_as_white_on_black():
    classifier = Classifier(publish(framing=Framing(light_on_dark=True)))
    seen = classifier.classify(drawing()).model_input
    assert seen[[0, 0, -1, -1], [0, -1, 0, -1]].max() == 0 and seen.max() == 255


def test_a_thin_strip_classifies_end_to_end(classifier):
    strip = Image.fromarray(np.random.default_rng(0).integers(0, 256, (5000, 1), dtype=np.uint8))
    prediction = classifier.classify(decode(encode(strip)))
    assert prediction.model_input.shape == (14, 14) and len(prediction.neighbours) == 8


@pytest.mark.parametrize("kind", sorted(UPLOADS))
def test_uploads_of_any_mode_classify(kind, classifier):
    assert len(classifier.classify(decode(UPLOADS[kind]())).top) == 5


def test_a_model_file_rejects_inconsistent_parts(published):
    with pytest.raises(ModelFileError, match="a bank of 47 labels but 48 embeddings"):
        dataclasses.replace(published, labels=published.labels[:-1], labelled=torch.arange(47))
    with pytest.raises(ModelFileError, match="labels outside its 2 classes"):
        dataclasses.replace(published, class_names=("a", "b"))


def test_a_class_head_classifies_by_softmax_and_the_knn_vote_stays_available(published):
    torch.manual_seed(1)
    head = torch.nn.Linear(TINY_MODEL.dim, len(published.class_names))
    state = {"weight": head.weight.detach(), "bias": head.bias.detach()}
    with_head = Classifier(dataclasses.replace(published, head=state))
    assert with_head.methods == ("class head", "kNN vote") and Classifier(published).methods == ("kNN vote",)
    image = to_pil(published.thumbnails[5])
    by_head = with_head.classify(image)
    assert by_head.method == "fine-tuned class head, softmax over 6 classes"
    backbone = Backbone(published.model, 1)
    backbone.load_state_dict(published.backbone)
    expected = head(embed(backbone, published.thumbnails[5:6])[0]).softmax(dim=0)
    assert [name for name, _ in by_head.top] == [published.class_names[i] for i in expected.topk(5).indices]
    assert [p for _, p in by_head.top] == pytest.approx(expected.topk(5).values.tolist(), abs=1e-5)
    by_vote = with_head.classify(image, "kNN vote")
    assert by_vote.top == Classifier(published).classify(image).top
    with pytest.raises(ValueError, match="cannot classify by 'class head'"):
        Classifier(published).classify(image, "class head")


def test_a_class_head_must_fit_the_classes_and_the_embedding(published):
    head = {"weight": torch.zeros(5, TINY_MODEL.dim), "bias": torch.zeros(5)}
    with pytest.raises(ModelFileError, match="a class head of another shape"):
        dataclasses.replace(published, head=head)


# --- building a published model -------------------------------------------------------------------

@pytest.mark.parametrize("light_on_dark", [True, False])
def test_build_measures_the_framing_and_stores_the_images_at_the_models_side(light_on_dark):
    train = white_on_black()  # 14 px
    if not light_on_dark:  # the same objects on a mid-gray ground: photos
        train = ImageSet(train.images.clamp_min(128), train.labels, train.class_names)
    model = ModelConfig(**{**TINY_MODEL.__dict__, "image_size": 7})  # one 7 px patch
    config = TrainConfig(dataset="toy", model=model, augment=TINY_AUGMENT, knn_k=5)
    torch.manual_seed(0)
    backbone = Backbone(model, 1).eval()
    embeddings = embed(backbone, fit_square(train.images, 7))
    published = ModelFile.build(config, train, backbone.state_dict(), embeddings, epoch=2)
    assert published.framing == measure_framing(train.images)
    assert published.framing.light_on_dark == light_on_dark
    assert published.thumbnails.shape == (24, 1, 7, 7)
    assert torch.equal(published.thumbnails, fit_square(train.images, 7))
    assert published.channels == 1 and published.class_names == train.class_names and published.epoch == 2
    assert torch.equal(published.labels, train.labels) and published.head is None
    prediction = Classifier(published).classify(to_pil(train.images[4]))  # a 14 px upload, seen at 7 px
    assert prediction.model_input.shape == (7, 7) and len(prediction.neighbours) == 8



# --- honest answers -------------------------------------------------------------------------------
@pytest.mark.parametrize("blank", [Image.new("L", (50, 40), 255), Image.new("RGB", (64, 64), (20, 120, 40)),
                                   Image.new("RGBA", (32, 32), (0, 0, 0, 0))])  # transparent: white
def test_a_blank_image_gets_no_answer(blank, classifier):
    with pytest.raises(ImageError, match="blank"):
        classifier.classify(decode(encode(blank)))
    assert "nothing to classify" in BLANK_MESSAGE


def test_typicality_is_the_share_of_training_images_less_typical_and_flags_images_unlike_all(published):
    classifier = Classifier(published)
    own, own_pixels = classifier._own_nearest
    top = float(own.max()) + 1e-3
    assert classifier.typicality(top) == 1.0 and classifier.typicality(-1.0) == 0.0
    assert classifier.typicality(top, -1.0) == 0.0  # unlike in pixels is enough
    quarter = float(own[len(own) // 8])  # an eighth of them lie below: a share of 1/8, doubled
    assert classifier.typicality(quarter) == pytest.approx(0.25, abs=0.05)
    training = classifier.classify(to_pil(published.thumbnails[0]))
    assert training.typicality > 0.5 and not training.unlike_training  # a training image is its own neighbour
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (14, 14), dtype=np.uint8))
    unlike = classifier.classify(noise)
    assert unlike.typicality < training.typicality
    assert unlike.unlike_training == (unlike.typicality < UNLIKE_SHARE)


def test_neighbours_of_a_training_image_leave_it_out_and_come_nearest_first(classifier, published):
    unit = F.normalize(published.embeddings, dim=1)
    neighbours = classifier.neighbours_of(5)
    assert len(neighbours) == 8 and 5 not in [i for i, _, _ in neighbours]
    expected = (unit @ unit[5]).topk(9).indices.tolist()
    assert [i for i, _, _ in neighbours] == [i for i in expected if i != 5][:8]
    assert [s for _, _, s in neighbours] == sorted((s for _, _, s in neighbours), reverse=True)
    with pytest.raises(IndexError):
        classifier.neighbours_of(len(unit))


def test_a_knn_answer_counts_its_neighbours(classifier, published):
    prediction = classifier.classify(to_pil(published.thumbnails[3]), KNN)
    assert sum(n for _, n in prediction.votes) == prediction.k == 5
    assert [n for _, n in prediction.votes] == sorted((n for _, n in prediction.votes), reverse=True)
    assert prediction.votes[0][0] == prediction.top[0][0]  # the most votes names the top class here


# --- many images at once (core.classify) -----------------------------------------------------------

def test_batched_answers_are_the_single_answers_with_their_flags(classifier, published):
    images = [to_pil(image) for image in make_splits(classes=6, seed=7).test.images[:5]]
    images.append(Image.new("L", (14, 14), 200))  # blank: answered, and flagged
    pixels = torch.stack([classifier.model_input(image) for image in images])
    answers = classifier.answers(pixels, [False] * 5 + [True], top=3)
    for image, answer in zip(images[:5], answers):
        single = classifier.classify(image)
        assert [n for n, _ in answer.top] == [n for n, _ in single.top[:3]]
        assert [p for _, p in answer.top] == pytest.approx([p for _, p in single.top[:3]], abs=1e-5)
        assert answer.typicality == pytest.approx(single.typicality) and answer.method == KNN
        assert not answer.blank and answer.embedding.shape == (TINY_MODEL.dim,)
    assert answers[-1].blank and len(answers) == 6
    with pytest.raises(ValueError, match="cannot classify by 'class head'"):
        classifier.answers(pixels, [False] * 6, "class head")
