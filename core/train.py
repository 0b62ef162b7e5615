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
from core.config import DEVICES, TrainConfig
from core.data.cache import DatasetCache
from core.objectives import OBJECTIVES
from core.plan import auto, payoff
from core.plan.presets import AUTO, RECIPES, default_recipe, preset
from core.plan.recipe import describe, recipe
from core.runs.folder import StageFolder
from core.trainer.checkpoint import Checkpoint
from core.trainer.distributed import resolve_device


def build_parser() -> argparse.ArgumentParser:
    parser = console.parser("core.train", __doc__)
    unset = argparse.SUPPRESS  # a flag not given changes nothing: the recipe's value stands, a resumed run's too
    parser.add_argument("--out", type=Path, required=True,
                        help="the run folder: config.json, metrics.jsonl, last.pt, and model.pt once it completes")
    parser.add_argument("--preset", choices=RECIPES, default=unset,
                        help="the recipe; default: cpu-quick for fashion (tuned on it), auto for any other dataset")
    parser.add_argument("--config", type=Path, metavar="CONFIG_JSON", default=unset,
                        help="a run's config.json: train that recipe again (the flags given change it)")
    parser.add_argument("--dataset", type=console.dataset, default=unset, help=f"{console.DATASET_HELP}; "
                        "default: fashion")
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default=unset,
                        help="default: the recipe's, instance")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=console.at_least(1), default=unset, help="default: the recipe's")
    length.add_argument("--minutes", type=console.positive, default=unset,
                        help="a time budget instead of epochs: the run times its first steps, then fixes its epochs "
                             "to end on time")
    parser.add_argument("--batch-size", type=console.at_least(2), default=unset, help="default: the recipe's")
    parser.add_argument("--lr", type=console.positive, default=unset, help="default: the recipe's")
    parser.add_argument("--seed", type=console.at_least(0), default=unset, help="default: 0 (it also draws the "
                        "training subset and a folder's test split)")
    parser.add_argument("--labels-per-class", type=console.labels_per_class, default=unset,
                        help=f"{console.LABELS_HELP}; default: all (a supervised run trains on them, the kNN votes "
                             "with them)")
    parser.add_argument("--device", choices=DEVICES, default=unset, help="default: auto (a GPU when there is one)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step (GPU runs)")
    console.add_data_flags(parser)
    parser.add_argument("--resume", type=Path, metavar="RUN_OR_CHECKPOINT", default=unset,
                        help="continue a stopped run (its folder, or a checkpoint): its own config, --epochs may "
                             "extend it")
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    overrides = {name: getattr(args, name) for name in ("dataset", "batch_size", "lr", "seed", "device", "minutes",
                                                        "labels_per_class") if hasattr(args, name)}
    return {**overrides, **({"compile": True} if args.compile else {})}


def _resumed(path: Path) -> Path:
    """A run folder's checkpoint, or the checkpoint named."""
    return StageFolder(path).last if path.is_dir() else path


def config_from_args(args: argparse.Namespace, datasets: DatasetCache) -> TrainConfig:
    """The recipe for --preset (or the dataset's default) and --objective with the flags given applied; with
    --resume, the checkpoint's own config (only --epochs and the bookkeeping flags may change a resumed run)."""
    overrides, objective, epochs = _overrides(args), getattr(args, "objective", None), getattr(args, "epochs", None)
    if hasattr(args, "resume"):
        saved = Checkpoint.load(_resumed(args.resume)).config
        changes = {**overrides, **({"objective": objective} if objective else {}),
                   **({"epochs": epochs} if epochs else {})}
        config = saved.with_overrides(**changes)  # a changed recipe is refused by Checkpoint.check_resumable
        print(describe(config, "resumed"))
        return config
    if hasattr(args, "config"):
        recorded = StageFolder(args.config.parent).config() if args.config.is_file() else None
        if recorded is None:
            raise ValueError(f"{args.config} is not a run's config.json this version can read")
        config = recipe(recorded, objective, epochs=epochs, **overrides)
        print(describe(config, f"{args.config}'s"))
        return config
    name = getattr(args, "preset", None) or default_recipe(getattr(args, "dataset", "fashion"))
    if name != AUTO:
        config = recipe(preset(name), objective, epochs=epochs, **overrides)
        print(describe(config, name))
        return config
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("the auto recipe times this machine to pick its resolution, which ranks would do "
                         "differently: under torchrun, choose a preset")
    asked = TrainConfig(dataset=getattr(args, "dataset", "fashion"), seed=getattr(args, "seed", 0))
    fitted = auto.plan(asked.dataset, resolve_device(getattr(args, "device", "auto")).type,
                       getattr(args, "minutes", 0.0), lambda size: datasets.get(asked.with_overrides(data_size=size)))
    print(describe(fitted.config, AUTO))
    config = recipe(fitted.config, objective, epochs=epochs, **overrides)
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
    resume = _resumed(args.resume) if hasattr(args, "resume") else None
    return console.train_one(config, args.out, datasets, resume=resume)


if __name__ == "__main__":
    sys.exit(main())
