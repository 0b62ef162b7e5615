"""Embedding extraction and the weighted kNN monitor (cosine, k = 20, temperature-weighted votes)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.augment import to_model_input


@torch.no_grad()
def embed(backbone: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """uint8 (N, C, H, W) on any device -> float32 (N, D) on the backbone's device, eval mode."""
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    try:
        out = [backbone(to_model_input(images[i:i + batch_size].to(device))).float()
               for i in range(0, len(images), batch_size)]
    finally:
        backbone.train(was_training)
    return torch.cat(out)


@torch.no_grad()
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                n_classes: int, k: int = 20, temperature: float = 0.07, chunk: int = 2048) -> torch.Tensor:
    """Class scores (M, n_classes) from the k nearest training features by cosine similarity.

    Each neighbour votes for its label with weight exp(similarity / temperature), as in
    Wu et al. 2018 and DINO. Test features are processed in chunks to bound memory at chunk×N.
    """
    train = F.normalize(train_features.float(), dim=1)
    labels = train_labels.to(train.device)
    k = min(k, len(train))
    scores = []
    for start in range(0, len(test_features), chunk):
        query = F.normalize(test_features[start:start + chunk].float().to(train.device), dim=1)
        sim, idx = (query @ train.T).topk(k, dim=1)  # (m, k)
        votes = torch.zeros(len(query), n_classes, device=train.device)
        votes.scatter_add_(1, labels[idx], (sim / temperature).exp())
        scores.append(votes)
    return torch.cat(scores)


def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, n_classes: int, k: int = 20, temperature: float = 0.07) -> float:
    scores = knn_predict(train_features, train_labels, test_features, n_classes, k, temperature)
    return (scores.argmax(dim=1).cpu() == test_labels.cpu()).float().mean().item()


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Raw pixels as features (N, C*H*W), the baseline any learned embedding must beat."""
    return images.flatten(1).float()
