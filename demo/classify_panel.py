"""The Classify panel: a photo, several, or a drawing, answered by the published model (the Session's),
with the answer's reasons (method, kNN counts, whether the image is like the training images)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import torch
from PIL import Image

from core.data.images import ImageError, decode
from core.serve.classifier import HEAD, KNN
from core.serve.model_file import describe
from demo import plots, text

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "examples"
THUMB_SCALE = 8  # 28 px training images shown at 224 px
CLASSIFY_CONCURRENCY = 2  # one forward pass each, on one torch thread


def image_to_np(image: np.ndarray, scale: int = THUMB_SCALE) -> np.ndarray:
    """Nearest-neighbour upscale so small images stay crisp in the browser."""
    return image.repeat(scale, axis=0).repeat(scale, axis=1) if image.shape[0] < 96 else image


class Classifying:
    """The panel's callbacks, bound to one Session (its published classifier)."""

    def __init__(self, session):
        self.session = session

    # The photo and the drawing arrive as gradio's raw upload dicts (their events set preprocess=False):
    # gr.Image's own preprocessing opens the file with Pillow and converts it to RGB, so an empty,
    # corrupt or non-image upload failed inside gradio with a raw Pillow error naming a server temp
    # path, transparency turned black, 16-bit images were clipped, and a decompression bomb was
    # decoded before its pixel limit was checked. core.images.decode does all of that properly.
    def on_upload(self, upload, method):
        """A new photo (dropped, pasted or an example clicked) classifies at once; clearing clears."""
        return (None, None, None, None, "") if upload is None else self.classify(upload, None, method)

    def on_method(self, upload, method):
        """Another method answers the same photo again; with no photo there is nothing to answer."""
        return (gr.update(),) * 5 if upload is None else self.classify(upload, None, method)

    def on_example(self, method, selected: gr.SelectData):
        """An example (a training image of the model that answers) classifies at once."""
        classifier = self.session.classifier()
        if classifier is None:
            return refused(text.NO_MODEL)
        image = Image.fromarray(classifier.thumbnail(example_indices(classifier.published)[selected.index]))
        return self._answer(image, method)

    def classify(self, upload, sketch, method):
        try:
            image = decode(upload["path"]) if upload is not None else _sketch_image(sketch)
        except ImageError as exc:
            return refused(str(exc))
        if image is None:
            return refused(text.NOTHING_TO_CLASSIFY)
        return self._answer(image, method)

    def _answer(self, image, method):
        try:
            prediction = self.session.classify(image, method)  # kNN when the model has no class head yet
        except ImageError as exc:
            return refused(str(exc))
        except LookupError:
            return refused(text.NO_MODEL)
        classifier = self.session.classifier()
        neighbours = gallery(classifier, prediction.neighbours)
        return (image_to_np(prediction.model_input), dict(prediction.top), neighbours,
                plots.attention_overlay(prediction.model_input, prediction.attention),
                answer_notes(prediction, text.ANSWERED_BY.format(run=self.session.answering(),
                                                                 model=describe(classifier.published))))

    def classify_many(self, paths, method):
        """Several photos at once: each as the model sees it, captioned with its top class; an
        unreadable file gets its reason as the caption instead of stopping the batch."""
        if self.session.classifier() is None:
            raise gr.Error(text.NO_MODEL)
        results = []
        for path in paths or []:
            name = Path(path).name
            try:
                prediction = self.session.classify(decode(path), method)
            except ImageError as exc:
                results.append((np.zeros((28, 28), dtype=np.uint8), text.MANY_REFUSED.format(name=name, reason=exc)))
                continue
            label, probability = prediction.top[0]
            results.append((image_to_np(prediction.model_input),
                            text.MANY_CAPTION.format(name=name, label=label, probability=probability)))
        return results


def refused(reason: str) -> tuple:
    """An image that gets no answer: a toast, and the panel cleared with the reason in its notes. Raising
    gr.Error instead left the previous photo's answer on the page beside bare "Error" badges."""
    gr.Warning(reason)
    return None, None, [], None, text.NOT_ANSWERED.format(reason=reason)


def gallery(classifier, neighbours) -> list[tuple[np.ndarray, str]]:
    return [(image_to_np(classifier.thumbnail(i)), text.NEIGHBOUR_CAPTION.format(index=i, name=name, similarity=sim))
            for i, name, sim in neighbours]


def answer_notes(prediction, answered_by: str = "") -> str:
    """Which model answered, its method, the kNN vote as counts of neighbours, and whether the image is like
    the training set."""
    nearest = prediction.neighbours[0][2] if prediction.neighbours else 0.0
    notes = ([answered_by] if answered_by else []) + [prediction.method]
    if prediction.votes:
        counts = ", ".join(f"{name} {n}" for name, n in prediction.votes)
        notes.append(text.KNN_VOTES.format(counts=counts, k=prediction.k))
    notes.append(text.UNLIKE.format(nearest=nearest, share=1 - prediction.typicality,
                                    percentile=prediction.unlike_share * 100)
                 if prediction.unlike_training else text.LIKE.format(share=prediction.typicality))
    return "  \n".join(notes)


def _sketch_image(composite):
    """The Sketchpad's composite (a raw file payload, copied by SKETCH_COMPOSITE_JS) as an 'L' or 'RGB'
    image, or None when nothing was drawn."""
    if not composite or not composite.get("path"):
        return None
    image = decode(composite["path"])
    return image if np.asarray(image).std() > 0 else None


EXAMPLES = 8
# A drawing is light strokes on a dark ground: it resembles a model's training images only when they are gray
# and their borders mostly dark (MNIST-like digits, Fashion-MNIST's garments), whatever the dataset is called.
DARK_BORDER = 64  # mean border pixel (0-255) below which a training image counts as drawn on a dark ground
DARK_SHARE = 0.8  # the share of training images that must be so


def drawable(model) -> bool:
    """Whether a drawing is a fair input for the model (see DARK_BORDER)."""
    thumbs = model.thumbnails  # uint8 (N, C, t, t)
    if thumbs.shape[1] != 1:
        return False
    edge = torch.cat([thumbs[:, 0, 0], thumbs[:, 0, -1], thumbs[:, 0, :, 0], thumbs[:, 0, :, -1]], dim=1)
    return float((edge.float().mean(dim=1) < DARK_BORDER).float().mean()) >= DARK_SHARE


def example_indices(model) -> list[int]:
    """The training images the panel offers as examples: the first of each class, then the second, ...: at most
    EXAMPLES, every class shown before any twice."""
    seen: dict[int, int] = {}
    rank = []  # (how many of its class came before it, index)
    for i, label in enumerate(model.labels.tolist()):
        rank.append((seen.get(label, 0), i))
        seen[label] = seen.get(label, 0) + 1
    return [i for _, i in sorted(rank)[:EXAMPLES]]


def examples_of(classifier) -> list[tuple[np.ndarray, str]]:
    """The examples of the model that answers, captioned with their class."""
    if classifier is None:
        return []
    model = classifier.published
    return [(image_to_np(classifier.thumbnail(i)), model.class_names[int(model.labels[i])])
            for i in example_indices(model)]


def classify_panel(app: Classifying) -> dict:
    gr.Markdown(f"### {text.CLASSIFY}")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.Image(type="filepath", label=text.LABEL_UPLOAD, sources=["upload", "clipboard"],
                              elem_id="upload")
            # Only for a model of light strokes or objects on a dark ground (digits, garments): a drawing is
            # nothing like a photo. The timer shows it when such a model answers (drawable).
            with gr.Column(elem_id="sketch-box"):
                sketch = gr.Sketchpad(label=text.LABEL_SKETCH, type="numpy", height=280, elem_id="sketch")
            # Whether a drawing fits the model that answers: the timer sets it when another model answers, and the
            # page shows or hides the sketchpad itself (text.SKETCH_VISIBILITY_JS). A server event whose output
            # holds the Sketchpad, even as its column's visibility, made it re-upload its layers at every tick.
            drawing_fits = gr.Checkbox(True, visible="hidden", elem_id="drawing-fits")
            drawing_fits.change(None, drawing_fits, None, js=text.SKETCH_VISIBILITY_JS)
            method_choice = gr.Radio([HEAD, KNN], value=HEAD, label=text.LABEL_METHOD, elem_id="method-choice")
            button = gr.Button(text.BUTTON_CLASSIFY, variant="primary", elem_id="classify")
        with gr.Column(scale=2):
            with gr.Row():
                seen = gr.Image(label=text.LABEL_SEEN, interactive=False, height=224, elem_id="seen")
                attention = gr.Image(label=text.LABEL_ATTENTION, interactive=False, height=224)
                top5 = gr.Label(num_top_classes=5, label=text.LABEL_TOP, elem_id="top5")
            method = gr.Markdown(elem_id="method")
            # Four to a row and a height that follows them: eight in one fixed-height row cut off the
            # last image and hid the captions (class and similarity).
            neighbours = gr.Gallery(label=text.LABEL_NEIGHBOURS, columns=4, height="auto", object_fit="contain",
                                    elem_id="neighbours")
    outputs = [seen, top5, neighbours, attention, method]
    classify = dict(concurrency_id="classify", concurrency_limit=CLASSIFY_CONCURRENCY, preprocess=False)
    # The drawing reaches the server through a hidden image, copied in the browser (no server call): a
    # Sketchpad that was ever the input of a server event re-uploads its layers on every later event's
    # status change, so with the 1 s timer it posted uploads several times a second, idle, and a Classify
    # queued behind them took 10-18 s (measured in Gradio 6.31; text.SKETCH_COMPOSITE_JS).
    drawing = gr.Image(visible="hidden", elem_id="drawing-copy")
    button.click(None, sketch, drawing, js=text.SKETCH_COMPOSITE_JS).then(
        app.classify, [upload, drawing, method_choice], outputs, **classify)  # see Classifying.classify
    upload.change(app.on_upload, [upload, method_choice], outputs, **classify)
    method_choice.change(app.on_method, [upload, method_choice], outputs, **classify)
    with gr.Row():
        many = gr.File(label=text.LABEL_MANY, file_count="multiple", file_types=["image"], type="filepath",
                       elem_id="many")
        many_results = gr.Gallery(label=text.LABEL_MANY_RESULTS, columns=6, height=200, object_fit="contain",
                                  elem_id="many-results")
    many.upload(app.classify_many, [many, method_choice], many_results, concurrency_id="classify",
                concurrency_limit=CLASSIFY_CONCURRENCY)
    examples = gr.Gallery(label=text.LABEL_EXAMPLES, columns=8, height="auto", object_fit="contain",
                          allow_preview=False, elem_id="examples")
    examples.select(app.on_example, [method_choice], outputs, concurrency_id="classify",
                    concurrency_limit=CLASSIFY_CONCURRENCY)
    return {"drawing_fits": drawing_fits, "examples": examples}
