import base64
import io

import numpy as np
import pytest
from PIL import Image

from demo import embedding_plot
from demo.run_view import Layout


def annotation_texts(fig):
    return [annotation.text for annotation in fig.layout.annotations]


def layout_of(labels, epoch=3, seed=0):
    labels = np.asarray(labels, dtype=np.int64)
    xy = np.random.default_rng(seed).normal(size=(len(labels), 2)).astype(np.float32)
    return Layout(epoch, xy, labels)


def test_umap_figure_has_one_trace_per_class_with_hover_indices():
    labels = [0, 1, 0, 0, 1, 0, 0]
    layout = layout_of(labels)
    fig = embedding_plot.umap_figure(layout, ["shirt", "shoe", "bag"])
    assert [trace.name for trace in fig.data] == ["shirt", "shoe", "bag"]
    assert [len(trace.x) for trace in fig.data] == [5, 2, 0]
    shirt = fig.data[0]
    assert list(shirt.customdata) == [0, 2, 3, 5, 6]
    assert np.allclose(shirt.x, layout.xy[shirt.customdata, 0])
    assert np.allclose(shirt.y, layout.xy[shirt.customdata, 1])
    assert "%{customdata}" in shirt.hovertemplate and "%{fullData.name}" in shirt.hovertemplate
    assert len({trace.marker.color for trace in fig.data}) == 3
    assert fig.layout.xaxis.showticklabels is False and fig.layout.yaxis.showticklabels is False
    assert fig.layout.uirevision and not fig.layout.images
    assert "3" in fig.layout.title.text


def test_umap_figure_ranges_are_square_and_contain_the_points():
    layout = layout_of([0] * 20)
    fig = embedding_plot.umap_figure(layout, ["a"])
    x_range, y_range = fig.layout.xaxis.range, fig.layout.yaxis.range
    assert x_range[1] - x_range[0] == pytest.approx(y_range[1] - y_range[0])
    assert x_range[0] < layout.xy[:, 0].min() and layout.xy[:, 0].max() < x_range[1]
    assert y_range[0] < layout.xy[:, 1].min() and layout.xy[:, 1].max() < y_range[1]


def test_umap_figure_names_classes_beyond_the_given_names():
    fig = embedding_plot.umap_figure(layout_of([0, 2]), ["a"])
    assert [trace.name for trace in fig.data] == ["a", embedding_plot.UNKNOWN_CLASS.format(index=1),
                                                  embedding_plot.UNKNOWN_CLASS.format(index=2)]


def test_umap_placeholder_without_layout():
    for fig in (embedding_plot.umap_figure(None, ["a"]),
                embedding_plot.umap_figure(Layout(0, np.zeros((0, 2), np.float32), np.zeros(0, np.int64)), ["a"])):
        assert len(fig.data) == 0 and annotation_texts(fig) == [embedding_plot.EMPTY_UMAP]


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 3)])
def test_sprites_draw_at_most_max_sprites_images_at_their_points(shape):
    labels = np.repeat(np.arange(4), 25)
    layout = layout_of(labels)
    thumbnails = np.random.default_rng(1).integers(0, 256, size=(100, *shape), dtype=np.uint8)
    fig = embedding_plot.umap_figure(layout, list("abcd"), thumbnails, sprites=True, max_sprites=10)
    images = fig.layout.images
    assert len(images) == 10
    assert all(image.source.startswith("data:image/png;base64,") for image in images)
    chosen = embedding_plot.sprite_indices(labels, 10)
    assert [image.x for image in images] == pytest.approx(layout.xy[chosen, 0].tolist())
    assert [image.y for image in images] == pytest.approx(layout.xy[chosen, 1].tolist())
    span = fig.layout.xaxis.range[1] - fig.layout.xaxis.range[0]
    assert images[0].sizex == pytest.approx(span * embedding_plot.SPRITE_FRACTION)
    assert len(fig.data) == 4  # the markers stay, for hover


def test_sprites_only_when_asked_and_given():
    layout = layout_of([0, 1, 1])
    thumbnails = np.zeros((3, 4, 4), np.uint8)
    assert not embedding_plot.umap_figure(layout, ["a", "b"], thumbnails, sprites=False).layout.images
    assert not embedding_plot.umap_figure(layout, ["a", "b"], None, sprites=True).layout.images
    with pytest.raises(ValueError):
        embedding_plot.umap_figure(layout, ["a", "b"], thumbnails[:2], sprites=True)


def test_sprite_indices_share_evenly_across_classes():
    labels = np.repeat([0, 1, 2], [50, 30, 2])
    chosen = embedding_plot.sprite_indices(labels, 20)
    assert np.bincount(labels[chosen]).tolist() == [9, 9, 2]  # the small class's spare share goes to the others
    assert np.array_equal(chosen, np.unique(chosen))
    assert np.array_equal(chosen, embedding_plot.sprite_indices(labels, 20))
    spread = chosen[labels[chosen] == 0]
    assert spread[0] == 0 and spread[-1] == 49  # evenly spaced across the class, ends included
    assert len(embedding_plot.sprite_indices(labels, 0)) == 0
    assert embedding_plot.sprite_indices(labels, 500).tolist() == list(range(82))


# --- thumbnails and palette -----------------------------------------------------------------

def decode(png):
    return np.asarray(Image.open(io.BytesIO(png)))


def test_thumbnail_png_upscales_with_nearest_neighbour():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40
    decoded = decode(embedding_plot.thumbnail_png(image, scale=4))
    assert decoded.shape == (8, 12)
    assert np.array_equal(decoded, np.kron(image, np.ones((4, 4), np.uint8)))
    rgb = np.zeros((5, 5, 3), np.uint8)
    rgb[..., 0] = 200
    assert decode(embedding_plot.thumbnail_png(rgb, scale=2)).shape == (10, 10, 3)
    assert decode(embedding_plot.thumbnail_png(rgb[..., :1], scale=1)).shape == (5, 5)


def test_thumbnail_png_shrinks_to_max_side_and_rejects_bad_input():
    large = np.zeros((144, 144, 3), np.uint8)
    assert decode(embedding_plot.thumbnail_png(large, scale=1, max_side=48)).shape == (48, 48, 3)
    with pytest.raises(TypeError):
        embedding_plot.thumbnail_png(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError):
        embedding_plot.thumbnail_png(np.zeros((4, 4, 2), np.uint8))


def test_sprite_sources_decode_to_the_thumbnails():
    thumbnails = np.random.default_rng(2).integers(0, 256, size=(3, 6, 6), dtype=np.uint8)
    fig = embedding_plot.umap_figure(layout_of([0, 0, 1]), ["a", "b"], thumbnails, sprites=True)
    payload = fig.layout.images[1].source.split(",", 1)[1]
    assert np.array_equal(decode(base64.b64decode(payload)), thumbnails[1])


@pytest.mark.parametrize("n", [3, 10, 102])
def test_class_colours_are_distinct(n):
    colours = embedding_plot.class_colours(n)
    assert len(colours) == n == len(set(colours))
