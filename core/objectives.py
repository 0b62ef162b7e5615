"""Training objectives, one class each, selected by name through `OBJECTIVES`.

An objective owns its head (if any) and turns embeddings of mixed views into a scalar loss. The
targets of a view are given as (own target, partner target, lam): CutMix and Mixup show `lam` of the
sample's own image and `1 - lam` of its partner's, so the target is soft in the same proportion.

Every objective is an `Objective`: it declares what it needs of the views (`min_views`, `mixes`),
which core.recipe reads to adapt a config, and whether it `predicts_classes` (then `class_logits`
gives them); `build(config, n_instances=, n_classes=)` refuses a config it cannot train with.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.config import BALANCE_MODES, TrainConfig
from core.metrics import imbalance
from core.model.backbone import class_head, instance_head

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


OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (InstanceDiscrimination, Contrastive, Supervised)}


def objective_class(name: str) -> type[Objective]:
    """The registered objective `name`; ValueError naming the choices if there is none."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]


def build_objective(config: TrainConfig, n_instances: int, n_classes: int,
                    class_counts: torch.Tensor | None = None) -> Objective:
    """The objective `config.objective` names; ValueError if unknown or if the config cannot train it."""
    return objective_class(config.objective).build(config, n_instances=n_instances, n_classes=n_classes,
                                                   class_counts=class_counts)


def load_class_head(config: TrainConfig, n_classes: int, state: dict[str, torch.Tensor]) -> Objective:
    """A trained class-predicting objective from its state_dict, in eval mode and frozen."""
    if not objective_class(config.objective).predicts_classes:
        raise ValueError(f"the {config.objective} objective has no class head")
    objective = build_objective(config, n_instances=0, n_classes=n_classes)
    objective.load_state_dict(state)
    return objective.eval().requires_grad_(False)
