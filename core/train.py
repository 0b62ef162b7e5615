"""`python -m core.train`: train one stage from the command line (or under torchrun for DDP); also resumes any run.

The recipe is the preset tuned on the dataset (cpu-quick on Fashion-MNIST), else the auto recipe fitted to the
data, the machine and the budget (core/plan/presets.py says which); `--objective` trains another objective on
it through core/plan/recipe.py. For the best model a budget allows, stages and all, use core.pipeline.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from core import console
from core.config import TrainConfig
from core.data.cache import DatasetCache
from core.objectives import OBJECTIVES
from core.plan import auto, payoff
from core.plan.presets import AUTO, RECIPES, default_recipe, preset
from core.plan.recipe import describe, recipe
from core.trainer.checkpoint import Checkpoint
from core.trainer.distributed import resolve_device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.train", description=__doc__)
    parser.add_argument("--preset", choices=RECIPES,
                        help="default: cpu-quick for fashion (tuned on it), auto for any other dataset; "
                             "ignored with --resume")
    parser.add_argument("--dataset", help="fashion | digits | flowers102 | folder:PATH (default: the preset's, "
                                          "fashion)")
    parser.add_argument("--objective", choices=sorted(OBJECTIVES))
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoint last.pt, metrics.jsonl")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int)
    length.add_argument("--minutes", type=float,
                        help="a time budget: the run times its first steps, then fixes its epochs to end on time")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--labels-per-class", type=int,
                        help="only this many training images per class keep their label (drawn with the seed; "
                             "default: all): a supervised run trains on them, and the kNN votes with them")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step (GPU runs)")
    parser.add_argument("--data-root", type=Path, help="folder holding the dataset's files")
    parser.add_argument("--download", action="store_true", help="download the dataset if it is not on disk")
    parser.add_argument("--resume", type=Path,
                        help="checkpoint to continue from; its config is used (--epochs may extend it)")
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    overrides = {name: getattr(args, name) for name in ("dataset", "batch_size", "lr", "seed", "device", "minutes",
                                                        "labels_per_class") if getattr(args, name) is not None}
    return {**overrides, **({"compile": True} if args.compile else {})}


def config_from_args(args: argparse.Namespace, datasets: DatasetCache) -> TrainConfig:
    """The recipe for --preset (or the dataset's default) and --objective with the flags given applied; with
    --resume, the checkpoint's own config (only --epochs and the bookkeeping flags may change a resumed run)."""
    overrides = _overrides(args)
    if args.resume:
        saved = Checkpoint.load(args.resume).config
        changes = {**overrides, **({"objective": args.objective} if args.objective else {}),
                   **({"epochs": args.epochs} if args.epochs else {})}
        config = saved.with_overrides(**changes)  # a changed recipe is refused by Checkpoint.check_resumable
        print(describe(config, "resumed"))
        return config
    name = args.preset or default_recipe(args.dataset or "fashion")
    if name != AUTO:
        config = recipe(preset(name), args.objective, epochs=args.epochs, **overrides)
        print(describe(config, name))
        return config
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("the auto recipe times this machine to pick its resolution, which ranks would do "
                         "differently: under torchrun, choose a preset")
    asked = TrainConfig(dataset=args.dataset or "fashion", seed=args.seed or 0)
    fitted = auto.plan(asked.dataset, resolve_device(args.device or "auto").type, args.minutes or 0.0,
                       lambda size: datasets.get(asked.with_overrides(data_size=size)))
    print(describe(fitted.config, AUTO))
    config = recipe(fitted.config, args.objective, epochs=args.epochs, **overrides)
    if payoff.applies(config):
        expected = payoff.for_run(config, fitted.data, fitted.timing)
        print(f"expected: {expected.reason}; python -m core.pipeline follows it")
    return config


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    datasets = DatasetCache(args.data_root, args.download)
    try:
        config = config_from_args(args, datasets)
    except (ValueError, RuntimeError, OSError) as exc:  # CheckpointError and DatasetError are ValueErrors
        return console.error(str(exc))
    return console.train_one(config, args.out, datasets, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
