"""Plain-data records the trainer and the pipeline emit. Listeners (CLI, app, the run folder's log) fold them;
the emitters know none of them. Decisions travel here as values: a pretraining's best held-out epoch and its
weights ride on its Finished event, and the pipeline says what it planned and why in Planned and StageStarted."""
from __future__ import annotations

from collections.abc import Callable
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
    # The recipe as it runs (a fitted one included), for a person to read: epochs (provisional under a budget until
    # BudgetFitted), batch size and peak learning rate.
    epochs: int = 0
    batch_size: int = 0
    lr: float = 0.0


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


COMPLETED, STOPPED, HANDED_OVER = "completed", "stopped", "handed over"  # why a run ended (Finished.reason)


@dataclass(frozen=True)
class Finished:
    reason: str  # COMPLETED, STOPPED, or HANDED_OVER (a pipeline's pretraining ended itself: core/trainer/handover.py)
    epoch: int
    step: int
    knn_top1: float | None
    checkpoint: str | None
    test_top1: float | None = None
    # A hand-over run (core/trainer/handover.py): the epoch whose backbone was best on held-out training images
    # (0: the random-init encoder) and that backbone's weights (CPU copies; the log keeps only the epoch).
    best_epoch: int | None = None
    best_backbone: dict | None = None


@dataclass(frozen=True)
class Failed:
    message: str
    epoch: int
    step: int
    checkpoint: str | None  # the last good checkpoint, if any


@dataclass(frozen=True)
class Planned:
    """A pipeline's plan, before anything trains: its recipe, what it expects and the stages, in words."""

    recipe: str  # e.g. "auto recipe: 64 px, patch 8, dim 128, depth 4, 1 view, flips, batch 64"
    expected: str  # why pretraining is, or is not, expected to pay (core/plan/payoff.py); "" when not asked
    stages: str  # e.g. "pretraining, then fine-tuning, 5 min in all"


@dataclass(frozen=True)
class StageStarted:
    """A pipeline begins (or resumes) a stage; its trainer's events follow, numbered from the stage's own start."""

    stage: str  # what it trains: "pretrain", "finetune" or "supervised" (core/plan/recipe.py)
    index: int  # its place in the pipeline, from 0
    folder: str  # the stage's folder (core/runs/folder.py)
    words: str = ""  # why this stage follows the one before, e.g. the hand-over's choice


@dataclass(frozen=True)
class PipelineEnded:
    """A pipeline stopped training: its last stage's end, the minutes it spent, and the model to use."""

    reason: str  # the last stage's: COMPLETED, STOPPED or "failed"
    minutes: float  # spent over every start of the pipeline
    model: str | None  # the checkpoint to use once the last stage completed, else None


Event = (RunStarted | BudgetFitted | Baselines | StepMetrics | EpochMetrics | EmbeddingSnapshot | Advice
         | CheckpointSaved | Finished | Failed | Planned | StageStarted | PipelineEnded)


def fan_out(*listeners: Callable[[Event], None]) -> Callable[[Event], None]:
    """One listener that passes each event to every one of `listeners`, in order."""
    def emit(event: Event) -> None:
        for listener in listeners:
            listener(event)
    return emit
