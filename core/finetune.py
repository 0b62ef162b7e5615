"""`python -m core.finetune CKPT --out DIR`: stage 2, supervised fine-tuning of a pretrained backbone.

The pretrained instance head is dropped, a class head is added, the position embedding is
interpolated to `--resolution`, and the run trains on the class labels with the recipe of
core/plan/recipe.py (stage "finetune"). A stopped fine-tuning run resumes with `python -m core.train --resume`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core import console
from core.config import DEVICES, TrainConfig
from core.data.cache import DatasetCache
from core.plan.recipe import FINETUNE, describe, recipe
from core.trainer.checkpoint import Checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = console.parser("core.finetune", __doc__)
    parser.add_argument("checkpoint", type=Path, help="a pretrained run's checkpoint (e.g. runs/x/last.pt)")
    parser.add_argument("--out", type=Path, required=True, help="the fine-tuning run's folder")
    parser.add_argument("--resolution", type=console.at_least(1), help="input side in pixels (default: the "
                        "pretraining's)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=console.at_least(1), help="default: a quarter of the pretraining's epochs")
    length.add_argument("--minutes", type=console.positive,
                        help="a time budget instead of epochs: the run times its first steps, then fixes its epochs "
                             "to end on time")
    parser.add_argument("--batch-size", type=console.at_least(2), help="default: the pretraining's")
    parser.add_argument("--lr", type=console.positive, help="default: the pretraining's")
    parser.add_argument("--seed", type=console.at_least(0), help="default: the pretraining's")
    parser.add_argument("--labels-per-class", type=console.labels_per_class,
                        help=f"{console.LABELS_HELP}; default: all")
    parser.add_argument("--device", choices=DEVICES, help="default: the pretraining's, auto")
    console.add_data_flags(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    pretrained = Checkpoint.load(args.checkpoint).config
    overrides = {name: getattr(args, name) for name in ("batch_size", "lr", "seed", "device", "minutes",
                                                   "labels_per_class")
                 if getattr(args, name) is not None}
    return recipe(pretrained, stage=FINETUNE, init_from=str(args.checkpoint), resolution=args.resolution,
                  epochs=args.epochs, **overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as exc:  # CheckpointError and config validation are ValueErrors
        return console.error(str(exc))
    print(describe(config, "fine-tuning"))
    return console.train_one(config, args.out, DatasetCache(args.data_root, args.download))


if __name__ == "__main__":
    sys.exit(main())
