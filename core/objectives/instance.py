"""Parametric instance discrimination (IDMM, the paper's stage 1), and the values a recipe starts it from.

The values are the official code's (../shared/PAPER.md, stage 1): the paper preset (core/plan/presets.py)
trains them as they are, the auto recipe (core/plan/auto.py) turns multi-crop and CutMix on only when a budget
allows the passes where they pay, and core.compare puts CutMix and smoothing back on so that its ablations
remove something that is there.
"""
from __future__ import annotations

import dataclasses

import torch

from core.config import TrainConfig
from core.model.backbone import instance_head
from core.objectives.base import Objective, mixed_cross_entropy

CUTMIX_ALPHA = 0.5  # lambda ~ Beta(0.5, 0.5), lambda = max(lambda, 1 - lambda)
# The PVTv2/T2T scripts' 0.1 (the DeiT script uses none): the paper's argument favours it, since an instance's
# weight vector otherwise gets a positive update only about once per epoch.
LABEL_SMOOTHING = 0.1
# Multi-crop: two large crops and four small ones, each group one batch with its own CutMix and loss.
MULTI_CROP = {"n_global": 2, "global_scale": (0.14, 1.0), "n_local": 4, "local_scale": (0.05, 0.4)}
JITTER = (0.8, 0.8, 0.8, 0.2)  # ColorJitter(0.8, 0.8, 0.8, 0.2) with p 0.8


def with_paper_mixing(config: TrainConfig) -> TrainConfig:
    """`config` with the paper's CutMix and label smoothing on (what core.compare's ablations take away)."""
    return dataclasses.replace(config, label_smoothing=LABEL_SMOOTHING,
                               augment=dataclasses.replace(config.augment, cutmix_alpha=CUTMIX_ALPHA))


class InstanceDiscrimination(Objective):
    """Parametric instance discrimination (IDMM): every training image is its own class.

    Logits are a plain N-way linear layer on the embedding (no normalisation, no temperature),
    as in the paper's code; the target of a view is the index of the image it was cut from.
    """

    name = "instance"

    def __init__(self, dim: int, n_instances: int, label_smoothing: float = 0.1):
        super().__init__()
        self.head = instance_head(dim, n_instances)
        self.label_smoothing = label_smoothing

    @classmethod
    def build(cls, config: TrainConfig, *, n_instances: int, n_classes: int,
              class_counts: torch.Tensor | None = None) -> InstanceDiscrimination:
        return cls(config.model.dim, n_instances, config.label_smoothing)

    def targets(self, index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return index

    def forward(self, embeddings: torch.Tensor, target: torch.Tensor, partner_target: torch.Tensor,
                lam: torch.Tensor) -> torch.Tensor:
        logits = self.head(embeddings).float()  # (n, N)
        return mixed_cross_entropy(logits, target, partner_target, lam, self.label_smoothing)
