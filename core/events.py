"""Plain-data records the trainer emits. Listeners (CLI, app) fold them; the trainer knows none of them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RunStarted:
    device: str
    n_train: int
    n_test: int
    steps_per_epoch: int
    total_steps: int
    start_step: int
    parameters: int
    objective: str = ""  # the objective's registry name; "supervised" with init_from is fine-tuning
    init_from: str = ""  # the pretrained checkpoint a fine-tuning run started from
    class_counts: tuple[int, ...] = ()  # training images per class
    class_weights: bool = False  # whether the loss weighs classes (core.objectives.class_weights)
    predicts_classes: bool = False  # the objective has a class head (supervised, fine-tuning)
    budget_minutes: float = 0.0  # a budget whose length is fitted after a few seconds: total_steps is provisional


@dataclass(frozen=True)
class BudgetFitted:
    """A run with a time budget fixed its length from the rate it measured (core/budget.py)."""

    minutes: float
    epochs: int
    step: int  # steps done when it was fixed
    total_steps: int
    images_per_s: float
    message: str  # e.g. "5 min budget: ~46 epochs at 410 img/s"


@dataclass(frozen=True)
class Baselines:
    """kNN top-1 on the test split for raw pixels and for the randomly initialised encoder, and their
    balanced accuracy (None in a checkpoint written before it was measured)."""

    raw_pixels: float
    random_init: float
    raw_pixels_balanced: float | None = None
    random_init_balanced: float | None = None


@dataclass(frozen=True)
class StepMetrics:
    step: int  # steps done so far (1-based)
    epoch: int  # epoch the step belongs to (0-based)
    loss: float
    lr: float
    images_per_s: float  # source images (not views) per second, over the last logging window


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int  # epochs completed (1-based)
    step: int
    loss: float  # mean training loss over the epoch
    knn_top1: float | None  # None when this epoch was not evaluated
    elapsed_s: float
    test_top1: float | None = None  # class-head accuracy on the test split (objectives with a class head)
    # Class-head confusion on the test split at this epoch, rows = true class, columns = predicted
    # (nested tuples of ints: plain data for the JSONL log and the app); None when not measured.
    confusion: tuple[tuple[int, ...], ...] | None = None
    # Balanced accuracy (mean recall over classes) of the kNN votes and of the class head: what counts
    # when the classes are unequal (the same as top-1 for a balanced test split).
    knn_balanced: float | None = None
    test_balanced: float | None = None
    # A hand-over run's leave-one-out kNN on its labelled training images (core/handover.py): the figure
    # that decides when pretraining ends and which epoch fine-tuning starts from; None elsewhere.
    held_out: float | None = None


@dataclass(frozen=True)
class EmbeddingSnapshot:
    """Training-set embeddings and the backbone weights that produced them (a consistent pair:
    what a listener publishes for classification while training goes on)."""

    epoch: int
    embeddings: np.ndarray  # (N, D) float16, training set in dataset order
    labels: np.ndarray  # (N,) int64
    weights: dict  # backbone state_dict, detached CPU copies
    head: dict | None = None  # the objective's state_dict when it predicts classes (a class head), else None


@dataclass(frozen=True)
class Advice:
    """Training is not helping, in words for the person (core/watchdog.py); sent once when it starts."""

    epoch: int
    message: str


@dataclass(frozen=True)
class CheckpointSaved:
    path: str
    epoch: int
    step: int


@dataclass(frozen=True)
class Finished:
    reason: str  # "completed" | "stopped" | "handed over" (core/watchdog.py)
    epoch: int
    step: int
    knn_top1: float | None
    checkpoint: str | None
    test_top1: float | None = None


@dataclass(frozen=True)
class Failed:
    message: str
    epoch: int
    step: int
    checkpoint: str | None  # the last good checkpoint, if any


Event = (RunStarted | BudgetFitted | Baselines | StepMetrics | EpochMetrics | EmbeddingSnapshot | Advice
         | CheckpointSaved | Finished | Failed)
