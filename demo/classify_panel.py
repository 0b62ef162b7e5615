"""The Classify panel: a photo, several, or a drawing, answered by the published model (the Session's),
with the answer's reasons (method, kNN counts, whether the image is like the training images)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np

from core.data.images import ImageError, decode
from core.serve.classifier import HEAD, KNN, UNLIKE_SHARE
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

    def classify(self, upload, sketch, method):
        try:
            image = decode(upload["path"]) if upload is not None else _sketch_image(sketch)
            if image is None:
                raise gr.Error(text.NOTHING_TO_CLASSIFY)
            prediction = self.session.classify(image, method)  # kNN when the model has no class head yet
        except ImageError as exc:
            raise gr.Error(str(exc)) from None
        except LookupError:
            raise gr.Error(text.NO_MODEL) from None
        neighbours = gallery(self.session.classifier(), prediction.neighbours)
        return (image_to_np(prediction.model_input), dict(prediction.top), neighbours,
                plots.attention_overlay(prediction.model_input, prediction.attention), answer_notes(prediction))

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


def gallery(classifier, neighbours) -> list[tuple[np.ndarray, str]]:
    return [(image_to_np(classifier.thumbnail(i)), text.NEIGHBOUR_CAPTION.format(index=i, name=name, similarity=sim))
            for i, name, sim in neighbours]


def answer_notes(prediction) -> str:
    """The method, the kNN vote as counts of neighbours, and whether the image is like the training set."""
    nearest = prediction.neighbours[0][2] if prediction.neighbours else 0.0
    notes = [prediction.method]
    if prediction.votes:
        counts = ", ".join(f"{name} {n}" for name, n in prediction.votes)
        notes.append(text.KNN_VOTES.format(counts=counts, k=prediction.k))
    notes.append(text.UNLIKE.format(nearest=nearest, share=1 - prediction.typicality, percentile=UNLIKE_SHARE * 100)
                 if prediction.unlike_training else text.LIKE.format(share=prediction.typicality))
    return "  \n".join(notes)


def _sketch_image(composite):
    """The Sketchpad's composite (a raw file payload, copied by SKETCH_COMPOSITE_JS) as an 'L' or 'RGB'
    image, or None when nothing was drawn."""
    if not composite or not composite.get("path"):
        return None
    image = decode(composite["path"])
    return image if np.asarray(image).std() > 0 else None


def classify_panel(app: Classifying) -> None:
    gr.Markdown(f"### {text.CLASSIFY}")
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.Image(type="filepath", label=text.LABEL_UPLOAD, sources=["upload", "clipboard"],
                              elem_id="upload")
            sketch = gr.Sketchpad(label=text.LABEL_SKETCH, type="numpy", height=280, elem_id="sketch")
            method_choice = gr.Radio([HEAD, KNN], value=HEAD, label=text.LABEL_METHOD, elem_id="method-choice")
            button = gr.Button(text.BUTTON_CLASSIFY, variant="primary", elem_id="classify")
        with gr.Column(scale=2):
            with gr.Row():
                seen = gr.Image(label=text.LABEL_SEEN, interactive=False, height=224, elem_id="seen")
                attention = gr.Image(label=text.LABEL_ATTENTION, interactive=False, height=224)
                top5 = gr.Label(num_top_classes=5, label=text.LABEL_TOP5, elem_id="top5")
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
    with gr.Row():
        many = gr.File(label=text.LABEL_MANY, file_count="multiple", file_types=["image"], type="filepath",
                       elem_id="many")
        many_results = gr.Gallery(label=text.LABEL_MANY_RESULTS, columns=6, height=200, object_fit="contain",
                                  elem_id="many-results")
    many.upload(app.classify_many, [many, method_choice], many_results, concurrency_id="classify",
                concurrency_limit=CLASSIFY_CONCURRENCY)
    examples = sorted(str(p) for p in ASSETS.glob("*.png"))
    if examples:
        gr.Examples(examples, inputs=upload, label=text.LABEL_EXAMPLES)
