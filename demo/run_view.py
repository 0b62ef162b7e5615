"""What the plot builders read: an immutable snapshot of one run's history (`RunView`, made by
demo/history.py) and one UMAP picture of its training embeddings (`Layout`). Plain data, no locks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)  # eq=False: comparing array fields with == is ambiguous
class Layout:
    """One UMAP picture of the training-set embeddings."""

    epoch: int
    xy: np.ndarray  # (N, 2) float32
    labels: np.ndarray  # (N,) int64
    names: tuple[str, ...] = ()  # each training image's file, where the source has files


@dataclass(frozen=True, eq=False)
class RunView:
    """Immutable snapshot of one run's history; what the plot builders read."""

    run_id: str
    label: str
    status: str  # idle | running | stopped | completed | failed
    device: str
    total_steps: int
    steps_per_epoch: int
    steps: np.ndarray  # (S,) int64, read-only
    losses: np.ndarray  # (S,) float64, read-only
    lrs: np.ndarray  # (S,) float64, read-only
    images_per_s: float  # smoothed, latest
    epochs: np.ndarray  # epochs completed (every EpochMetrics)
    knn_epochs: np.ndarray  # epochs that were evaluated
    knn: np.ndarray  # kNN top-1 (fraction) at those epochs
    top1_epochs: np.ndarray  # epochs with a class-head test accuracy (fine-tuning, supervised)
    top1: np.ndarray  # class-head test top-1 (fraction) at those epochs
    confusion: np.ndarray | None  # latest class-head test confusion (true x predicted counts)
    confusion_epoch: int | None
    stages: tuple[tuple[str, int], ...]  # (label, first epoch) of each stage after the first, e.g. fine-tuning
    baselines: tuple[float, float] | None  # (raw pixels, random init)
    layouts: tuple[Layout, ...]  # in epoch order
    message: str
    started_at: float | None  # wall clock (time.time()) of the first start
    elapsed_s: float  # time spent running, over all starts
    eta_s: float | None  # None unless running with a measured step rate
    class_names: tuple[str, ...]
    checkpoint: str | None  # latest checkpoint written
    snapshot_epoch: int | None  # epoch of the latest EmbeddingSnapshot (ahead of layouts while UMAP runs)
    advice: tuple[int, str] | None = None  # (epoch, words) when the watchdog said training is not helping
    imbalance: float = 1.0  # largest class over smallest in the training split (1: equal)
    imbalanced: bool = False  # the counts differ: balanced accuracy is shown beside top-1
    knn_balanced: np.ndarray | None = None  # balanced accuracy of the kNN votes at knn_epochs
    top1_balanced: np.ndarray | None = None  # the class head's balanced accuracy at top1_epochs
    plan: tuple[str, ...] = ()  # how the run was planned, in words, oldest first
    # A pipeline's pretraining: the leave-one-out kNN on held-out training images that decides its hand-over
    held_out_epochs: np.ndarray | None = None
    held_out: np.ndarray | None = None
    fitting_minutes: float = 0.0  # > 0 while a budget's length is being fitted: total_steps is provisional
    recipe: tuple[int, int, float] | None = None  # the running stage's (epochs, batch size, lr), once it starts

    @property
    def step(self) -> int:
        return int(self.steps[-1]) if len(self.steps) else 0
