"""Pure plot builders for the app: run snapshots (`RunView`) in, a plotly Figure out (the UMAP view is
demo/embedding_plot.py). No gradio and no shared state, so they are tested headless and are safe from
any thread.

Runs are passed oldest first; the LAST one is the current run (its baselines are drawn, its lines
are bold), and a run's colour is its position, so colours stay put as runs are added."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core.metrics import balanced_accuracy
from core.trainer.handover import HANDOVER
from demo.run_view import RunView

AXIS_EPOCH = "epoch"
AXIS_LOSS = "loss"
AXIS_LR = "learning rate"
AXIS_KNN = "top-1 on test"
HEAD_SUFFIX = " · class head"
NOT_HELPING = "not helping any more"
HANDED_OVER_MARK = "handed over"  # where a pipeline's pretraining ended by itself (core/handover.py)
HELD_OUT_SUFFIX = " · held-out training images (hand-over)"
HOVER_HELD_OUT = ("%{fullData.name}<br>epoch %{x}<br>leave-one-out kNN on labelled training images %{y:.1%}"
                  "<extra></extra>")
BALANCED_SUFFIX = " · balanced"
CONFUSION_TITLE = "Class-head confusion on the test split · epoch {epoch} · top-1 {top1:.1%}"
CONFUSION_BALANCED = " · balanced {balanced:.1%}"
AXIS_TRUE, AXIS_PREDICTED = "true class", "predicted class"
EMPTY_CONFUSION = "No class head yet — fine-tune a pretrained run (or train with the supervised objective)"
HOVER_TOP1 = "%{fullData.name}<br>epoch %{x}<br>test top-1 %{y:.1%}<extra></extra>"
HOVER_BALANCED = "%{fullData.name}<br>epoch %{x}<br>balanced accuracy %{y:.1%}<extra></extra>"
HOVER_CELL = "true %{y}<br>predicted %{x}<br>%{customdata} images (%{z:.1%} of the class)<extra></extra>"
RAW_SUFFIX = " (per step)"
BASELINE_RAW = "raw pixels baseline ({value:.1%})"
BASELINE_RANDOM = "random-init baseline ({value:.1%})"
UNKNOWN_CLASS = "class {index}"
EMPTY_TRAINING = "No training steps yet — start training"
EMPTY_KNN = "No kNN evaluation yet"
HOVER_LOSS = "%{fullData.name}<br>epoch %{x:.2f}<br>loss %{y:.4f}<extra></extra>"
HOVER_LR = "%{fullData.name}<br>epoch %{x:.2f}<br>lr %{y:.2e}<extra></extra>"
HOVER_KNN = "%{fullData.name}<br>epoch %{x}<br>kNN top-1 %{y:.1%}<extra></extra>"

TEMPLATE = "plotly_white"
MARGIN = dict(l=50, r=10, t=30, b=40)
RUN_COLOURS = qualitative.Plotly
BASELINE_STYLES = (dict(color="#444444", dash="dash"), dict(color="#999999", dash="dot"))
# Debiased EMA weight for the loss: per-step loss under CutMix and multi-crop is noisy.
LOSS_SMOOTHING = 0.9
# Lines are thinned to this many points: the figure goes to the browser every refresh.
MAX_LINE_POINTS = 1500


def empty_figure(message: str) -> go.Figure:
    """A blank figure with `message` centred: the placeholder before there is anything to plot."""
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=15, color="#777777"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(template=TEMPLATE, margin=MARGIN)
    return fig


def ema(values: np.ndarray, weight: float = LOSS_SMOOTHING) -> np.ndarray:
    """Exponential moving average, debiased like TensorBoard's smoothing so the first points are
    not dragged towards zero: s_t = w s_{t-1} + (1 - w) x_t, reported as s_t / (1 - w^(t+1))."""
    out = np.empty(len(values), dtype=np.float64)
    accumulated, correction = 0.0, 1.0
    for i, value in enumerate(np.asarray(values, dtype=np.float64)):
        accumulated = weight * accumulated + (1 - weight) * value
        correction *= weight
        out[i] = accumulated / (1 - correction)
    return out


def _thin(n: int, max_points: int = MAX_LINE_POINTS) -> np.ndarray:
    """Evenly strided indices into n points, always keeping the last (the newest value)."""
    stride = max(1, -(-n // max_points))
    index = np.arange(0, n, stride)
    return index if n == 0 or index[-1] == n - 1 else np.append(index, n - 1)


def _run_colour(position: int) -> str:
    return RUN_COLOURS[position % len(RUN_COLOURS)]


def _add_run_lines(fig: go.Figure, run: RunView, colour: str, current: bool, smoothing: float) -> None:
    x = run.steps / max(run.steps_per_epoch, 1)  # epochs, so runs with other batch sizes line up
    keep = _thin(len(x))
    smooth = ema(run.losses, smoothing)
    group = dict(legendgroup=run.run_id, line_color=colour)
    fig.add_trace(go.Scatter(x=x[keep], y=run.losses[keep], mode="lines", name=run.label + RAW_SUFFIX,
                             line_width=1, opacity=0.3, showlegend=False, hoverinfo="skip", **group),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=x[keep], y=smooth[keep], mode="lines", name=run.label,
                             line_width=2.5 if current else 1.5, hovertemplate=HOVER_LOSS, **group),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=x[keep], y=run.lrs[keep], mode="lines", name=run.label, showlegend=False,
                             line_width=1.5, hovertemplate=HOVER_LR, **group),
                  row=2, col=1)


def training_figure(runs: Sequence[RunView], smoothing: float = LOSS_SMOOTHING) -> go.Figure:
    """Loss (raw per step, thin; EMA with weight `smoothing` in [0, 1), bold) over lr, both against
    epochs, one colour per run."""
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing}")
    if not any(len(run.steps) for run in runs):
        return empty_figure(EMPTY_TRAINING)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    for position, run in enumerate(runs):
        if len(run.steps):
            _add_run_lines(fig, run, _run_colour(position), position == len(runs) - 1, smoothing)
    fig.update_yaxes(title_text=AXIS_LOSS, row=1, col=1)
    fig.update_yaxes(title_text=AXIS_LR, exponentformat="e", row=2, col=1)
    fig.update_xaxes(title_text=AXIS_EPOCH, row=2, col=1)
    fig.update_layout(template=TEMPLATE, margin=MARGIN, uirevision="training", hovermode="closest",
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0))
    return fig


def _baseline_traces(run: RunView, x_end: float) -> list[go.Scatter]:
    if run.baselines is None:
        return []
    names = (BASELINE_RAW, BASELINE_RANDOM)
    return [go.Scatter(x=[0, x_end], y=[value, value], mode="lines", name=name.format(value=value),
                       line=dict(width=1.5, **style), hovertemplate=HOVER_KNN)
            for value, name, style in zip(run.baselines, names, BASELINE_STYLES)]


def knn_figure(runs: Sequence[RunView]) -> go.Figure:
    """Test accuracy per evaluated epoch, one colour per run, over the current run's two baselines:
    kNN top-1 solid, the class head's top-1 (fine-tuning, supervised) dashed; a vertical line marks
    where a later stage (fine-tuning) begins."""
    evaluated = [(position, run) for position, run in enumerate(runs) if len(run.knn) or len(run.top1)]
    current = runs[-1] if runs else None
    if not evaluated and (current is None or current.baselines is None):
        return empty_figure(EMPTY_KNN)
    # a budget still being fitted has a provisional length: the axis waits for the fixed one
    planned = current.total_steps / max(current.steps_per_epoch, 1) if current and not current.fitting_minutes else 0
    x_end = max([planned, 1.0] + [float(run.epochs.max()) for _, run in evaluated])
    fig = go.Figure(_baseline_traces(current, x_end) if current else [])
    for position, run in evaluated:
        line = dict(color=_run_colour(position), width=2.5 if run is current else 1.5)
        fig.add_trace(go.Scatter(x=run.knn_epochs, y=run.knn, mode="lines+markers", name=run.label, line=line,
                                 legendgroup=run.run_id, hovertemplate=HOVER_KNN))
        if len(run.top1):
            fig.add_trace(go.Scatter(x=run.top1_epochs, y=run.top1, mode="lines+markers", name=run.label + HEAD_SUFFIX,
                                     line=dict(line, dash="dash"), legendgroup=run.run_id, hovertemplate=HOVER_TOP1))
        if run.held_out is not None and len(run.held_out):  # what decided a pipeline's hand-over, thin
            fig.add_trace(go.Scatter(x=run.held_out_epochs, y=run.held_out, mode="lines+markers",
                                     name=run.label + HELD_OUT_SUFFIX, line=dict(line, width=1, dash="dashdot"),
                                     marker=dict(size=4), legendgroup=run.run_id, hovertemplate=HOVER_HELD_OUT))
        if run.imbalanced:  # unequal classes: the balanced accuracy too, dotted, on the same colour
            for epochs, values, suffix in ((run.knn_epochs, run.knn_balanced, BALANCED_SUFFIX),
                                           (run.top1_epochs, run.top1_balanced, HEAD_SUFFIX + BALANCED_SUFFIX)):
                if values is not None and len(values):
                    fig.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers", name=run.label + suffix,
                                             line=dict(line, dash="dot"), marker=dict(symbol="diamond"),
                                             legendgroup=run.run_id, hovertemplate=HOVER_BALANCED))
    for label, epoch in current.stages if current else ():
        fig.add_vline(x=epoch, line=dict(color="#777777", width=1, dash="dot"), annotation_text=label,
                      annotation_position="top left")
    if current is not None and current.advice is not None:  # the watchdog's words where it spoke
        mark = HANDED_OVER_MARK if HANDOVER in current.advice[1] else NOT_HELPING
        fig.add_vline(x=current.advice[0], line=dict(color="#b45309", width=1.5, dash="dash"),
                      annotation_text=mark, annotation_position="bottom right",
                      annotation_font_color="#b45309")
    fig.update_xaxes(title_text=AXIS_EPOCH, range=[0, x_end])
    fig.update_yaxes(title_text=AXIS_KNN, tickformat=".0%")
    fig.update_layout(template=TEMPLATE, margin=MARGIN, uirevision="knn", hovermode="closest",
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=0))
    return fig


def attention_overlay(model_input: np.ndarray, attention: np.ndarray, scale: int = 8,
                      alpha: float = 0.55) -> np.ndarray:
    """The model's input (H×W gray or H×W×3) with the attention map (H×W in [0, 1]) laid over it
    in red; upscaled `scale`× (nearest) so 28 px inputs stay legible. uint8 H·s×W·s×3 out."""
    base = model_input if model_input.ndim == 3 else np.repeat(model_input[..., None], 3, axis=2)
    base = base.astype(np.float32)
    heat = np.zeros_like(base)
    heat[..., 0] = 255.0 * np.clip(attention, 0.0, 1.0)
    weight = alpha * np.clip(attention, 0.0, 1.0)[..., None]
    blended = (1 - weight) * base + weight * heat
    return blended.round().astype(np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)


def confusion_figure(run: RunView | None) -> go.Figure:
    """The latest class-head confusion of a run: colour = share of the true class, text = counts."""
    if run is None or run.confusion is None:
        return empty_figure(EMPTY_CONFUSION)
    counts = run.confusion
    n = len(counts)
    names = list(run.class_names) if len(run.class_names) == n else [UNKNOWN_CLASS.format(index=i) for i in range(n)]
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # rows: true class
    fig = go.Figure(go.Heatmap(z=share, x=names, y=names, customdata=counts, colorscale="Blues", zmin=0, zmax=1,
                               text=counts if n <= 20 else None, texttemplate="%{text}" if n <= 20 else None,
                               hovertemplate=HOVER_CELL, colorbar=dict(tickformat=".0%")))
    top1 = np.trace(counts) / max(counts.sum(), 1)
    title = CONFUSION_TITLE.format(epoch=run.confusion_epoch, top1=top1)
    if run.imbalanced:
        title += CONFUSION_BALANCED.format(balanced=balanced_accuracy(torch.tensor(counts)))
    fig.update_xaxes(title_text=AXIS_PREDICTED, side="bottom", tickangle=-45)
    fig.update_yaxes(title_text=AXIS_TRUE, autorange="reversed")
    fig.update_layout(template=TEMPLATE, margin=dict(MARGIN, t=40), uirevision="confusion",
                      title=dict(text=title, font_size=13))
    return fig
