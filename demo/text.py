"""Every string the app shows, defined once, and the pure functions that format run state as text."""
from __future__ import annotations

from core.trainer.handover import HANDOVER
from demo.run_view import RunView

TITLE = "vit2040 · a Vision Transformer trained from scratch on 2,040 images"
INTRO = (
    "Pretrain a ViT by **instance discrimination** (every training image is its own class: the paper "
    "*Training Vision Transformers with Only 2040 Images*), watch the loss, the kNN accuracy and the "
    "embedding clusters form, then drop a photo to classify it."
)
FOLDER_CHOICE = "folder"
FOLDER_HINT = "Folder with one subfolder per class (used when the dataset is 'folder')"

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
LABEL_SKETCH = "…or draw (digits)"
BUTTON_CLASSIFY = "Classify"
LABEL_SEEN = "What the model sees"
LABEL_TOP5 = "Top-5"
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
LABEL_LAYOUT_FILE = "Layout (x, y, label, index)"
NO_LAYOUT = "No embedding layout yet: it appears after the first snapshot."
# The similarity first: a narrow tile cuts the end of a caption, and a long class name hid it there.
NEIGHBOUR_CAPTION = "{similarity:.2f} · {name} · #{index}"
UNLIKE = ("⚠ **Unlike the training images**: its nearest training image (similarity {nearest:.2f}) is less "
          "similar than {share:.1%} of the training images are to their own nearest; answers for such images "
          "mean little (flagged below the {percentile:g}st percentile).")
LIKE = "Like the training images: its nearest training image is as close as for {share:.0%} of them."
KNN_VOTES = "{counts} of the {k} nearest training images"
BUTTON_SAVE = "Save checkpoint"
LABEL_DOWNLOAD = "Download"
LABEL_LOAD = "Load a checkpoint (.pt)"
LABEL_EXAMPLES = "Examples: click one"

ADVICE = "⚠ epoch {epoch}: {message} (the **Fine-tune** button does it on this run)."
HANDED_OVER = "⚠ epoch {epoch}: {message}."  # a pipeline's hand-over: its next stage starts by itself
FITTING = "timing its steps to fit the {minutes:g} min budget"  # until then the length is provisional
IDLE_STATUS = "Nothing running. Choose a dataset and press **Start**."
NO_MODEL = "No model yet: start training (the first snapshot arrives after an epoch) or load a checkpoint."
NOTHING_TO_CLASSIFY = "Drop a photo or draw something first."
THUMB_OUT_OF_RANGE = "No training image #{index}: the set has {n}."


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def status_line(view: RunView | None) -> str:
    """One line: stage, epoch, step, images/s, elapsed, ETA, device, then the run's latest message."""
    if view is None:
        return IDLE_STATUS
    epochs = view.total_steps // view.steps_per_epoch if view.steps_per_epoch else 0
    epoch = view.step // view.steps_per_epoch if view.steps_per_epoch else 0
    parts = [f"**{view.status}** · {view.label}"]
    if view.fitting_minutes:  # the length is provisional until the run has timed its steps
        parts += [f"epoch {epoch}", f"step {view.step}"]
    else:
        parts += [f"epoch {epoch}/{epochs}", f"step {view.step}/{view.total_steps}"]
    if view.status == "running":
        parts += [f"{view.images_per_s:,.0f} img/s", f"elapsed {duration(view.elapsed_s)}"]
        parts.append(FITTING.format(minutes=view.fitting_minutes) if view.fitting_minutes
                     else f"ETA {duration(view.eta_s)}")
    if view.device:
        parts.append(view.device)
    line = " · ".join(parts)
    lines = [line, *view.plan] + ([view.message] if view.message else [])
    if view.advice is not None:
        epoch, message = view.advice
        lines.append((HANDED_OVER if HANDOVER in message else ADVICE).format(epoch=epoch, message=message))
    return "  \n".join(lines)


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
