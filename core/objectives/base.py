"""What every training objective declares and does (`Objective`), and the losses the objectives share.

An objective owns its head (if any) and turns embeddings of mixed views into a scalar loss. The targets of a
view are given as (own target, partner target, lam): CutMix and Mixup show `lam` of the sample's own image and
`1 - lam` of its partner's, so the target is soft in the same proportion. It declares what it needs of the
views (`min_views`, `mixes`), which `fit_views` applies to a config, and whether it `predicts_classes` (then
`class_logits` gives them); `build(config, n_instances=, n_classes=)` refuses a config it cannot train with.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from core.config import BALANCE_MODES, TrainConfig
from core.metrics import imbalance

# Classes are weighed when the largest holds more than this many times the images of the smallest
# (TrainConfig.balance_classes = "auto"), so that a minority class is not traded away for accuracy.
IMBALANCE_RATIO = 1.5


def class_weights(counts: torch.Tensor, mode: str = "auto") -> torch.Tensor | None:
    """Per-class loss weights (C,) from the training set's class counts, or None for plain CE.

    "Balanced" weights N / (C * n_c), as scikit-learn's: each class then carries the same total weight.
    "auto" weighs only when max(n_c) > IMBALANCE_RATIO * min(n_c); "on" always; "off" never.
    """
    if mode not in BALANCE_MODES:
        raise ValueError(f"balance_classes must be one of {BALANCE_MODES}, got {mode!r}")
    present = counts[counts > 0].double()
    if mode == "off" or len(present) == 0 or (mode == "auto" and imbalance(counts) <= IMBALANCE_RATIO):
        return None
    weights = torch.zeros(len(counts), dtype=torch.float64)
    weights[counts > 0] = present.sum() / (len(present) * present)
    return weights.float()


def mixed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, partner_target: torch.Tensor,
                        lam: torch.Tensor, label_smoothing: float, weights: torch.Tensor | None = None) -> torch.Tensor:
    """mean_i [ lam_i * CE(logits_i, target_i) + (1 - lam_i) * CE(logits_i, partner_target_i) ].

    With class `weights` (C,), each term is weighed by its target's class and the sum is divided by
    the total weight (as F.cross_entropy's weighted mean does).
    """
    own = F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
    other = F.cross_entropy(logits, partner_target, reduction="none", label_smoothing=label_smoothing)
    if weights is None:
        return (lam * own + (1 - lam) * other).mean()
    own_w, other_w = lam * weights[target], (1 - lam) * weights[partner_target]
    return (own_w * own + other_w * other).sum() / (own_w + other_w).sum()


class Objective(nn.Module):
    """What every objective declares and does; subclasses set the class attributes they change."""

    name: str = ""
    min_views: int = 1  # views of each image every crop group must hold (contrastive needs a pair)
    mixes: bool = True  # whether CutMix/Mixup views are meaningful (a mixed view has no single positive)
    predicts_classes: bool = False  # whether `class_logits` gives class scores (a class head)

    @classmethod
    def build(cls, config: TrainConfig, *, n_instances: int, n_classes: int,
              class_counts: torch.Tensor | None = None) -> Objective:
        """`class_counts`: the training set's images per class (objectives that weigh classes use them)."""
        raise NotImplementedError

    def targets(self, index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The training target of each image of a batch: its index (instances) or its label (classes)."""
        raise NotImplementedError

    def class_logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(n, D) -> (n, n_classes) float32; only for objectives that predict classes."""
        raise TypeError(f"the {self.name} objective does not predict classes")

    @property
    def weighs_classes(self) -> bool:
        """Whether the loss weighs classes against an imbalanced training set."""
        return False

    @classmethod
    def fit_views(cls, config: TrainConfig) -> TrainConfig:
        """`config` with the views this objective needs: at least `min_views` per crop group, unmixed if it
        cannot mix (a mixed view has no single positive)."""
        aug = config.augment
        n_local = aug.n_local and max(aug.n_local, cls.min_views)
        changes = {"n_global": max(aug.n_global, cls.min_views), "n_local": n_local}
        if not cls.mixes:
            changes.update(cutmix_alpha=0.0, mixup_alpha=0.0)
        return dataclasses.replace(config, augment=dataclasses.replace(aug, **changes))
