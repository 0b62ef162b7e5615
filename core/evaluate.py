"""Embeddings, the weighted kNN monitor, and `python -m core.evaluate CKPT`.

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


def backbone_from_checkpoint(payload: dict, device: torch.device) -> Backbone:
    backbone = Backbone(payload["config"].model, int(payload["channels"]))
    backbone.load_state_dict(payload["backbone"])
    return backbone.to(device).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.evaluate", description="kNN top-1 of a checkpoint")
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
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = config.model.image_size
    accuracy, _ = knn_eval(backbone, eval_images(data.train.images, size), data.train.labels,
                           eval_images(data.test.images, size), data.test.labels, len(data.class_names),
                           config.knn_k, config.knn_temperature)
    print(f"{args.checkpoint}: {config.dataset}, {config.objective}, epoch {payload['epoch']}, step {payload['step']}")
    print(f"kNN top-1 (k={config.knn_k}, T={config.knn_temperature}) on {len(data.test)} test images: {accuracy:.4f}")
    if payload.get("baselines"):
        raw, random_init = payload["baselines"]
        print(f"baselines: raw pixels {raw:.4f}, random-init encoder {random_init:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
