"""The UMAP view, a pure plot builder: a `Layout` (and the training images as sprites) in, a plotly Figure
out, one trace per class. No gradio and no shared state, like demo/plots.py, whose frame it shares."""
from __future__ import annotations

import base64
import colorsys
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import qualitative

from demo.plots import MARGIN, TEMPLATE, UNKNOWN_CLASS, empty_figure
from demo.run_view import Layout

UMAP_TITLE = "Training-set embeddings (UMAP) · epoch {epoch}"
EMPTY_UMAP = "No embedding yet — start training"
HOVER_POINT = "%{fullData.name}<br>image #%{customdata}<extra></extra>"
CLASS_COLOURS = qualitative.T10  # enough for 10-class sets; larger sets get spread hues
SPRITE_FRACTION = 1 / 25  # a sprite's side as a fraction of the axis span
SPRITE_MAX_SIDE = 48  # pixels; larger images (flowers at 144 px) are shrunk to keep the figure light
PAD = 0.05  # fraction of the layout's span left around the points


def class_colours(n: int) -> list[str]:
    """A qualitative palette for n classes: Tableau-10 when it suffices, else hues spread by the
    golden angle (neighbouring class indices get far-apart hues) with alternating lightness."""
    if n <= len(CLASS_COLOURS):
        return list(CLASS_COLOURS[:n])
    colours = []
    for i in range(n):
        red, green, blue = colorsys.hls_to_rgb((i * 0.618034) % 1.0, 0.42 if i % 2 else 0.58, 0.65)
        colours.append(f"rgb({round(red * 255)},{round(green * 255)},{round(blue * 255)})")
    return colours


def thumbnail_png(image: np.ndarray, scale: int = 4, max_side: int | None = None) -> bytes:
    """PNG bytes of a uint8 (H, W), (H, W, 1) or (H, W, 3) image, upscaled by `scale` with nearest
    neighbour (pixels stay crisp), then shrunk to fit `max_side` pixels if given."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"thumbnail needs a uint8 image, got {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] != 3):
        raise ValueError(f"thumbnail needs an (H, W) or (H, W, 3) image, got shape {array.shape}")
    height, width = array.shape[:2]
    factor = scale if max_side is None else min(scale, max_side / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    resample = Image.NEAREST if factor >= 1 else Image.BOX  # BOX averages when shrinking
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).resize(size, resample).save(buffer, format="PNG")
    return buffer.getvalue()


def sprite_indices(labels: np.ndarray, max_sprites: int) -> np.ndarray:
    """A deterministic subset of at most `max_sprites` points, shared as evenly as possible across
    classes (small classes give their spare share to the others) and evenly spaced within each."""
    labels = np.asarray(labels)
    if len(labels) <= max_sprites:
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    level = 0  # the largest per-class quota that fits
    while np.minimum(counts, level + 1).sum() <= max_sprites:
        level += 1
    quota = np.minimum(counts, level)
    quota[np.flatnonzero(counts > level)[:max_sprites - quota.sum()]] += 1
    picked = [np.flatnonzero(labels == cls)[np.linspace(0, count - 1, take).round().astype(int)]
              for cls, count, take in zip(classes, counts, quota) if take]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def _sprites(xy: np.ndarray, thumbnails: np.ndarray, index: np.ndarray, side: float) -> list[dict]:
    """layout.images entries: each thumbnail drawn at its point, `side` data units across."""
    images = []
    for i in index:
        png = thumbnail_png(thumbnails[i], scale=1, max_side=SPRITE_MAX_SIDE)
        images.append(dict(source="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
                           xref="x", yref="y", x=float(xy[i, 0]), y=float(xy[i, 1]), sizex=side, sizey=side,
                           xanchor="center", yanchor="middle", sizing="contain", layer="above"))
    return images


def _square_ranges(xy: np.ndarray) -> tuple[list[float], list[float]]:
    """Equal, padded ranges on both axes around the points (UMAP distances mean the same both ways)."""
    low, high = xy.min(axis=0), xy.max(axis=0)
    centre, half = (low + high) / 2, max(float((high - low).max()), 1e-6) * (0.5 + PAD)
    return [centre[0] - half, centre[0] + half], [centre[1] - half, centre[1] + half]


def umap_figure(layout: Layout | None, class_names: Sequence[str], thumbnails: np.ndarray | None = None,
                sprites: bool = False, max_sprites: int = 300) -> go.Figure:
    """Scatter of a UMAP layout, one trace (and legend entry) per class, hover giving class and
    image index (customdata); with `sprites`, up to `max_sprites` thumbnails drawn at their points."""
    if layout is None or len(layout.xy) == 0:
        return empty_figure(EMPTY_UMAP)
    xy, labels = np.asarray(layout.xy, dtype=np.float64), np.asarray(layout.labels)
    n_classes = max(len(class_names), int(labels.max()) + 1)
    names = [class_names[c] if c < len(class_names) else UNKNOWN_CLASS.format(index=c)
             for c in range(n_classes)]
    fig = go.Figure()
    for cls, (name, colour) in enumerate(zip(names, class_colours(n_classes))):
        members = np.flatnonzero(labels == cls)
        fig.add_trace(go.Scatter(x=xy[members, 0], y=xy[members, 1], mode="markers", name=name,
                                 marker=dict(color=colour, size=5, opacity=0.8), customdata=members,
                                 hovertemplate=HOVER_POINT))
    x_range, y_range = _square_ranges(xy)
    if sprites and thumbnails is not None:
        if len(thumbnails) != len(xy):
            raise ValueError(f"{len(thumbnails)} thumbnails for {len(xy)} points")
        side = (x_range[1] - x_range[0]) * SPRITE_FRACTION
        fig.update_layout(images=_sprites(xy, thumbnails, sprite_indices(labels, max_sprites), side))
    axis = dict(showticklabels=False, showgrid=False, zeroline=False, title_text=None)
    fig.update_xaxes(range=x_range, **axis)
    fig.update_yaxes(range=y_range, scaleanchor="x", scaleratio=1, **axis)
    fig.update_layout(template=TEMPLATE, margin=MARGIN, uirevision="umap", hovermode="closest",
                      title=dict(text=UMAP_TITLE.format(epoch=layout.epoch), x=0.01, font_size=14),
                      legend=dict(itemsizing="constant"))
    return fig
