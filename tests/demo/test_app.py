"""The app's callbacks without a browser (the browser test covers the page itself)."""
import gradio as gr
import pytest

from demo import app as app_module
from demo.app import App, parse_args


class FakeSession:
    """Stands in for Session: no training, a classifier that is either absent or canned."""

    def __init__(self, classifier=None):
        self._classifier = classifier

    def classifier(self):
        return self._classifier

    def classify(self, image):
        return self._classifier.classify(image)


def test_port_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8123")
    assert parse_args([]).port == 8123 and parse_args([]).host == "127.0.0.1"
    assert parse_args(["--port", "9000"]).port == 9000
    assert parse_args([]).share is False


def test_classifying_before_any_model_says_what_to_do(tmp_path):
    app = App(FakeSession())
    with pytest.raises(gr.Error, match="start training"):
        app.classify_many([str(app_module.ASSETS / "sneaker.png")])


def test_many_photos_each_get_a_caption_and_bad_files_do_not_stop_the_batch(tmp_path):
    from core.classify import Prediction
    import numpy as np

    class Canned:
        def classify(self, image):
            return Prediction([("Sneaker", 0.9)] * 5, [], np.zeros((28, 28), np.uint8),
                              np.zeros((28, 28), np.float32), "kNN")

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    results = App(FakeSession(Canned())).classify_many([str(app_module.ASSETS / "sneaker.png"), str(bad)])
    assert results[0][1] == "sneaker.png: Sneaker (90%)"
    assert results[1][1].startswith("broken.png: refused")
