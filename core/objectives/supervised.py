"""Supervised training on the class labels (the paper's stage 2, and training from scratch), and its recipe.

The recipe is ../shared/PAPER.md's stage 2, scaled to the data (`recipe`): label-smoothing CE 0.1, Mixup and
CutMix (alpha 0.5) alternating by epoch, jitter (0.4, 0.4, 0.4, 0.1) with p 0.4, grayscale p 0.2, one crop, the
same lr as pretraining. The crop scale and flips stay those the base recipe uses for this data (at 28 px the
paper's (0.08, 1) crops destroy a garment); RandAugment is left out.
"""
from __future__ import annotations

import dataclasses

import torch

from core.config import TrainConfig
from core.model.backbone import class_head
from core.objectives.base import Objective, class_weights, mixed_cross_entropy

LABEL_SMOOTHING = 0.1
MIX_ALPHA = 0.5  # Mixup on even epochs, CutMix on odd ones
JITTER, JITTER_P, GRAY_P = (0.4, 0.4, 0.4, 0.1), 0.4, 0.2
MIN_EVALUATIONS = 4  # a supervised run is evaluated at least this often: the curve a person reads


def recipe(base: TrainConfig, size: int, epochs: int) -> TrainConfig:
    """The supervised recipe on `base`'s data and model, at input side `size`, for `epochs` (core/plan/recipe.py
    then fits the warmup to the length, as it does for every run)."""
    # Variable-size sources are stored a little larger than the crop (the paper: 256 for 224 px).
    data_size = base.data_size and max(base.data_size, size * 8 // 7)
    augment = dataclasses.replace(base.augment, n_global=1, global_size=size, n_local=0, local_size=size,
                                  jitter=JITTER, jitter_p=JITTER_P, gray_p=GRAY_P, blur_p=0.0,
                                  cutmix_alpha=MIX_ALPHA, mixup_alpha=MIX_ALPHA)
    return dataclasses.replace(
        base, data_size=data_size, model=dataclasses.replace(base.model, image_size=size), augment=augment,
        label_smoothing=LABEL_SMOOTHING,
        eval_every=base.eval_every and max(1, min(base.eval_every, epochs // MIN_EVALUATIONS)))


class Supervised(Objective):
    """Cross-entropy on the class labels through a linear class head (soft targets under mixing)."""

    name = "supervised"
    predicts_classes = True

    def __init__(self, dim: int, n_classes: int, label_smoothing: float = 0.1,
                 weights: torch.Tensor | None = None):
        super().__init__()
        self.head = class_head(dim, n_classes)
        self.label_smoothing = label_smoothing
        # Not persistent: derived from the training data, so checkpoints keep only the head.
        self.register_buffer("class_weights", weights, persistent=False)

    @classmethod
    def build(cls, config: TrainConfig, *, n_instances: int, n_classes: int,
              class_counts: torch.Tensor | None = None) -> Supervised:
        weights = None if class_counts is None else class_weights(class_counts, config.balance_classes)
        return cls(config.model.dim, n_classes, config.label_smoothing, weights)

    def targets(self, index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return labels

    def class_logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.head(embeddings).float()  # (n, n_classes)

    @property
    def weighs_classes(self) -> bool:
        return self.class_weights is not None

    def forward(self, embeddings: torch.Tensor, target: torch.Tensor, partner_target: torch.Tensor,
                lam: torch.Tensor) -> torch.Tensor:
        return mixed_cross_entropy(self.class_logits(embeddings), target, partner_target, lam,
                                   self.label_smoothing, self.class_weights)
