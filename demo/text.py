"""Every string the app shows, defined once, and the pure functions that format run state as text."""
from __future__ import annotations

from core.trainer.budget import minutes_words
from core.trainer.handover import HANDOVER, HELD_OUT
from demo.run_view import RunView

TITLE = "vit2040 · a Vision Transformer trained from scratch on 2,040 images"
INTRO = (
    "Pretrain a ViT by **instance discrimination** (every training image is its own class: the paper "
    "*Training Vision Transformers with Only 2040 Images*), watch the loss, the kNN accuracy and the "
    "embedding clusters form, then drop a photo to classify it."
)
FOLDER_CHOICE = "folder"
FOLDER_HINT = "Folder with one subfolder per class (used when the dataset is 'folder')"
LABEL_UPLOAD_DATA = "…or upload a zip of your images, one subfolder per class"
UNPACKED = "Unpacked {holds}: press Start to train on them."

TRAIN = "Train"
WATCH = "Watch"
CLUSTERS = "Embedding clusters"
CLASSIFY = "Classify"
KEEP = "Keep"

LABEL_DATASET = "Dataset"
LABEL_OBJECTIVE = "Objective"
LABEL_PRESET = "Preset"
LABEL_EPOCHS = "Epochs"
LABEL_MINUTES = "Minutes (0: the epochs decide)"
LABEL_PIPELINE = ("Best model in the minutes: pretrain only when it is expected to pay, then fine-tune "
                  "(or train from scratch)")
PIPELINE_NEEDS_MINUTES = "The best-model pipeline shares a budget between its stages: give it Minutes."
LABEL_BATCH = "Batch size"
LABEL_LR = "Learning rate"
BUTTON_START = "Start"
BUTTON_STOP = "Stop"
BUTTON_RESUME = "Resume"
BUTTON_FINETUNE = "Fine-tune"
LABEL_FINETUNE_EPOCHS = "Fine-tune epochs (stage 2; 0 = a quarter of the pretraining's)"
LABEL_FINETUNE_LABELS = "Labels per class for fine-tuning (0 = all; fewer shows what pretraining buys)"
LABEL_METHOD = "Classify by"
LABEL_CONFUSION = "Where the class head errs (confusion on the test split)"
LABEL_SPRITES = "Draw the images themselves"
LABEL_REPLAY = "Snapshot (replay)"
LABEL_INDEX = "Training image # (or click a point)"
LABEL_THUMB = "Training image"
LABEL_UPLOAD = "Photo (drop, paste or pick)"
LABEL_SKETCH = "…or draw one (light strokes on dark, as the training images are)"
BUTTON_CLASSIFY = "Classify"
LABEL_SEEN = "What the model sees"
LABEL_TOP = "Top classes"
LABEL_NEIGHBOURS = "8 nearest training images"
LABEL_ATTENTION = "CLS attention"
LABEL_MANY = "…or several photos at once"
LABEL_MANY_RESULTS = "Top class of each photo"
MANY_CAPTION = "{name}: {label} ({probability:.0%})"
MANY_REFUSED = "{name}: refused ({reason})"
RUNS = "Runs (every run in the runs folder: select some to overlay their curves, export, compare)"
LABEL_SELECTED = "Selected runs (overlaid on the curves)"
BUTTON_REFRESH = "Refresh"
BUTTON_OPEN = "Open (classify with it)"
BUTTON_EXPORT_METRICS = "Export metrics (CSV)"
BUTTON_DELETE = "Delete…"
CONFIRM_DELETE = "Yes, delete {runs} and their files"
LABEL_RENAME = "New name for the selected run"
BUTTON_RENAME = "Rename"
BUTTON_DIFF = "Compare settings of two"
LABEL_EXPORTED = "Exported metrics"
LABEL_DIFF = "Settings that differ"
SELECT_ONE = "Select exactly one run to {action}."
SELECT_TWO = "Select exactly two runs to compare their settings."
SELECT_SOME = "Select the runs to {action} first."
LABEL_SMOOTHING = "Loss smoothing"
LABEL_NEIGHBOURS_OF = "Its 8 nearest training images in embedding space"
BUTTON_EXPORT_LAYOUT = "Export this layout (CSV)"
LABEL_LAYOUT_FILE = "Layout (x, y, label, index, file)"
NO_LAYOUT = "No embedding layout yet: it appears after the first snapshot."
# The similarity first: a narrow tile cuts the end of a caption, and a long class name hid it there.
NEIGHBOUR_CAPTION = "{similarity:.2f} · {name} · #{index}"
UNLIKE = ("⚠ **Unlike the training images**: its nearest training image (similarity {nearest:.2f}) is less "
          "similar than {share:.1%} of the training images are to their own nearest; answers for such images "
          "mean little (flagged below the {percentile:g}st percentile).")
LIKE = "Like the training images: its nearest training image is as close as for {share:.0%} of them."
KNN_VOTES = "{counts} of the {k} nearest training images"
BUTTON_SAVE = "Download the model"
LABEL_DOWNLOAD = "Model file (classifies anywhere: python -m core.classify MODEL PHOTOS...)"
LABEL_LOAD = "Load a model file or a checkpoint (.pt)"
LOAD_REFUSED = "refused, the model before it still answers: {message}"
ANSWERED_BY = "Answered by {run} ({model})"
LABEL_EXAMPLES = "Examples from the training images of the model that answers: click one"

ADVICE = "⚠ epoch {epoch}: {message} (the **Fine-tune** button does it on this run)."
HANDED_OVER = "⚠ epoch {epoch}: handed over: {message}."  # a pipeline's hand-over: its next stage starts by itself
FITTING = "timing its steps to fit {minutes}"  # until then the length is provisional
PLANNING = "fitting the recipe to the data and this machine, loading the data"
WHY = "why, the plan, the speed"
IDLE_STATUS = "Nothing running. Choose a dataset and press **Start**."
PRESET_SWITCHED = "Preset now {preset}, the one for {dataset} (choose another in Preset)."
NO_MODEL = ("No model yet: start training (the first snapshot arrives after an epoch), open a finished run in "
            "Runs, or load a model file.")
NOT_ANSWERED = "**Not answered:** {reason}"
NOTHING_TO_CLASSIFY = "Drop a photo or draw something first."
THUMB_OUT_OF_RANGE = "No training image #{index}: the set has {n}."


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _figure(view: RunView) -> str:
    """The one figure that matters now: the class head's test accuracy once there is one, else the kNN's
    (balanced accuracy when the classes are unequal)."""
    for name, values, balanced in (("test", view.top1, view.top1_balanced), ("kNN", view.knn, view.knn_balanced)):
        if len(values):
            if view.imbalanced and balanced is not None and len(balanced) and balanced[-1] == balanced[-1]:
                return f"{name} {balanced[-1]:.1%} balanced"
            return f"{name} {values[-1]:.1%}"
    return ""


def status_line(view: RunView | None) -> str:
    """A short line (status, the run and its stage, epoch of epochs, time left, the figure that matters), then
    the reasons one click away: the plan and why, the run's latest message, the watchdog's or hand-over's words,
    the speed and the device."""
    if view is None:
        return IDLE_STATUS
    if view.status == "idle":  # started: the training thread plans and loads before the first step
        return f"**planning** · {view.label} · {PLANNING}"
    epochs = view.total_steps // view.steps_per_epoch if view.steps_per_epoch else 0
    epoch = view.step // view.steps_per_epoch if view.steps_per_epoch else 0
    parts = [f"**{view.status}** · {view.label}"]
    if view.fitting_minutes:  # the length is provisional until the run has timed its steps
        parts += [f"epoch {epoch}", FITTING.format(minutes=minutes_words(view.fitting_minutes))]
    else:
        parts += [f"epoch {epoch}/{epochs} · step {view.step}/{view.total_steps}"]
        if view.status == "running" and view.eta_s is not None:
            parts.append(f"{duration(view.eta_s)} left")
    if figure := _figure(view):
        parts.append(figure)
    warning = ""
    if view.advice is not None:
        epoch_said, message = view.advice
        said = message.removeprefix(HELD_OUT).split(": ")[0]
        warning = "  \n" + (HANDED_OVER if HANDOVER in message else ADVICE).format(epoch=epoch_said, message=said)
    return " · ".join(parts) + warning + "\n\n" + _reasons(view)


def _reasons(view: RunView) -> str:
    """What the short line leaves out, behind a click (HTML details: the text is on the page, folded)."""
    speed = [f"{view.images_per_s:,.0f} img/s", f"elapsed {duration(view.elapsed_s)}"] if view.status == "running" \
        else [f"ran {duration(view.elapsed_s)}"]
    lines = [*view.plan, *([view.message] if view.message else []),
             *([view.advice[1]] if view.advice is not None else []), " · ".join([*speed, view.device or "–"])]
    return f"<details><summary>{WHY}</summary>\n\n" + "  \n".join(lines) + "\n\n</details>"


def progress_html(view: RunView | None) -> str:
    fraction = view.step / view.total_steps if view is not None and view.total_steps else 0.0
    return (f'<div class="v2040-progress" role="progressbar" aria-valuenow="{fraction * 100:.0f}" '
            f'aria-valuemin="0" aria-valuemax="100"><div style="width:{fraction * 100:.1f}%"></div></div>')


# gr.Plot has no click event: this page script forwards a click on a UMAP point (its customdata is
# the training index) to the index box, whose change event shows the thumbnail. It re-attaches
# whenever the plot element is replaced by a redraw.
CLICK_TO_THUMBNAIL_JS = """
() => {
  setInterval(() => {
    const plot = document.querySelector('#umap-plot .js-plotly-plot');
    if (!plot || plot.dataset.v2040Click || !plot.on) return;
    plot.dataset.v2040Click = '1';
    plot.on('plotly_click', (event) => {
      const point = event.points && event.points[0];
      const input = document.querySelector('#thumb-index input');
      if (!point || point.customdata === undefined || !input) return;
      // as if typed: the number box reacts to input, then Enter submits it
      input.focus();
      input.value = point.customdata;
      input.dispatchEvent(new Event('input', {bubbles: true}));
      input.dispatchEvent(new KeyboardEvent('keypress', {key: 'Enter', bubbles: true}));
      input.dispatchEvent(new KeyboardEvent('keydown', {key: 'Enter', bubbles: true}));
    });
  }, 500);
}
"""

# Shows the sketchpad only where a drawing fits the model that answers (demo/classify_panel.py: drawable).
SKETCH_VISIBILITY_JS = """(fits) => {
  const box = document.querySelector('#sketch-box');
  if (box) box.style.display = fits ? '' : 'none';
}"""

# The Sketchpad's value -> its composite image (or null), run in the browser by the Classify button.
SKETCH_COMPOSITE_JS = "(value) => (value && value.composite) || null"

# Gradio 6.31's Sketchpad starts with no tool selected and its Clear switches back to none, so strokes
# did nothing until the brush was picked again, for every digit: pick it at load and after each Clear.
KEEP_BRUSH_JS = """
() => {
  const pick = () => document.querySelector("button[aria-label='Brush']:not(.highlight)")?.click();
  document.addEventListener('click', (event) => {
    if (event.target.closest("button[aria-label='Clear canvas']")) setTimeout(pick, 100);
  }, true);
  const ready = setInterval(() => {
    if (document.querySelector("button[aria-label='Brush']")) { clearInterval(ready); pick(); }
  }, 200);
}
"""

# Everything the page runs at load.
PAGE_JS = f"() => {{ ({CLICK_TO_THUMBNAIL_JS.strip()})(); ({KEEP_BRUSH_JS.strip()})(); }}"

CSS = """
.v2040-progress { height: 10px; background: #e5e7eb; border-radius: 5px; overflow: hidden; }
.v2040-progress > div { height: 100%; background: #4f46e5; transition: width 0.5s; }
"""
