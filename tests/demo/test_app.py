"""The app's callbacks without a browser (the browser test covers the page itself)."""
import dataclasses
import re

import gradio as gr
import pytest
import torch

from demo import app as app_module
from demo.app import App, parse_args
from demo.classify_panel import ASSETS, Classifying, answer_notes


class FakeSession:
    """Stands in for Session: no training, a classifier that is either absent or canned."""

    def __init__(self, classifier=None):
        self._classifier = classifier

    def classifier(self):
        return self._classifier

    def classify(self, image, method=None):
        return self._classifier.classify(image, method)

    def answering(self):
        return "run-1"

    def table(self):
        return []


def test_port_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8123")
    assert parse_args([]).port == 8123 and parse_args([]).host == "127.0.0.1"
    assert parse_args(["--port", "9000"]).port == 9000
    assert parse_args([]).share is False


def test_classifying_before_any_model_says_what_to_do(tmp_path):
    app = App(FakeSession())
    with pytest.raises(gr.Error, match="start training"):
        app.classifying.classify_many([str(ASSETS / "sneaker.png")], "class head")


def test_many_photos_each_get_a_caption_and_bad_files_do_not_stop_the_batch(tmp_path):
    import numpy as np

    from core.serve.classifier import Prediction

    class Canned:
        def classify(self, image, method):
            return Prediction([("Sneaker", 0.9)] * 5, [], np.zeros((28, 28), np.uint8),
                              np.zeros((28, 28), np.float32), f"by {method}")

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    results = Classifying(FakeSession(Canned())).classify_many([str(ASSETS / "sneaker.png"), str(bad)], "kNN vote")
    assert results[0][1] == "sneaker.png: Sneaker (90%)"
    assert results[1][1].startswith("broken.png: refused")


def test_the_app_builds_with_the_finetune_button_method_choice_and_confusion_view(tmp_path):
    from demo.app import build
    blocks = build(FakeSession())
    ids = {getattr(block, "elem_id", None) for block in blocks.blocks.values()}
    assert {"finetune", "finetune-labels", "method-choice", "confusion-plot"} <= ids
    radio = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "method-choice")
    assert [choice[0] for choice in radio.choices] == ["class head", "kNN vote"]


def test_fine_tune_passes_its_labels_per_class_to_the_session():
    from demo.app import App
    asked = []

    class Recording(FakeSession):
        def finetune(self, epochs=None, labels_per_class=0):
            asked.append((epochs, labels_per_class))
            return "fine-tuning"

    app = App(Recording())
    app.finetune(0, 5)
    app.finetune(3, None)
    assert asked == [(None, 5), (3, 0)]


def test_each_objective_in_the_menu_starts_a_config_it_can_train(monkeypatch):
    from core.objectives import OBJECTIVES, build_objective
    started = []

    class Recording(FakeSession):
        def start(self, config):
            build_objective(config, n_instances=2040, n_classes=10)  # raises if the objective cannot train it
            started.append(config)
            return "started"

    monkeypatch.setattr(gr, "Info", lambda message: None)
    app = App(Recording())
    for name in sorted(OBJECTIVES):
        app.start("fashion", "", name, "cpu-quick", 3, 64, 1e-3)
    assert [c.objective for c in started] == sorted(OBJECTIVES)
    assert all(c.epochs == 3 and c.batch_size == 64 for c in started)


def test_the_export_folder_goes_away_with_the_app():
    import gc
    app = App(FakeSession())
    folder = app.export_dir
    (folder / "vit2040-run-1.pt").write_bytes(b"a checkpoint copy")
    del app
    gc.collect()
    assert not folder.exists()


@pytest.mark.parametrize("objective, epochs", [("contrastive", 60), ("supervised", 60), ("instance", 1)])
def test_the_app_and_the_command_line_train_the_same_recipe_for_the_same_choice(monkeypatch, objective, epochs):
    """Once the CLI refused contrastive, trained supervised without Mixup/CutMix and refused --epochs 1,
    while the app trained all three: both now ask core.recipe."""
    import dataclasses

    from core import train
    from core.data.cache import DatasetCache
    started = []

    class Recording(FakeSession):
        def start(self, config):
            started.append(config)
            return "started"

    monkeypatch.setattr(gr, "Info", lambda message: None)
    App(Recording()).start("fashion", "", objective, "cpu-quick", epochs, 128, 1.5e-3)
    cli = train.config_from_args(train.build_parser().parse_args(
        ["--out", "x", "--objective", objective, "--epochs", str(epochs)]), DatasetCache())
    # Snapshots feed the app's UMAP view; the command line draws nothing. Everything else is the recipe.
    assert dataclasses.replace(started[0], snapshot_every=0) == cli
    if objective == "supervised":
        assert cli.augment.mixup_alpha == cli.augment.cutmix_alpha == 0.5


def test_the_timer_updates_only_the_outputs_it_names(tmp_path):
    """App.tick answers by component name; the first tick draws everything, a second with nothing new
    leaves the figures alone (so an idle tab costs no figure serialisation)."""
    class Idle(FakeSession):
        def views(self):
            return []

        def thumbnails(self):
            return None

    app = App(Idle())
    first = app.tick(False, None, {})
    # the form's recipe fields change only when a run has fitted its recipe
    assert set(first) == set(app_module.TICK_OUTPUTS) - {"epochs", "batch", "lr"}
    second = app.tick(False, None, first["drawn"])
    assert set(second) == {"status", "progress"}  # nothing changed: not even the tab's memo is sent back


def test_datasets_without_a_tuned_preset_default_to_the_auto_recipe_and_start_it_in_the_session(monkeypatch):
    from core.plan.presets import AUTO
    from core.plan.request import ONLY
    assert App.preset_for("fashion") == "cpu-quick" and App.preset_for("digits") == AUTO
    assert App.preset_for("Folder") == AUTO
    started = []

    class Recording(FakeSession):
        def start(self, request):
            started.append(request)
            return "started"

    monkeypatch.setattr(gr, "Info", lambda message: None)
    app = App(Recording())
    app.start("digits", "", "contrastive", AUTO, 10, 64, 1e-3, 2)
    app.start("digits", "", "instance", AUTO, 10, 64, 1e-3, 0)
    budgeted, by_epochs = started
    assert (budgeted.base.dataset, budgeted.base.objective, budgeted.recipe) == ("digits", "contrastive", AUTO)
    assert (budgeted.pretrain, budgeted.minutes, budgeted.epochs) == (ONLY, 2.0, None)
    assert (by_epochs.minutes, by_epochs.epochs) == (0.0, 10)  # no minutes: the epochs decide


def test_the_best_model_pipeline_needs_minutes_and_gives_the_session_its_whole_budget(monkeypatch):
    from core.plan.presets import AUTO
    started = []

    class Recording(FakeSession):
        def start(self, request):
            started.append(request)
            return "started"

    monkeypatch.setattr(gr, "Info", lambda message: None)
    app = App(Recording())
    with pytest.raises(gr.Error, match="give it Minutes"):
        app.start("digits", "", "instance", AUTO, 10, 64, 1e-3, 0, True)
    app.start("digits", "", "instance", AUTO, 10, 64, 1e-3, 5, True)
    app.start("fashion", "", "instance", "cpu-quick", 10, 64, 1e-3, 3, True)
    auto, tuned = started
    assert (auto.base.objective, auto.recipe, auto.pretrain, auto.minutes) == ("instance", AUTO, "auto", 5.0)
    # a preset is the stages' base as it is: its own recipe is built per stage (core/plan/request.py)
    assert (tuned.recipe, tuned.minutes, tuned.base.batch_size, tuned.base.dataset) == ("cpu-quick", 3.0, 64,
                                                                                       "fashion")


def _view(run_id, steps=3):
    from core import events as ev
    from demo.history import RunHistory
    history = RunHistory(run_id, f"{run_id} label", ("a", "b"))
    history(ev.RunStarted("cpu", 10, 10, 1, steps, 0, 100))
    for step in range(1, steps + 1):
        history(ev.StepMetrics(step, step - 1, 1.0 / step, 1e-3, 100.0))
    history(ev.Finished("completed", steps, steps, None, None))
    return history.view()


def test_the_curves_show_the_current_run_and_the_selected_ones_and_the_run_table_follows_the_runs(monkeypatch):
    shown = []

    class Three(FakeSession):
        runs = [_view("old-1"), _view("old-2"), _view("run-3")]

        def views(self):
            return list(self.runs)

        def thumbnails(self):
            return None

        def table(self):
            return [[v.run_id] + [""] * 10 for v in self.runs]

    monkeypatch.setattr(app_module.plots, "training_figure", lambda views, smoothing: shown.append(
        ([v.run_id for v in views], smoothing)) or "figure")
    app = App(Three())
    first = app.tick(False, None, {}, [], 0.9)
    assert shown[-1] == (["run-3"], 0.9)  # nothing selected: the current run alone
    assert first["selected"]["choices"] == ["old-1", "old-2", "run-3"]
    again = app.tick(False, None, first["drawn"], ["old-1"], 0.5)
    assert shown[-1] == (["old-1", "run-3"], 0.5) and "runs" not in again  # the runs did not change
    Three.runs = Three.runs[1:]
    after = app.tick(False, None, again["drawn"], ["old-1", "old-2"], 0.5)
    assert after["selected"]["choices"] == ["old-2", "run-3"] and after["selected"]["value"] == ["old-2"]


def test_a_clicked_point_shows_its_neighbours_and_an_answer_says_how_like_the_training_images_it_is():
    from core.serve.classifier import KNN, Classifier
    from tests.core.serve.test_classifier import publish, to_pil
    published = publish()
    classifier = Classifier(published)

    class Published(FakeSession):
        def thumbnails(self):
            return published.thumbnails[:, 0].numpy()

    app = App(Published(classifier))
    image, neighbours = app.thumbnail(4)
    assert image.shape == (14 * 8, 14 * 8) and len(neighbours) == 8
    assert all(re.fullmatch(r"-?[01]\.\d\d · c\d · #\d+", caption) for _, caption in neighbours)
    assert "#4" not in [caption.split(" · ")[-1] for _, caption in neighbours]
    with pytest.raises(gr.Error, match="No training image #999"):
        app.thumbnail(999)
    like = answer_notes(classifier.classify(to_pil(published.thumbnails[0]), KNN))
    assert "of the 5 nearest training images" in like and "Like the training images" in like
    import numpy as np
    noise = classifier.classify(to_pil(torch.from_numpy(np.random.default_rng(0).integers(
        0, 256, (1, 14, 14), dtype=np.uint8))))
    flagged = answer_notes(dataclasses.replace(noise, typicality=0.004))
    assert "Unlike the training images" in flagged and "99.6%" in flagged and "1st percentile" in flagged


def test_the_layout_exports_as_csv(tmp_path):
    import csv

    import numpy as np

    from demo.run_view import Layout

    class WithLayout(FakeSession):
        def views(self):
            return [dataclasses.replace(_view("run-1"), layouts=(
                Layout(4, np.array([[0.5, 1.5], [2.0, -1.0]], np.float32), np.array([1, 0])),))]

    app = App(WithLayout())  # its export folder lives as long as it does
    rows = list(csv.DictReader(open(app.export_layout())))
    assert rows == [{"x": "0.5", "y": "1.5", "label": "b", "index": "0", "file": ""},
                    {"x": "2", "y": "-1", "label": "a", "index": "1", "file": ""}]  # a source without files

    class Named(FakeSession):
        def views(self):
            return [dataclasses.replace(_view("run-1"), layouts=(
                Layout(4, np.zeros((2, 2), np.float32), np.array([1, 0]), ("b/one.png", "a/two.png")),))]

    named = App(Named())
    assert [row["file"] for row in csv.DictReader(open(named.export_layout()))] == ["b/one.png", "a/two.png"]

    class Empty(FakeSession):
        def views(self):
            return []

    with pytest.raises(gr.Error, match="No embedding layout"):
        App(Empty()).export_layout()


def test_the_classify_panel_offers_the_answering_models_own_examples_and_a_sketchpad_only_where_drawings_fit():
    from core.serve.classifier import Classifier
    from demo.classify_panel import drawable, example_indices
    from tests.core.serve.test_classifier import publish, white_on_black
    photos = publish(channels=3, classes=3, n_train=12)  # random RGB pixels: nothing like a drawing
    gray = publish(channels=1, classes=3, n_train=12)
    dark = dataclasses.replace(gray, thumbnails=white_on_black(12, 3, gray.thumbnails.shape[-1]).images)
    assert not drawable(photos) and drawable(dark)
    assert not drawable(dataclasses.replace(dark, thumbnails=255 - dark.thumbnails))  # dark strokes on white
    # every class shown before any twice, at most 8
    assert [int(dark.labels[i]) for i in example_indices(dark)] == [0, 1, 2, 0, 1, 2, 0, 1]

    class Answering(FakeSession):
        def views(self):
            return []

        def thumbnails(self):
            return None

    session = Answering(Classifier(photos))
    app = App(session)
    first = app.tick(False, None, {})
    assert first["drawing_fits"] is False and len(first["examples"]) == 8
    assert {caption for _, caption in first["examples"]} == set(photos.class_names)
    assert "examples" not in app.tick(False, None, first["drawn"])  # the same model: nothing sent again
    session._classifier = Classifier(dark)  # another model answers: its own examples, and a sketchpad
    again = app.tick(False, None, first["drawn"])
    assert again["drawing_fits"] is True and len(again["examples"]) == 8


def test_the_form_shows_the_recipe_a_run_fitted_once_it_runs():
    from core import events as ev
    from demo.history import RunHistory
    history = RunHistory("run-1", "run-1 · photos · training from scratch", ("a", "b"))

    class Running(FakeSession):
        def views(self):
            return [history.view()]

        def thumbnails(self):
            return None

    app = App(Running())
    history(ev.RunStarted("cpu", 100, 20, 4, 400, 0, 1000, budget_minutes=3.0, epochs=100, batch_size=32, lr=7.5e-4))
    fitting = app.tick(False, None, {})
    assert "epochs" not in fitting  # the length is provisional until the run has timed its steps
    history(ev.BudgetFitted(3.0, 16, 8, 64, 400.0, "3 min budget: ~16 epochs"))
    fitted = app.tick(False, None, fitting["drawn"])
    assert (fitted["epochs"], fitted["batch"], fitted["lr"]) == (16, 32, 7.5e-4)
    assert "epochs" not in app.tick(False, None, fitted["drawn"])  # said once: the person may edit it after


def test_an_image_that_gets_no_answer_clears_the_panel_and_says_why(monkeypatch):
    from demo import text
    warned = []
    monkeypatch.setattr(gr, "Warning", warned.append)
    result = Classifying(FakeSession()).classify(None, None, "class head")
    assert result[:4] == (None, None, [], None) and text.NOTHING_TO_CLASSIFY in result[4]
    assert warned == [text.NOTHING_TO_CLASSIFY]
    broken = Classifying(FakeSession()).classify({"path": str(ASSETS.parent / "missing.png")}, None, "class head")
    assert broken[0] is None and broken[4].startswith("**Not answered:**")


def test_choosing_a_dataset_says_when_it_switches_the_preset(monkeypatch):
    said = []
    monkeypatch.setattr(gr, "Info", said.append)
    assert App.preset_for("digits", "cpu-quick") == "auto" and "Preset now auto" in said[-1]
    assert App.preset_for("fashion", "cpu-quick") == "cpu-quick" and len(said) == 1  # no switch, nothing said
