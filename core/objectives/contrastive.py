"""SimCLR-style contrastive pretraining (NT-Xent), the self-supervised alternative the paper compares against.

Its values sit in TrainConfig (`contrastive_temperature` 0.2, `projection_dim` 128: SimCLR's, Chen et al. 2020);
what it needs of the views it declares (`min_views` 2, `mixes` False), and core/plan/recipe.py applies them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.config import TrainConfig
from core.objectives.base import Objective


def nt_xent(z: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent / InfoNCE over all views of a batch (SimCLR), vectorised.

    z: (n, d) projections; target: (n,) the source image of each row. For an anchor i, the positives
    are the other rows of the same image and the negatives every other row; with two views per image
    this is SimCLR's loss over 2B views. With more views, each anchor averages -log p over its
    positives (SupCon's "outside" form), which reduces to NT-Xent at two.
    """
    z = F.normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=1)  # bf16 under autocast -> fp32
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))  # (n, n); self is no candidate
    log_p = sim - sim.logsumexp(dim=1, keepdim=True)
    positive = (target[:, None] == target[None, :]) & ~self_mask
    # where(), not multiply: the diagonal of log_p is -inf and -inf * 0 is nan
    return -(torch.where(positive, log_p, 0.0).sum(dim=1) / positive.sum(dim=1)).mean()


class Contrastive(Objective):
    """SimCLR: NT-Xent between the views of each image, through an optional projection MLP.

    Needs at least two views per image in every crop group and unmixed views: a CutMix or Mixup
    view has no single positive, so the config is refused rather than silently mis-trained.
    """

    name = "contrastive"
    min_views = 2
    mixes = False

    def __init__(self, dim: int, projection_dim: int = 128, temperature: float = 0.2):
        super().__init__()
        self.temperature = temperature
        # SimCLR's 2-layer MLP; the embedding before it is what kNN, probes and fine-tuning use.
        self.projection = (nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, projection_dim))
                           if projection_dim else nn.Identity())

    @classmethod
    def build(cls, config: TrainConfig, *, n_instances: int, n_classes: int,
              class_counts: torch.Tensor | None = None) -> Contrastive:
        aug = config.augment
        if aug.n_global < 2 or aug.n_local == 1:
            raise ValueError("the contrastive objective needs at least 2 views per image in each crop group "
                             f"(augment.n_global = {aug.n_global}, n_local = {aug.n_local})")
        if aug.cutmix_alpha > 0 or aug.mixup_alpha > 0:
            raise ValueError("the contrastive objective needs unmixed views: set augment.cutmix_alpha and "
                             "augment.mixup_alpha to 0")
        return cls(config.model.dim, config.projection_dim, config.contrastive_temperature)

    def targets(self, index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return index

    def forward(self, embeddings: torch.Tensor, target: torch.Tensor, partner_target: torch.Tensor,
                lam: torch.Tensor) -> torch.Tensor:
        return nt_xent(self.projection(embeddings), target, self.temperature)
