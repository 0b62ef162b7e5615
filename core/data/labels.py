"""Few labels per class: which training images keep their label when a run sees only K per class.

One rule, used by the trainer and everything that reports on it: each class's images are put in an
order drawn with the run's seed, and the first K keep their labels. The order does not depend on K,
so the subsets are nested (the 5 labelled images of a class are among its 20), and a class with fewer
than K images keeps them all. The test split is never cut.
"""
from __future__ import annotations

import statistics

import torch

from core.config import TrainConfig

# The stream that orders each class; offset from the seed so it is not the training subset's own draw.
_ORDER_SALT = 104_729


def labelled_index(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Indices (sorted) of the images that keep their label: the first `per_class` of each class in a
    seeded order; `per_class` 0 keeps every label."""
    labels = labels.cpu()
    if per_class == 0:
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed + _ORDER_SALT)
    picks = []
    for cls in range(int(labels.max()) + 1 if len(labels) else 0):
        members = torch.nonzero(labels == cls).flatten()
        # One permutation per class, drawn for every class whatever its size, so each class's order
        # does not depend on any other's count.
        order = torch.randperm(len(members), generator=generator)
        picks.append(members[order[:per_class]])
    return torch.sort(torch.cat(picks)).values if picks else torch.empty(0, dtype=torch.long)


def labels_per_class(labels: torch.Tensor) -> float:
    """The median count of labelled images over the classes present."""
    counts = torch.bincount(labels)
    return float(statistics.median(counts[counts > 0].tolist()))


def training_index(config: TrainConfig, labels: torch.Tensor, uses_labels: bool) -> torch.Tensor:
    """The images a run trains on: the labelled ones when its objective reads labels or it was asked to
    pretrain on them only (`pretrain_on="labelled"`), else every training image."""
    if uses_labels or config.pretrain_on == "labelled":
        return labelled_index(labels, config.labels_per_class, config.seed)
    return torch.arange(len(labels))


def describe(config: TrainConfig) -> str:
    """'5 labels per class' (and what a label-free stage saw), '' when every label is used."""
    if not config.labels_per_class:
        return ""
    return f"{config.labels_per_class} labels per class"
