"""Say when training is not helping: the kNN monitor read as a person would read the curve.

Two signs, from the evaluations a run has made so far (kNN top-1 on the test split, used here only to
warn, never to choose a checkpoint or a setting):
- the embedding is worse than the randomly initialised encoder it started from;
- it has fallen more than DROP below its own best for PATIENCE evaluations in a row.
A self-supervised objective cannot know which differences the labels care about, so on some data the
representation peaks early and then drifts; the remedy a person has is to stop and fine-tune.
"""
from __future__ import annotations

DROP = 0.02  # two points of kNN top-1
PATIENCE = 2  # evaluations in a row

BELOW_RANDOM = ("kNN top-1 {knn:.1%} has been below the randomly initialised encoder's {baseline:.1%} for "
                "{patience} evaluations: pretraining is making this data's embedding worse")
BELOW_BEST = ("kNN top-1 {knn:.1%} has stayed more than {drop:.0f} points below its best ({best:.1%}, "
              "epoch {best_epoch}) for {patience} evaluations: pretraining has stopped helping")
ADVICE = "the labels are what can help now: stop and fine-tune"


def verdict(epochs: list[int], knns: list[float], random_init: float | None) -> str | None:
    """A sentence for the person when a pretraining run's kNN curve says it is not helping, else None.

    epochs, knns: the evaluated epochs and their kNN top-1, in order; random_init: the random-init
    encoder's kNN (None if unknown).
    """
    if len(knns) < PATIENCE:
        return None
    recent = knns[-PATIENCE:]
    if random_init is not None and max(recent) < random_init:
        return f"{BELOW_RANDOM.format(knn=knns[-1], baseline=random_init, patience=PATIENCE)}; {ADVICE}"
    best = max(range(len(knns)), key=knns.__getitem__)
    if len(knns) - best > PATIENCE - 1 and max(recent) < knns[best] - DROP:
        drop = BELOW_BEST.format(knn=knns[-1], drop=DROP * 100, best=knns[best], best_epoch=epochs[best],
                                 patience=PATIENCE)
        return f"{drop}; {ADVICE}"
    return None


class Watchdog:
    """Reads a run's evaluations as they come; `observe` returns the words once, when they start to apply."""

    def __init__(self, random_init: float | None):
        self.random_init = random_init
        self.epochs: list[int] = []
        self.knns: list[float] = []
        self._speaking = False

    def observe(self, epoch: int, knn: float) -> str | None:
        self.epochs.append(epoch)
        self.knns.append(knn)
        words = verdict(self.epochs, self.knns, self.random_init)
        said, self._speaking = self._speaking, words is not None
        return None if said else words


def ending(knn: float, raw_pixels: float, random_init: float) -> str:
    """How a pretraining run ended against its two baselines, said plainly either way."""
    beaten = [name for name, value in (("raw pixels", raw_pixels), ("the random-init encoder", random_init))
              if knn <= value]
    against = f"raw pixels {raw_pixels:.1%}, random-init encoder {random_init:.1%}"
    if not beaten:
        return f"the pretrained backbone's kNN top-1 {knn:.1%} is above both baselines ({against})"
    return (f"the pretrained backbone's kNN top-1 {knn:.1%} is NOT above {' or '.join(beaten)} ({against}): "
            "this pretraining did not give a better representation than that; train longer, fine-tune it, "
            "or train supervised")
