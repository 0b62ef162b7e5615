"""The pretraining's hand-over to fine-tuning, judged on held-out *training* images, never the test split.

A run with `stop_when_not_helping` (core.pipeline's pretraining) reads the watchdog's two signs
(core/watchdog.py) on a leave-one-out kNN over its labelled training images: each image is voted for by
the others, so no image judges itself, and the labels are ones pretraining never saw. When the signs
apply the run ends (reason core.events.HANDED_OVER) and the rest of the budget goes to fine-tuning.

With more than FEW_LABELS labels a class (every threshold here is core/policy.py's) it also ends when
pretraining has stopped improving there: no
evaluation in PATIENCE (the watchdog's) has gained GAIN on the best figure before them. Such labels
teach a supervised stage more a minute than a flattening self-supervised curve does (measured on
Fashion-2040: the pretraining kNN flattens after ~60 % of a 3-minute budget while the fine-tuning curves
still rise steeply when their 20 % runs out, docs/RESULTS.md), so the minutes go to fine-tuning. With
few labels the labels cannot teach the features, and their held-out figure is too noisy to read a
plateau: pretraining keeps its share.

With more than FEW_LABELS labels a class it also ends when the figure is at chance: no more than
CHANCE_Z standard errors above what guessing scores (core.metrics.chance). Such an embedding holds
nothing yet that tells the classes apart, and the labels teach a supervised stage more a minute. So
that a run on such data does not spend a fifth of its minutes before its second evaluation, the
figure is also read once early, at READ_EARLY of the first evaluation's epochs; that read counts for
this sign and for the best backbone only, never for the watchdog's two signs, which need evaluations
(self-supervision first lowers the random encoder's figure on some data, then passes it: a few
epochs in, fashion-png read 55 % against the random init's 64 %, then 76 % at epoch 14; an early
read below the random init cannot tell that dip from a run that is not helping, while a read at
chance is at chance either way: docs/results/held-out-curve/tables.md).

It also keeps the backbone at its best figure there, the random-init encoder counting as epoch 0, and
the run's Finished event carries it and its epoch to the pipeline: fine-tuning starts from the
representation that was best on those images, not from the one the drift left at the end. A
pretrained epoch replaces the random init only when it beats it by GAIN (less is the figure's noise,
not evidence that pretraining helped); if none does, pretraining did not help this data and the
pipeline trains from scratch for the rest of the minutes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.data.labels import labels_per_class
from core.metrics import accuracy, balanced_accuracy, chance, confusion_matrix, knn_leave_one_out
from core.model.backbone import cpu_state
from core.policy import CHANCE_Z, GAIN, PATIENCE, READ_EARLY, few_labels
from core.trainer import watchdog

HELD_OUT = "on held-out training images (leave-one-out kNN), "
HANDOVER = "pretraining ends here and the rest of the budget goes to "  # + where: HandOver.kept
AT_CHANCE = ("{metric} {figure:.1%} is at chance (guessing scores {chance:.1%}; {z:g} standard errors above it, "
             "{bound:.1%}): the embedding holds nothing yet that tells these classes apart, and {labels:.0f} "
             "labelled images a class teach supervised training more with the minutes left")
STALLED = ("{metric} {figure:.1%} has gained less than {gain:.0f} point on its best before ({best:.1%}, {when}) in "
           "{patience} evaluations: pretraining has stopped improving, and {labels:.0f} labelled images a class "
           "teach fine-tuning more with the minutes left")


def best_words(epoch: int) -> str:
    """The backbone a hand-over run kept, in words: 'epoch 3, its best on held-out training images'."""
    return f"epoch {epoch}, its best on held-out training images"


def kept_words(epoch: int) -> str:
    """What the rest of a budget trains after a hand-over run that kept the backbone of `epoch` (0: the
    random init was best), in words: the pipeline, the status line and the hand-over say it alike."""
    if not epoch:
        return ("supervised training from scratch: no pretraining epoch beat the random-init encoder on "
                "held-out training images")
    return f"fine-tuning the pretrained backbone of {best_words(epoch)}"


def stalled(epochs: list[int], figures: list[float], metric: str, labels: float) -> str | None:
    """Words when no figure of the last PATIENCE evaluations gained GAIN on the best before them, else None.

    epochs, figures: the evaluated epochs (0: the random init) and their held-out figures, in order;
    labels: labelled images a class (a few: never a plateau, see the module's docstring)."""
    patience = PATIENCE
    if few_labels(labels) or len(figures) <= patience:
        return None
    before = max(range(len(figures) - patience), key=figures.__getitem__)
    if max(figures[-patience:]) >= figures[before] + GAIN:
        return None
    when = f"epoch {epochs[before]}" if epochs[before] else "the random-init encoder"
    return STALLED.format(metric=metric, figure=figures[-1], gain=GAIN * 100, best=figures[before], when=when,
                          patience=patience, labels=labels)


def held_out(train_embeddings: torch.Tensor, labels: torch.Tensor, n_classes: int, k: int, temperature: float,
             metric: str) -> float:
    """The leave-one-out kNN of labelled training embeddings (N, D), in `metric` (core/watchdog.py)."""
    predicted = knn_leave_one_out(train_embeddings, labels, n_classes, k, temperature).argmax(dim=1)
    labels = labels.to(predicted.device)
    if metric == watchdog.BALANCED:
        return balanced_accuracy(confusion_matrix(predicted, labels, n_classes))
    return accuracy(predicted, labels)


@dataclass
class Best:
    """The best held-out figure so far, its epoch (0: the random init) and CPU copies of the modules then."""

    figure: float
    epoch: int
    backbone: dict[str, torch.Tensor]
    objective: dict[str, torch.Tensor]


class HandOver:
    """Judges a pretraining run on its labelled training images (`labelled` indexes the run's embeddings)."""

    def __init__(self, labelled: torch.Tensor, labels: torch.Tensor, n_classes: int, k: int, temperature: float):
        self.labelled, self.labels = labelled, labels
        self.n_classes, self.k, self.temperature = n_classes, k, temperature
        counts = torch.bincount(labels, minlength=n_classes)
        self.metric = watchdog.metric_for(counts)
        self.labels_per_class = labels_per_class(labels)
        self.chance, error = chance(counts)
        self.chance_bound = self.chance + CHANCE_Z * error
        self.read_early = False  # set once the early read is made
        # no advice in its words: the hand-over does what the watchdog would advise, and says where the minutes go
        self._watchdog = watchdog.Watchdog(None, self.metric, advice="")
        self.epochs: list[int] = []  # the evaluations read so far, the random init's (epoch 0) first
        self.figures: list[float] = []
        self.best: Best | None = None
        self.words: str | None = None  # set once the signs apply: the run then ends

    def figure(self, train_embeddings: torch.Tensor) -> float:
        """The held-out kNN of the run's training embeddings (N_all, D)."""
        return held_out(train_embeddings[self.labelled.to(train_embeddings.device)], self.labels, self.n_classes,
                        self.k, self.temperature, self.metric)

    def start(self, figure: float, backbone: dict[str, torch.Tensor], objective: nn.Module) -> None:
        """The random-init encoder's figure and weights: the baseline to beat, and epoch 0's candidate."""
        self._watchdog = watchdog.Watchdog(figure, self.metric, advice="")
        self.epochs, self.figures = [0], [figure]
        self.best = Best(figure, 0, cpu_state(backbone), cpu_state(objective))

    def observe(self, epoch: int, figure: float, backbone: nn.Module, objective: nn.Module) -> str | None:
        """Read one evaluation; returns the hand-over's words once, when the signs start to apply."""
        self._keep_if_best(epoch, figure, backbone, objective)
        self.epochs.append(epoch)
        self.figures.append(figure)
        words = self._watchdog.observe(epoch, figure) or stalled(self.epochs, self.figures, self.metric,
                                                                 self.labels_per_class)
        return self._say(words or self.at_chance(figure))

    def early_epoch(self, eval_every: int) -> int | None:
        """The epoch of the early read for a run evaluated every `eval_every` epochs: None when it is made,
        when the run has few labels a class (no at-chance sign) or already evaluated, or when the first
        evaluation comes at once."""
        if self.read_early or few_labels(self.labels_per_class) or len(self.epochs) > 1 or eval_every < 2:
            return None
        return max(1, round(eval_every * READ_EARLY))

    def read(self, epoch: int, figure: float, backbone: nn.Module, objective: nn.Module) -> str | None:
        """The early read (see the module's docstring): the at-chance sign and the best backbone only."""
        self.read_early = True
        self._keep_if_best(epoch, figure, backbone, objective)
        return self._say(self.at_chance(figure))

    def at_chance(self, figure: float) -> str | None:
        """Words when `figure` is at chance and the labels are enough to teach a supervised stage, else None."""
        if few_labels(self.labels_per_class) or figure > self.chance_bound:
            return None
        return AT_CHANCE.format(metric=self.metric, figure=figure, chance=self.chance, z=CHANCE_Z,
                                bound=self.chance_bound, labels=self.labels_per_class)

    def _keep_if_best(self, epoch: int, figure: float, backbone: nn.Module, objective: nn.Module) -> None:
        """A pretrained epoch replaces the random init only by GAIN, another pretrained epoch by any gain."""
        if self.best is None or figure > self.best.figure + (GAIN if self.best.epoch == 0 else 0.0):
            self.best = Best(figure, epoch, cpu_state(backbone), cpu_state(objective))

    def _say(self, words: str | None) -> str | None:
        """The hand-over's words, once, when a sign starts to apply (the run then ends)."""
        if words is not None and self.words is None:
            self.words = f"{HELD_OUT}{words}; {HANDOVER}{self.kept()}"
            return self.words
        return None

    def state(self) -> dict | None:
        """What a resumed run needs to judge as if it had not stopped: the figures read so far and the best
        backbone (plain data, for the checkpoint's resume state); None before the random init is read."""
        if self.best is None:
            return None
        return {"epochs": list(self.epochs), "figures": list(self.figures), "words": self.words,
                "read_early": self.read_early,
                "best_epoch": self.best.epoch, "best_figure": self.best.figure,
                "best_backbone": self.best.backbone, "best_objective": self.best.objective}

    def restore(self, state: dict) -> None:
        """Continue from `state` (see `state`): the watchdog reads the same curve again, so that its signs
        count the evaluations before the stop."""
        self.epochs, self.figures, self.words = list(state["epochs"]), list(state["figures"]), state["words"]
        self.read_early = bool(state.get("read_early", True))
        self.best = Best(state["best_figure"], state["best_epoch"], state["best_backbone"], state["best_objective"])
        self._watchdog = watchdog.Watchdog(self.figures[0], self.metric, advice="")
        for epoch, figure in zip(self.epochs[1:], self.figures[1:]):
            self._watchdog.observe(epoch, figure)

    def kept(self) -> str:
        """What the rest of the budget trains, in words."""
        if self.best is None or self.best.epoch == 0:
            return kept_words(0)
        return f"{kept_words(self.best.epoch)} ({self.metric} {self.best.figure:.1%})"
