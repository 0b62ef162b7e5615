"""Training objectives, one class each, selected by name through `OBJECTIVES`.

An objective owns its head (if any) and turns embeddings of mixed views into a scalar loss. The
targets of a view are given as (own target, partner target, lam): CutMix shows `lam` of the
sample's own image and `1 - lam` of its partner's, so the target is soft in the same proportion.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.model import instance_head


def mixed_cross_entropy(logits: torch.Tensor, target: torch.Tensor, partner_target: torch.Tensor,
                        lam: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """mean_i [ lam_i * CE(logits_i, target_i) + (1 - lam_i) * CE(logits_i, partner_target_i) ]."""
    own = F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
    other = F.cross_entropy(logits, partner_target, reduction="none", label_smoothing=label_smoothing)
    return (lam * own + (1 - lam) * other).mean()


class InstanceDiscrimination(nn.Module):
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
    def build(cls, *, dim: int, n_instances: int, n_classes: int,
              label_smoothing: float) -> "InstanceDiscrimination":
        return cls(dim, n_instances, label_smoothing)

    def targets(self, index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return index

    def forward(self, embeddings: torch.Tensor, target: torch.Tensor, partner_target: torch.Tensor,
                lam: torch.Tensor) -> torch.Tensor:
        logits = self.head(embeddings).float()  # (n, N)
        return mixed_cross_entropy(logits, target, partner_target, lam, self.label_smoothing)


OBJECTIVES: dict[str, type[nn.Module]] = {InstanceDiscrimination.name: InstanceDiscrimination}


def build_objective(name: str, dim: int, n_instances: int, n_classes: int, label_smoothing: float) -> nn.Module:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name].build(dim=dim, n_instances=n_instances, n_classes=n_classes,
                                  label_smoothing=label_smoothing)
