"""The app's panels: the Gradio layout of Train, Watch, Clusters and Keep and the callbacks each wires
to the App (demo/app.py). Layout only: what a callback does is the App's."""
from __future__ import annotations

from typing import Protocol

import gradio as gr

from core.objectives import OBJECTIVES
from core.plan.presets import RECIPES, preset
from demo import embedding_plot, plots, text
from demo.classify_panel import CLASSIFY_CONCURRENCY


class App(Protocol):
    """The callbacks the panels wire (demo/app.py's App), known here by name only: no import goes back up."""

    dataset_choices: list[str]

    def start(self, *inputs): ...
    def stop(self): ...
    def upload_data(self, archive): ...
    def resume(self): ...
    def finetune(self, epochs, labels_per_class): ...
    def preset_defaults(self, preset_name): ...
    def preset_for(self, dataset): ...
    def thumbnail(self, index): ...
    def export_layout(self): ...
    def save(self): ...
    def load(self, path): ...


def train_panel(app: App) -> dict:
    default = preset("cpu-quick")
    with gr.Column(scale=1, min_width=300):
        gr.Markdown(f"### {text.TRAIN}")
        dataset = gr.Dropdown(app.dataset_choices, value=app.dataset_choices[0], label=text.LABEL_DATASET,
                              elem_id="dataset")
        folder = gr.Textbox(label=text.FOLDER_HINT, placeholder="/path/to/images", elem_id="folder")
        data_zip = gr.File(label=text.LABEL_UPLOAD_DATA, file_types=[".zip"], type="filepath", elem_id="upload-data")
        objective = gr.Dropdown(sorted(OBJECTIVES), value=default.objective, label=text.LABEL_OBJECTIVE)
        preset_name = gr.Dropdown(list(RECIPES), label=text.LABEL_PRESET, elem_id="preset",
                                  value=app.preset_for(app.dataset_choices[0]))
        with gr.Row():
            epochs = gr.Number(default.epochs, label=text.LABEL_EPOCHS, precision=0, minimum=1, elem_id="epochs")
            minutes = gr.Number(0, label=text.LABEL_MINUTES, minimum=0, elem_id="minutes")
            batch = gr.Number(default.batch_size, label=text.LABEL_BATCH, precision=0, minimum=2)
            lr = gr.Number(default.lr, label=text.LABEL_LR, minimum=0)
        pipeline = gr.Checkbox(False, label=text.LABEL_PIPELINE, elem_id="pipeline")
        with gr.Row():
            start = gr.Button(text.BUTTON_START, variant="primary", elem_id="start")
            stop = gr.Button(text.BUTTON_STOP, variant="stop", elem_id="stop")
            resume = gr.Button(text.BUTTON_RESUME, elem_id="resume")
        with gr.Row():
            finetune_epochs = gr.Number(0, label=text.LABEL_FINETUNE_EPOCHS, precision=0, minimum=0,
                                        elem_id="finetune-epochs")
            finetune_labels = gr.Number(0, label=text.LABEL_FINETUNE_LABELS, precision=0, minimum=0,
                                        elem_id="finetune-labels")
            finetune = gr.Button(text.BUTTON_FINETUNE, elem_id="finetune")
        status = gr.Markdown(text.IDLE_STATUS, elem_id="status")
        progress = gr.HTML(text.progress_html(None))
    inputs = [dataset, folder, objective, preset_name, epochs, batch, lr, minutes, pipeline]
    start.click(app.start, inputs, None)
    stop.click(app.stop, None, None)
    resume.click(app.resume, None, None)
    finetune.click(app.finetune, [finetune_epochs, finetune_labels], None)
    preset_name.change(app.preset_defaults, preset_name, [epochs, batch, lr])
    dataset.change(app.preset_for, [dataset, preset_name], preset_name)
    data_zip.upload(app.upload_data, data_zip, [dataset, folder], concurrency_id="load", concurrency_limit=1)
    return {"status": status, "progress": progress, "epochs": epochs, "batch": batch, "lr": lr}


def watch_panel() -> dict:
    with gr.Column(scale=2):
        gr.Markdown(f"### {text.WATCH}")
        training = gr.Plot(plots.empty_figure(plots.EMPTY_TRAINING), show_label=False, elem_id="training-plot")
        smoothing = gr.Slider(0, 0.99, value=plots.LOSS_SMOOTHING, step=0.01, label=text.LABEL_SMOOTHING,
                              elem_id="smoothing")
        knn = gr.Plot(plots.empty_figure(plots.EMPTY_KNN), show_label=False, elem_id="knn-plot")
        with gr.Accordion(text.LABEL_CONFUSION, open=False):
            confusion = gr.Plot(plots.empty_figure(plots.EMPTY_CONFUSION), show_label=False,
                                elem_id="confusion-plot")
    return {"training": training, "knn": knn, "confusion": confusion, "smoothing": smoothing}


def clusters_panel(app: App) -> dict:
    gr.Markdown(f"### {text.CLUSTERS}")
    with gr.Row():
        with gr.Column(scale=3):
            umap = gr.Plot(embedding_plot.umap_figure(None, ()), show_label=False, elem_id="umap-plot")
        with gr.Column(scale=1, min_width=240):
            sprites = gr.Checkbox(False, label=text.LABEL_SPRITES)
            replay = gr.Slider(0, 1, value=0, step=1, label=text.LABEL_REPLAY, interactive=False)
            index = gr.Number(None, label=text.LABEL_INDEX, precision=0, minimum=0, elem_id="thumb-index")
            thumb = gr.Image(label=text.LABEL_THUMB, interactive=False, height=224, elem_id="thumb")
            export = gr.Button(text.BUTTON_EXPORT_LAYOUT, size="sm", elem_id="export-layout")
            exported = gr.File(label=text.LABEL_LAYOUT_FILE, interactive=False, elem_id="exported-layout")
    neighbours = gr.Gallery(label=text.LABEL_NEIGHBOURS_OF, columns=8, height="auto", object_fit="contain",
                            elem_id="point-neighbours")
    for event in (index.change, index.submit):
        event(app.thumbnail, index, [thumb, neighbours], concurrency_id="classify",
              concurrency_limit=CLASSIFY_CONCURRENCY)
    export.click(app.export_layout, None, exported)
    return {"umap": umap, "sprites": sprites, "replay": replay}


def keep_panel(app: App) -> None:
    gr.Markdown(f"### {text.KEEP}")
    with gr.Row():
        save = gr.Button(text.BUTTON_SAVE)
        download = gr.File(label=text.LABEL_DOWNLOAD, interactive=False)
        load = gr.File(label=text.LABEL_LOAD, file_types=[".pt"], type="filepath", elem_id="load-model")
    save.click(app.save, None, download)
    load.upload(app.load, load, None, concurrency_id="load", concurrency_limit=1)
