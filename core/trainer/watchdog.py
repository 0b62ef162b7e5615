"""Say when training is not helping: the kNN monitor read as a person would read the curve.

Two signs, from the evaluations a run has made so far (the kNN on the test split, used here only to
warn, never to choose a checkpoint or a setting):
- the embedding is worse than the randomly initialised encoder it started from;
- it has fallen more than DROP below its own best for PATIENCE evaluations in a row (core/policy.py).
A self-supervised objective cannot know which differences the labels care about, so on some data the
representation peaks early and then drifts; the remedy a person has is to stop and fine-tune.

A run asked to (`stop_when_not_helping`, core.pipeline's pretraining) also reads the same two signs on
held-out *training* images and ends when they apply (core/handover.py): that choice is made on the
training split, never on the test split.

Which kNN: top-1 when the classes are equal; balanced accuracy (mean recall) when they are not, since
an embedding that files every image under the largest class scores that class's share in top-1 and
chance in balanced accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from core import events as ev
from core.metrics import unequal
from core.policy import DROP, PATIENCE

BELOW_RANDOM = ("{metric} {knn:.1%} has been below the random-init encoder's {baseline:.1%} for "
                "{patience} evaluations: pretraining is making this data's embedding worse")
BELOW_BEST = ("{metric} {knn:.1%} has stayed over {drop:.0f} points below its best ({best:.1%}, "
              "epoch {best_epoch}) for {patience} evaluations: pretraining has stopped helping")
ADVICE = "the labels are what can help now: stop and fine-tune"
TOP1, BALANCED = "kNN top-1", "balanced kNN accuracy"


@dataclass(frozen=True)
class Yardstick:
    """The kNN figure a run is judged by, and the two baselines in that figure."""

    metric: str  # TOP1 or BALANCED
    raw_pixels: float
    random_init: float

    @classmethod
    def of(cls, baselines: ev.Baselines, counts: torch.Tensor | list[int] | tuple[int, ...]) -> Yardstick:
        """The yardstick of a run whose labelled images have class `counts` (older baselines: top-1)."""
        if metric_for(counts) == BALANCED and baselines.random_init_balanced is not None:
            return cls(BALANCED, baselines.raw_pixels_balanced, baselines.random_init_balanced)
        return cls(TOP1, baselines.raw_pixels, baselines.random_init)

    def read(self, knn: float, knn_balanced: float | None) -> float:
        return knn_balanced if self.metric == BALANCED and knn_balanced is not None else knn


def metric_for(counts: torch.Tensor | list[int] | tuple[int, ...]) -> str:
    """The kNN figure for labelled images with these class counts: BALANCED when they differ, else TOP1."""
    return BALANCED if unequal(counts) else TOP1


def verdict(epochs: list[int], knns: list[float], random_init: float | None, metric: str = TOP1,
            advice: str = ADVICE) -> str | None:
    """A sentence for the person when a pretraining run's kNN curve says it is not helping, else None.

    epochs, knns: the evaluated epochs and their kNN (`metric`), in order; random_init: the random-init
    encoder's kNN in the same metric (None if unknown); advice: what to do about it ("": the caller does it).
    """
    if len(knns) < PATIENCE:
        return None
    recent = knns[-PATIENCE:]
    if random_init is not None and max(recent) < random_init:
        below = BELOW_RANDOM.format(metric=metric, knn=knns[-1], baseline=random_init, patience=PATIENCE)
        return f"{below}; {advice}" if advice else below
    best = max(range(len(knns)), key=knns.__getitem__)
    if len(knns) - best > PATIENCE - 1 and max(recent) < knns[best] - DROP:
        drop = BELOW_BEST.format(metric=metric, knn=knns[-1], drop=DROP * 100, best=knns[best],
                                 best_epoch=epochs[best], patience=PATIENCE)
        return f"{drop}; {advice}" if advice else drop
    return None


class Watchdog:
    """Reads a run's evaluations as they come; `observe` returns the words once, when they start to apply."""

    def __init__(self, random_init: float | None, metric: str = TOP1, advice: str = ADVICE):
        self.random_init = random_init
        self.metric, self.advice = metric, advice
        self.epochs: list[int] = []
        self.knns: list[float] = []
        self._speaking = False

    def observe(self, epoch: int, knn: float) -> str | None:
        self.epochs.append(epoch)
        self.knns.append(knn)
        words = verdict(self.epochs, self.knns, self.random_init, self.metric, self.advice)
        said, self._speaking = self._speaking, words is not None
        return None if said else words


def ending(knn: float, raw_pixels: float, random_init: float, metric: str = TOP1) -> str:
    """How a pretraining run ended against its two baselines (all in `metric`), said plainly either way."""
    beaten = [name for name, value in (("raw pixels", raw_pixels), ("the random-init encoder", random_init))
              if knn <= value]
    against = f"raw pixels {raw_pixels:.1%}, random-init encoder {random_init:.1%}"
    if not beaten:
        return f"the pretrained backbone's {metric} {knn:.1%} is above both baselines ({against})"
    return (f"the pretrained backbone's {metric} {knn:.1%} is NOT above {' or '.join(beaten)} ({against}): "
            "this pretraining did not give a better representation than that; train longer, fine-tune it, "
            "or train supervised")
