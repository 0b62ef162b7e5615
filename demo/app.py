"""`python -m demo.app`: the Gradio app. Wiring only: layout, callbacks, and a 1 s timer that reads
a snapshot of the Session's state and redraws plots built by the pure functions in demo.plots (the
panels' layout: demo/panels.py).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import gradio as gr

from core.config import TrainConfig
from core.data.sources import present_sources
from core.plan.auto import DEFAULT_EPOCHS
from core.plan.presets import AUTO, default_recipe, preset
from core.plan.recipe import recipe
from core.plan.request import ONLY, Request
from core.serve.projection import write_layout_csv
from demo import embedding_plot, panels, plots, text
from demo.classify_panel import (
    Classifying,
    classify_panel,
    drawable,
    examples_of,
    gallery,
    image_to_np,
)
from demo.session import Session
from demo.workbench import Workbench, runs_panel

MAX_UPLOAD = "20mb"
DEFAULT_PORT = 7860
TICK_S = 1.0
SNAPSHOT_EVERY = 2  # epochs between embedding snapshots (UMAP + published classifier) when a preset has none
# What the 1 s timer may update, by name: App.tick returns a dict of some of these.
TICK_OUTPUTS = ("status", "progress", "training", "knn", "confusion", "umap", "replay", "runs", "selected",
                "drawing_fits", "examples", "epochs", "batch", "lr", "drawn")
# Gradio's queue: one bound for every event, and a concurrency group per kind of event, so a classify
# never waits behind the ticks of many open tabs (each tab polls every TICK_S).
QUEUE_MAX = 256
# After every event, Gradio's queue rebuilds a pandas summary of every event it has recorded (up to
# 10,000) for its analytics; with 20 tabs ticking that alone kept a core busy and a classify took over
# 2 s. A summary every 500th event, over the last 1,000, costs nothing noticeable.
QUEUE_ANALYTICS = {"GRADIO_ANALYTICS_CACHE_FREQUENCY": "500", "GRADIO_ANALYTICS_MAX_EVENTS": "1000"}
TICK_CONCURRENCY = 2  # a tick is a few ms; the shared curve cache makes most of them cheaper still


class App:
    """Callbacks bound to one Session; per-tab drawing state lives in gr.State, never in globals."""

    def __init__(self, session: Session, data_root: str | None = None):
        self.session = session
        self.dataset_choices = [*present_sources(data_root), text.FOLDER_CHOICE]
        # Removed with its files when the App is collected or the process exits (TemporaryDirectory's finaliser).
        self._exports = tempfile.TemporaryDirectory(prefix="vit2040-export-")
        self.export_dir = Path(self._exports.name)
        self._curves_lock = threading.Lock()
        self._curves: tuple = (None, {})  # (key, {output name: figure}), shared by every tab
        self.bench = Workbench(session, self.export_dir)
        self.classifying = Classifying(session)

    # -- Train -------------------------------------------------------------------------------
    def start(self, dataset, folder, objective, preset_name, epochs, batch_size, lr, minutes=0, pipeline=False):
        if dataset == text.FOLDER_CHOICE:
            if not folder or not folder.strip():
                raise gr.Error("Type the folder's path first (one subfolder per class).")
            dataset = f"folder:{folder.strip()}"
        try:
            minutes = float(minutes or 0)
            if pipeline and not minutes:
                raise ValueError(text.PIPELINE_NEEDS_MINUTES)
            stages = "auto" if pipeline else ONLY  # the best model in the minutes, or one stage of the objective
            if preset_name == AUTO:  # fitted to the data in the training thread; picks batch and lr
                asked = TrainConfig(dataset=dataset, objective=objective, snapshot_every=SNAPSHOT_EVERY)
                message = self.session.start(Request(asked, AUTO, stages, minutes, None if minutes else int(epochs)))
                gr.Info(message)
                return
            base = preset(preset_name)
            if pipeline:  # the preset is the base its stages are built on (core/plan/request.py)
                asked = base.with_overrides(dataset=dataset, objective=objective, batch_size=int(batch_size),
                                            lr=float(lr), snapshot_every=base.snapshot_every or SNAPSHOT_EVERY)
                gr.Info(self.session.start(Request(asked, preset_name, stages, minutes)))
                return
            # The same recipe as the command line (core/plan/recipe.py): e.g. contrastive gets its two views per
            # image. Minutes, when given, decide the length: the run times itself and fixes its epochs.
            config = recipe(base, objective, epochs=int(epochs), dataset=dataset, batch_size=int(batch_size),
                            lr=float(lr), minutes=minutes, snapshot_every=base.snapshot_every or SNAPSHOT_EVERY)
            message = self.session.start(config)
        except (ValueError, RuntimeError) as exc:
            raise gr.Error(str(exc)) from None
        gr.Info(message)

    def upload_data(self, archive):
        """A zip of class subfolders from the browser, unpacked to a folder the form then trains on."""
        if not archive:
            return gr.update(), gr.update()
        try:
            folder, holds = self.session.unpack(archive)
        except (ValueError, OSError) as exc:  # a DatasetError is a ValueError
            raise gr.Error(str(exc).replace(str(Path(archive).parent) + "/", "")) from None
        gr.Info(text.UNPACKED.format(holds=holds))
        return gr.update(value=text.FOLDER_CHOICE), gr.update(value=str(folder))

    def stop(self):
        gr.Info(self.session.stop())

    def finetune(self, epochs, labels_per_class):
        try:
            gr.Info(self.session.finetune(int(epochs) if epochs else None, int(labels_per_class or 0)))
        except (LookupError, RuntimeError, ValueError) as exc:
            raise gr.Error(str(exc)) from None

    def resume(self):
        try:
            gr.Info(self.session.resume())
        except (LookupError, RuntimeError, ValueError) as exc:
            raise gr.Error(str(exc)) from None

    @staticmethod
    def preset_defaults(preset_name):
        if preset_name == AUTO:  # auto chooses batch and lr itself
            return DEFAULT_EPOCHS, gr.update(), gr.update()
        config = preset(preset_name)
        return config.epochs, config.batch_size, config.lr

    @staticmethod
    def preset_for(dataset, current=None):
        """The preset tuned on the dataset, else the auto recipe (core/plan/presets.py); a switch is said."""
        chosen = default_recipe(dataset)
        if current is not None and chosen != current:
            gr.Info(text.PRESET_SWITCHED.format(dataset=dataset, preset=chosen))
        return chosen

    # -- Watch (timer) -----------------------------------------------------------------------
    def tick(self, sprites, replay, drawn, selected=(), smoothing=plots.LOSS_SMOOTHING) -> dict:
        """What changed since this tab last drew, keyed by component name (TICK_OUTPUTS); an output
        left out stays as it is. `drawn` is the tab's own memo; the curves show the current run and
        the runs `selected` in the run table."""
        every = self.session.views()
        current = every[-1] if every else None
        views = [v for v in every[:-1] if v.run_id in (selected or ())] + ([current] if current else [])
        before, drawn = drawn or {}, dict(drawn or {})
        outputs = {"status": text.status_line(current), "progress": text.progress_html(current)}
        curves_key = (tuple((v.run_id, v.step, v.status, len(v.knn), len(v.top1), v.label) for v in views),
                      float(smoothing))
        if curves_key != drawn.get("curves"):
            drawn["curves"] = curves_key
            outputs.update(self._curve_figures(curves_key, views, float(smoothing)))
        runs_key = tuple((v.run_id, v.status, v.label) for v in every)
        if runs_key != drawn.get("runs"):  # a run started, ended, was renamed, deleted or opened
            drawn["runs"] = runs_key
            outputs["runs"], outputs["selected"] = self.bench.refresh(selected)
        outputs.update(self._clusters(current, sprites, replay, drawn))
        outputs.update(self._classify_inputs(drawn))
        outputs.update(self._fitted_recipe(current, drawn))
        # An idle tab costs the server little: a slider as the tab last received it is not sent again. The
        # status line and the progress bar always are (API clients poll the status line).
        if outputs.get("replay") == drawn.get("sent_replay"):
            outputs.pop("replay", None)
        else:
            drawn["sent_replay"] = outputs["replay"]
        return outputs if drawn == before else {**outputs, "drawn": drawn}

    def _curve_figures(self, key, views, smoothing: float) -> dict:
        """The curves for `key`, built once and shared by every tab: each open tab polls every second,
        and building them per tab (~0.15 s each) saturated two cores with 20 tabs open."""
        with self._curves_lock:
            if self._curves[0] != key:
                self._curves = (key, {"training": plots.training_figure(views, smoothing),
                                      "knn": plots.knn_figure(views),
                                      "confusion": plots.confusion_figure(views[-1] if views else None)})
            return dict(self._curves[1])

    def _clusters(self, view, sprites, replay, drawn) -> dict:
        layouts = view.layouts if view else ()
        last = max(len(layouts) - 1, 0)
        # A slider left at the newest snapshot follows new ones; moved back, it stays put (replay).
        following = replay is None or replay >= drawn.get("last_layout", 0)
        index = last if following else min(int(replay), last)
        drawn["last_layout"] = last
        slider = gr.update(maximum=max(last, 1), value=index, interactive=len(layouts) > 1)
        layout = layouts[index] if layouts else None
        key = (view.run_id if view else None, layout.epoch if layout else None, bool(sprites))
        if key == drawn.get("umap"):
            return {"replay": slider}
        drawn["umap"] = key
        thumbs = self.session.thumbnails() if sprites else None
        names = view.class_names if view else ()
        umap = embedding_plot.umap_figure(layout, names, thumbnails=thumbs, sprites=bool(sprites))
        return {"umap": umap, "replay": slider}

    @staticmethod
    def _fitted_recipe(view, drawn) -> dict:
        """The form shows the recipe a run actually trains (fitted by auto or a budget), once per stage: what
        the form said before is not what ran."""
        fitted = view.recipe if view and view.status == "running" and not view.fitting_minutes else None
        key = (view.run_id, fitted) if fitted else None
        if key is None or key == drawn.get("recipe"):
            return {}
        drawn["recipe"] = key
        epochs, batch, lr = fitted
        return {"epochs": epochs, "batch": batch, "lr": lr}

    def _classify_inputs(self, drawn) -> dict:
        """The Classify panel's examples and whether it offers a drawing, redrawn when another model answers."""
        classifier = self.session.classifier()
        model = classifier.published if classifier else None
        key = (id(model), model.epoch, model.class_names) if model else None
        if "model" in drawn and key == drawn["model"]:
            return {}
        drawn["model"] = key
        return {"examples": examples_of(classifier), "drawing_fits": model is None or drawable(model)}

    def thumbnail(self, index):
        """A training image (a clicked UMAP point or a typed index) and its nearest training images in
        the published model's embedding space, captioned with class and cosine similarity."""
        thumbs = self.session.thumbnails()
        if thumbs is None or index is None:
            return None, []
        if not 0 <= int(index) < len(thumbs):
            raise gr.Error(text.THUMB_OUT_OF_RANGE.format(index=int(index), n=len(thumbs)))
        classifier = self.session.classifier()
        if classifier is None or len(classifier.published.labels) != len(thumbs):
            return image_to_np(thumbs[int(index)]), []
        return image_to_np(thumbs[int(index)]), gallery(classifier, classifier.neighbours_of(int(index)))

    def export_layout(self):
        views = self.session.views()
        layout = views[-1].layouts[-1] if views and views[-1].layouts else None
        if layout is None:
            raise gr.Error(text.NO_LAYOUT)
        name = f"vit2040-{views[-1].run_id.replace('/', '-')}-umap-epoch{layout.epoch}.csv"
        return str(write_layout_csv(self.export_dir / name, layout.xy, layout.labels, views[-1].class_names,
                                    layout.names))

    # -- Keep --------------------------------------------------------------------------------
    def save(self):
        try:
            return str(self.session.export_model(self.export_dir))
        except LookupError as exc:
            raise gr.Error(str(exc)) from None

    def load(self, path):
        if not path:
            return
        try:
            gr.Info(self.session.load(path))
        except (ValueError, RuntimeError, OSError) as exc:  # ModelFileError, CheckpointError, DatasetError
            # The file's name, not the server temp path gradio stored the upload under; the model that answered
            # before still answers, and the page says so.
            message = str(exc).replace(str(Path(path).resolve()), Path(path).name).replace(str(path), Path(path).name)
            raise gr.Error(text.LOAD_REFUSED.format(message=message)) from None


def build(session: Session, data_root: str | None = None) -> gr.Blocks:
    app = App(session, data_root)
    with gr.Blocks(title=text.TITLE, analytics_enabled=False) as blocks:  # a local demo phones no one
        gr.Markdown(f"## {text.TITLE}\n{text.INTRO}")
        with gr.Row():
            train = panels.train_panel(app)
            watch = panels.watch_panel()
        clusters = panels.clusters_panel(app)
        workbench = runs_panel(app.bench)
        classify = classify_panel(app.classifying)
        panels.keep_panel(app)
        drawn = gr.State({})
        outputs = {**{name: train[name] for name in ("status", "progress", "epochs", "batch", "lr")},
                   "training": watch["training"],
                   "knn": watch["knn"], "confusion": watch["confusion"], "umap": clusters["umap"],
                   "replay": clusters["replay"], **workbench, **classify, "drawn": drawn}
        if set(outputs) != set(TICK_OUTPUTS):  # App.tick returns some of TICK_OUTPUTS by name
            raise RuntimeError(f"the timer wires {sorted(outputs)}, App.tick speaks of {sorted(TICK_OUTPUTS)}")

        def tick(sprites, replay, memo, selected, smoothing):
            return {outputs[name]: value for name, value in app.tick(sprites, replay, memo, selected,
                                                                     smoothing).items()}

        inputs = [clusters["sprites"], clusters["replay"], drawn, workbench["selected"], watch["smoothing"]]
        gr.Timer(TICK_S).tick(tick, inputs, list(outputs.values()), show_progress="hidden", concurrency_id="tick",
                              concurrency_limit=TICK_CONCURRENCY)
    return blocks


def queue(blocks: gr.Blocks) -> gr.Blocks:
    """The app's queue: bounded, one concurrency limit per event unless the event names its group."""
    for key, value in QUEUE_ANALYTICS.items():  # read when the queue is made; a person's own setting wins
        os.environ.setdefault(key, value)
    return blocks.queue(max_size=QUEUE_MAX, default_concurrency_limit=1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo.app", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)))
    parser.add_argument("--share", action="store_true", help="also publish through a Gradio share link")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/app"))
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--download", action="store_true", help="allow dataset downloads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.share or args.host not in ("127.0.0.1", "localhost", "::1"):
        warnings.warn(f"serving beyond this machine (host {args.host}, share {args.share}): anyone who can "
                      "reach it can start training and upload files", stacklevel=1)
    session = Session(args.runs_dir, data_root=args.data_root, download=args.download)
    session.preload(preset("cpu-quick"))  # the default dataset, ready before the first Start
    try:
        session.open_last()  # the model that answered before the restart answers again
    except (ValueError, OSError) as exc:  # a damaged model file: the app starts without it and says why
        print(f"could not open the last run's model: {exc}", file=sys.stderr)
    blocks = build(session, args.data_root)
    try:
        queue(blocks).launch(
            server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD,
            css=text.CSS, js=text.PAGE_JS, show_error=True)
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
