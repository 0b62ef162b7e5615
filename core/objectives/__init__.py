"""Training objectives, one module each with its recipe's values (instance, contrastive, supervised), and the
registry that selects them by name (`OBJECTIVES`)."""
from __future__ import annotations

import torch

from core.config import TrainConfig
from core.objectives.base import Objective
from core.objectives.contrastive import Contrastive
from core.objectives.instance import InstanceDiscrimination
from core.objectives.supervised import Supervised

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
