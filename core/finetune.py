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
from core.config import TrainConfig
from core.data.cache import DatasetCache
from core.plan.recipe import FINETUNE, describe, recipe
from core.trainer.checkpoint import Checkpoint


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="a pretrained run's checkpoint (e.g. runs/x/last.pt)")
    parser.add_argument("--out", type=Path, required=True, help="fine-tuning run folder")
    parser.add_argument("--resolution", type=int, help="input side in pixels (default: the pretraining one)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, help="default: a quarter of the pretraining epochs")
    length.add_argument("--minutes", type=float,
                        help="a time budget: the run times its first steps, then fixes its epochs to end on time")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="default: the pretraining lr")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--labels-per-class", type=int,
                        help="train on only this many labelled images per class (drawn with the seed; default: all)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--data-root", type=Path, help="folder holding the dataset's files")
    parser.add_argument("--download", action="store_true", help="download the dataset if it is not on disk")
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
