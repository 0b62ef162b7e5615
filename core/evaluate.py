"""`python -m core.evaluate CKPT`: kNN, linear-probe and class-head accuracy of a checkpoint, printed.

The measures themselves are core.metrics'; this module only loads, runs and prints.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from core import console
from core.data import labels
from core.data.sources import load_dataset
from core.metrics import (
    accuracy,
    balanced_accuracy,
    confusion_accuracy,
    confusion_matrix,
    knn_predict,
    linear_probe,
    per_class_recall,
    unequal,
)
from core.model.backbone import embed
from core.trainer.checkpoint import Checkpoint
from core.trainer.distributed import resolve_device


def _print_class_report(confusion: torch.Tensor, class_names: tuple[str, ...]) -> None:
    recall = per_class_recall(confusion)
    print(f"class-head top-1 on {confusion.sum().item()} test images: {confusion_accuracy(confusion):.4f}, "
          f"balanced accuracy (mean recall over classes) {balanced_accuracy(confusion):.4f}")
    width = max(len(name) for name in class_names)
    print(f"{'class':<{width}}  images  recall  most often mistaken for")
    for i, name in enumerate(class_names):
        row = confusion[i].clone()
        row[i] = -1
        wrong = int(row.argmax())
        mistaken = f"{class_names[wrong]} ({int(confusion[i, wrong])})" if confusion[i, wrong] > 0 else "-"
        print(f"{name:<{width}}  {int(confusion[i].sum()):>6}  {recall[i].item():6.3f}  {mistaken}")


def main(argv: list[str] | None = None) -> int:
    parser = console.parser("core.evaluate", __doc__)
    parser.add_argument("checkpoint", type=Path, help="a run's checkpoint (e.g. runs/x/last.pt); its dataset is loaded")
    console.add_data_flags(parser)
    console.add_device(parser)
    args = parser.parse_args(argv)
    try:
        checkpoint = Checkpoint.load(args.checkpoint)
        config = checkpoint.config
        data = load_dataset(config.dataset, root=args.data_root, download=args.download,
                            size=config.data_size, seed=config.seed)
        checkpoint.check_matches(data)
        device = resolve_device(args.device)
        backbone = checkpoint.build_backbone(device)
        head = checkpoint.class_head(device)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size, n_classes = config.model.image_size, len(data.class_names)
    # A run that saw K labels per class is measured with those K: its kNN and probe learn from them only.
    labelled = labels.labelled_index(data.train.labels, config.labels_per_class, config.seed)
    train = embed(backbone, data.train.resized(size)[labelled])
    test = embed(backbone, data.test.resized(size))
    train_labels = data.train.labels[labelled]
    votes = knn_predict(train, train_labels, test, n_classes, config.knn_k, config.knn_temperature)
    knn = accuracy(votes.argmax(dim=1), data.test.labels)
    unequal_classes = unequal(torch.bincount(data.test.labels, minlength=n_classes))
    probe = linear_probe(train, train_labels, test, data.test.labels, n_classes)
    print(f"{args.checkpoint}: {config.dataset}, {config.objective}, epoch {checkpoint.epoch}, step {checkpoint.step}"
          + (f", {labels.describe(config)} ({len(labelled)} labelled images)" if config.labels_per_class else ""))
    print(f"kNN top-1 (k={config.knn_k}, T={config.knn_temperature}) on {len(data.test)} test images: {knn:.4f}")
    if unequal_classes:  # unequal classes: what a minority class gets counts as much as the majority's
        knn_confusion = confusion_matrix(votes.argmax(dim=1), data.test.labels, n_classes)
        print(f"kNN balanced accuracy (mean recall over classes): {balanced_accuracy(knn_confusion):.4f}")
    print(f"linear-probe top-1 on frozen embeddings: {probe:.4f}")
    if head is not None:
        with torch.no_grad():
            predictions = head.class_logits(test).argmax(dim=1)
        _print_class_report(confusion_matrix(predictions, data.test.labels, n_classes), data.class_names)
    if checkpoint.baselines:
        raw, random_init, *balanced = checkpoint.baselines
        also = f" (balanced {balanced[0]:.4f} and {balanced[1]:.4f})" if balanced else ""
        print(f"baselines: raw pixels {raw:.4f}, random-init encoder {random_init:.4f}{also}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
