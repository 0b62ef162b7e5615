"""`python -m scripts.make_readme_figures`: the README's picture of clusters forming, from a real default run.

Trains the app's default (cpu-quick on Fashion-MNIST, 60 epochs, about 3 minutes on 2 cores) with an embedding
snapshot every few epochs, projects each snapshot as the app does (core/serve/projection.py: the same UMAP,
warm-started and aligned from one picture to the next), and draws them: docs/clusters.gif (the clusters
forming) and docs/clusters.png (the last epoch). Prints the run's final kNN.
"""
from __future__ import annotations

import argparse
import io
import sys
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from core import events as ev
from core.data.sources import load_dataset
from core.plan.presets import preset
from core.serve.projection import Projector
from core.trainer.loop import Trainer

DOCS = Path(__file__).resolve().parent.parent / "docs"


def frames(every: int) -> tuple[list[tuple[int, np.ndarray]], np.ndarray, tuple[str, ...], float]:
    """(epoch, UMAP layout (N, 2)) of every snapshot, the labels, the class names and the final kNN."""
    config = preset("cpu-quick").with_overrides(snapshot_every=every)
    data = load_dataset(config.dataset)
    projector, layouts, knn = Projector(), [], []

    def listen(event: ev.Event) -> None:
        if isinstance(event, ev.EmbeddingSnapshot):
            layouts.append((event.epoch, projector.project(event.embeddings)))
        elif isinstance(event, ev.Finished):
            knn.append(event.knn_top1)

    Trainer(config, data).run(listen, threading.Event())
    return layouts, data.train.labels.numpy(), data.class_names, knn[-1]


def draw(epoch: int, xy: np.ndarray, labels: np.ndarray, names: tuple[str, ...], limits: float) -> Image.Image:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axis = plt.subplots(figsize=(6.4, 4.8), dpi=80, constrained_layout=True)
    for label, name in enumerate(names):
        chosen = labels == label
        axis.scatter(xy[chosen, 0], xy[chosen, 1], s=5, color=f"C{label}", label=name)
    axis.set(xlim=(-limits, limits), ylim=(-limits, limits), xticks=[], yticks=[],
             title=f"Fashion-MNIST training images, UMAP of the ViT's embeddings: epoch {epoch}")
    axis.title.set_fontsize(10)
    axis.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return Image.open(buffer).convert("RGB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.make_readme_figures", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--every", type=int, default=4, help="epochs between snapshots")
    args = parser.parse_args(argv)
    layouts, labels, names, knn = frames(args.every)
    limits = float(max(np.abs(xy).max() for _, xy in layouts)) * 1.05
    pictures = [draw(epoch, xy, labels, names, limits) for epoch, xy in layouts]
    pictures[-1].save(DOCS / "clusters.png")
    pictures[0].save(DOCS / "clusters.gif", save_all=True, append_images=pictures[1:], duration=500, loop=0,
                     optimize=True)
    print(f"wrote {DOCS / 'clusters.gif'} ({len(pictures)} frames) and {DOCS / 'clusters.png'}; "
          f"final kNN top-1 {knn:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
