"""Measures of a representation and of a classifier: the kNN vote, the linear probe, accuracy,
balanced accuracy, confusion and per-class recall. Plain functions on tensors; no I/O.

kNN: cosine similarity, k nearest training embeddings, each voting for its label with weight
exp(similarity / temperature) (Wu et al. 2018, DINO).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def knn_votes(similarity: torch.Tensor, train_labels: torch.Tensor, n_classes: int, k: int,
              temperature: float) -> torch.Tensor:
    """Cosine similarities (M, N) to the training set -> class votes (M, n_classes) from the k nearest.

    Each row is shifted by its largest similarity before exp(): that keeps exp() finite for any
    temperature and scales a row's votes by one constant, so their argmax and proportions are unchanged.
    """
    nearest, index = similarity.topk(min(k, similarity.shape[1]), dim=1)  # (M, k), descending
    weights = ((nearest - nearest[:, :1]) / temperature).exp()
    votes = torch.zeros(len(similarity), n_classes, device=similarity.device)
    return votes.scatter_add_(1, train_labels.to(similarity.device)[index], weights)


@torch.no_grad()
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                n_classes: int, k: int = 20, temperature: float = 0.07, chunk: int = 2048) -> torch.Tensor:
    """Class votes (M, n_classes); test features are processed in chunks to bound memory at chunk×N."""
    train = F.normalize(train_features.float(), dim=1)
    scores = []
    for start in range(0, len(test_features), chunk):
        query = F.normalize(test_features[start:start + chunk].float().to(train.device), dim=1)
        scores.append(knn_votes(query @ train.T, train_labels, n_classes, k, temperature))
    return torch.cat(scores)


@torch.no_grad()
def knn_leave_one_out(features: torch.Tensor, labels: torch.Tensor, n_classes: int, k: int = 20,
                      temperature: float = 0.07, chunk: int = 2048) -> torch.Tensor:
    """Class votes (N, n_classes) of each image from its k nearest *other* images: a held-out kNN on the
    training set itself, with no split to carve (an image never votes for itself)."""
    normed = F.normalize(features.float(), dim=1)
    scores = []
    for start in range(0, len(normed), chunk):
        similarity = normed[start:start + chunk] @ normed.T  # (chunk, N)
        rows = torch.arange(len(similarity), device=similarity.device)
        similarity[rows, rows + start] = -float("inf")
        scores.append(knn_votes(similarity, labels, n_classes, k, temperature))
    return torch.cat(scores)


def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, n_classes: int, k: int = 20, temperature: float = 0.07) -> float:
    scores = knn_predict(train_features, train_labels, test_features, n_classes, k, temperature)
    return accuracy(scores.argmax(dim=1), test_labels)


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Raw pixels as features (N, C*H*W), the baseline any learned embedding must beat."""
    return images.flatten(1).float()


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, n_classes: int, weight_decay: float = 1e-4, steps: int = 200) -> float:
    """Test top-1 of a multinomial logistic regression on frozen features, the second measure beside kNN.

    Features are standardised with the training statistics; the regression is fitted full-batch by
    L-BFGS (deterministic, and seconds for a few thousand 128-d features), with an L2 penalty.
    """
    train, test = train_features.float().cpu(), test_features.float().cpu()
    mean, std = train.mean(dim=0), train.std(dim=0).clamp_min(1e-6)
    train, test = (train - mean) / std, (test - mean) / std
    labels = train_labels.cpu()
    linear = nn.Linear(train.shape[1], n_classes)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(linear(train), labels) + weight_decay * linear.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return accuracy(linear(test).argmax(dim=1), test_labels)


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return (predictions.cpu() == labels.cpu()).float().mean().item()


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    flat = labels.cpu().long() * n_classes + predictions.cpu().long()
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_recall(confusion: torch.Tensor) -> torch.Tensor:
    """Recall per true class (float64); NaN for a class with no test images."""
    return confusion.diag().double() / confusion.sum(dim=1).double()


def confusion_accuracy(confusion: torch.Tensor) -> float:
    return (confusion.diag().sum() / confusion.sum()).item()


def imbalance(counts: torch.Tensor | list[int] | tuple[int, ...]) -> float:
    """Images of the largest class over those of the smallest (classes with none left out); 1 = equal."""
    present = [int(c) for c in counts if int(c) > 0]
    return max(present) / min(present) if present else 1.0


def unequal(counts: torch.Tensor | list[int] | tuple[int, ...]) -> bool:
    """Whether class counts differ at all: then balanced accuracy is reported beside top-1."""
    return imbalance(counts) > 1


def balanced_accuracy(confusion: torch.Tensor) -> float:
    """Mean recall over the classes present in the test split: each class counts the same, however
    many images it has, so a minority class cannot be traded away unseen."""
    recall = per_class_recall(confusion)
    return recall[~recall.isnan()].mean().item()


def chance(counts: torch.Tensor | list[int] | tuple[int, ...]) -> tuple[float, float]:
    """What guessing scores in balanced accuracy on labelled images with these class counts (top-1 too when
    they are equal), and its standard error: a guesser's recall of class c is a binomial share of its n_c
    images with p = 1/C, so their mean has variance sum_c p(1 - p) / n_c, over C squared."""
    present = torch.as_tensor(counts, dtype=torch.float64)
    present = present[present > 0]
    p = 1.0 / len(present)
    return p, float((p * (1 - p) / present).sum().sqrt()) / len(present)
