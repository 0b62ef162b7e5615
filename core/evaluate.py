"""Embeddings, the weighted kNN monitor, the linear probe, class-head accuracy, `python -m core.evaluate CKPT`.

kNN: cosine similarity, k nearest training embeddings, each voting for its label with weight
exp(similarity / temperature) (Wu et al. 2018, DINO).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from core.augment import to_model_input
from core.checkpoint import check_matches, load_checkpoint
from core.data import load_dataset
from core.distributed import resolve_device
from core.model import Backbone
from core.objectives import OBJECTIVES, build_objective


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


def eval_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images resized (antialiased) to the model's resolution, uint8 out."""
    if images.shape[-1] == size:
        return images
    resized = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True)
    return resized.round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                n_classes: int, k: int = 20, temperature: float = 0.07, chunk: int = 2048) -> torch.Tensor:
    """Class scores (M, n_classes); test features are processed in chunks to bound memory at chunk×N."""
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


def knn_eval(backbone: nn.Module, train_images: torch.Tensor, train_labels: torch.Tensor,
             test_images: torch.Tensor, test_labels: torch.Tensor, n_classes: int, k: int = 20,
             temperature: float = 0.07) -> tuple[float, torch.Tensor]:
    """kNN top-1 of a backbone on uint8 splits, and the training embeddings (N, D) it used."""
    train = embed(backbone, train_images)
    accuracy = knn_accuracy(train, train_labels, embed(backbone, test_images), test_labels, n_classes, k,
                            temperature)
    return accuracy, train


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
        return (linear(test).argmax(dim=1) == test_labels.cpu()).float().mean().item()


@torch.no_grad()
def class_predictions(backbone: nn.Module, objective: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class-head predictions (N,) on the CPU for uint8 images at the model's resolution."""
    return objective.class_logits(embed(backbone, images)).argmax(dim=1).cpu()


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    flat = labels.cpu().long() * n_classes + predictions.cpu().long()
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Recall per true class; NaN for a class with no test images."""
    return confusion.diag().double() / confusion.sum(dim=1).double()


def backbone_from_checkpoint(payload: dict, device: torch.device) -> Backbone:
    backbone = Backbone(payload["config"].model, int(payload["channels"]))
    backbone.load_state_dict(payload["backbone"])
    return backbone.to(device).eval()


def class_head_from_checkpoint(payload: dict, device: torch.device) -> nn.Module | None:
    """The checkpoint's objective when it predicts class labels (a fine-tuned or supervised run), else None."""
    config = payload["config"]
    if not hasattr(OBJECTIVES.get(config.objective), "class_logits"):
        return None
    objective = build_objective(config, n_instances=0, n_classes=len(payload["class_names"]))
    objective.load_state_dict(payload["objective"])
    return objective.to(device).eval()


def _print_class_report(confusion: torch.Tensor, class_names: tuple[str, ...]) -> None:
    recall = per_class_accuracy(confusion)
    total = confusion.sum().item()
    print(f"class-head top-1 on {total} test images: {confusion.diag().sum().item() / total:.4f}")
    width = max(len(name) for name in class_names)
    print(f"{'class':<{width}}  images  top-1  most often mistaken for")
    for i, name in enumerate(class_names):
        row = confusion[i].clone()
        row[i] = -1
        wrong = int(row.argmax())
        mistaken = f"{class_names[wrong]} ({int(confusion[i, wrong])})" if confusion[i, wrong] > 0 else "-"
        print(f"{name:<{width}}  {int(confusion[i].sum()):>6}  {recall[i].item():.3f}  {mistaken}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.evaluate",
                                     description="kNN, linear-probe and class-head accuracy of a checkpoint")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    args = parser.parse_args(argv)
    try:
        payload = load_checkpoint(args.checkpoint)
        config = payload["config"]
        data = load_dataset(config.dataset, root=args.data_root, download=args.download,
                            size=config.data_size, seed=config.seed)
        check_matches(payload, data.fingerprint, data.class_names)
        device = resolve_device(args.device)
        backbone = backbone_from_checkpoint(payload, device)
        head = class_head_from_checkpoint(payload, device)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size, n_classes = config.model.image_size, len(data.class_names)
    train_images, test_images = eval_images(data.train.images, size), eval_images(data.test.images, size)
    train, test = embed(backbone, train_images), embed(backbone, test_images)
    knn = knn_accuracy(train, data.train.labels, test, data.test.labels, n_classes, config.knn_k,
                       config.knn_temperature)
    probe = linear_probe(train, data.train.labels, test, data.test.labels, n_classes)
    print(f"{args.checkpoint}: {config.dataset}, {config.objective}, epoch {payload['epoch']}, step {payload['step']}")
    print(f"kNN top-1 (k={config.knn_k}, T={config.knn_temperature}) on {len(data.test)} test images: {knn:.4f}")
    print(f"linear-probe top-1 on frozen embeddings: {probe:.4f}")
    if head is not None:
        predictions = class_predictions(backbone, head, test_images)
        _print_class_report(confusion_matrix(predictions, data.test.labels, n_classes), data.class_names)
    if payload.get("baselines"):
        raw, random_init = payload["baselines"]
        print(f"baselines: raw pixels {raw:.4f}, random-init encoder {random_init:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
