"""`python -m core.pipeline --dataset folder:PATH --minutes 5 --out DIR`: the best model the minutes allow.

One command for a person with labelled images and a budget: the recipe (the auto recipe by default,
core/auto_recipe.py) is fitted to the data and the machine, the pretraining's throughput is timed, and
core/payoff.py says whether pretraining is expected to pay for this many labels a class and passes.
Then either
- pretraining for PRETRAIN_SHARE of the minutes (DIR/pretrain), ended early when its kNN on held-out
  training images stops helping (core/watchdog.py), and fine-tuning for what the clock has left
  (DIR/finetune), or
- supervised training from scratch for all of them (DIR/supervised).
`--pretrain always|never` overrides the expectation, which is printed either way. Every minute counts:
loading, planning and timing come out of the budget, and the data are loaded once for both stages.
DIR/pipeline.json records the choice, its reason, the stages and `model`, the checkpoint to use.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core import auto_recipe, payoff
from core.config import PRESETS, TrainConfig, preset
from core.data import DataSplits, load_dataset
from core.distributed import resolve_device
from core.recipe import FINETUNE, PRETRAIN_SHARE, recipe
from core.train import execute

RECORD = "pipeline.json"
CHOICES = ("auto", "always", "never")
LEAST_MINUTES = 0.05  # a stage that the clock left almost nothing still trains a few steps


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="fashion | digits | flowers102 | folder:PATH")
    parser.add_argument("--minutes", type=float, required=True, help="the whole budget, both stages")
    parser.add_argument("--out", type=Path, required=True, help="folder for the stages and pipeline.json")
    parser.add_argument("--preset", choices=sorted([*PRESETS, auto_recipe.NAME]), default=auto_recipe.NAME)
    parser.add_argument("--objective", default="instance", help="the pretraining objective")
    parser.add_argument("--pretrain", choices=CHOICES, default="auto",
                        help="auto: pretrain when core/payoff.py expects it to pay")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels-per-class", type=int, default=0, help="labelled images a class (0 = all)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    parser.add_argument("--data-root", type=Path, help="folder holding the dataset's files")
    parser.add_argument("--download", action="store_true", help="download the dataset if it is not on disk")
    return parser


def _base(args: argparse.Namespace) -> tuple[TrainConfig, DataSplits]:
    """The recipe's base config for the whole budget and the splits it trains on."""
    def load(size: int) -> DataSplits:
        return load_dataset(args.dataset, root=args.data_root, download=args.download, size=size, seed=args.seed)

    fixed = {"seed": args.seed, "labels_per_class": args.labels_per_class}
    if args.preset == auto_recipe.NAME:
        base, data = auto_recipe.plan(args.dataset, resolve_device(args.device).type, args.minutes, load)
        return base.with_overrides(**fixed), data
    base = preset(args.preset).with_overrides(dataset=args.dataset, device=args.device, minutes=args.minutes, **fixed)
    return base, load(base.data_size)


def _left(started: float, minutes: float) -> float:
    return max(LEAST_MINUTES, minutes - (time.perf_counter() - started) / 60)


def _stage(config: TrainConfig, out: Path, data: DataSplits, args: argparse.Namespace) -> int:
    same = config.data_size == data.train.images.shape[-1] or not config.data_size
    return execute(config, out=out, data_root=args.data_root, download=args.download, data=data if same else None)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        base, data = _base(args)
        pretraining = recipe(base, args.objective, minutes=args.minutes * PRETRAIN_SHARE, stop_when_not_helping=True)
        expected = payoff.for_run(pretraining, data)
    except (ValueError, RuntimeError, OSError) as exc:  # DatasetError and config validation are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pretrain = expected.pretrain if args.pretrain == "auto" else args.pretrain == "always"
    print(auto_recipe.describe(base, args.preset))
    print(f"expected: {expected.reason}")
    plan = "pretraining, then fine-tuning" if pretrain else "supervised training from scratch"
    print(f"pipeline ({args.pretrain}): {plan}, {args.minutes:g} min in all")
    record = {"dataset": args.dataset, "minutes": args.minutes, "choice": args.pretrain, "pretrain": pretrain,
              "expected_to_pay": expected.pretrain, "reason": expected.reason,
              "labels_per_class": expected.labels_per_class, "passes": expected.passes, "stages": []}
    stages = [("pretrain", pretraining.with_overrides(minutes=_left(started, args.minutes * PRETRAIN_SHARE))),
              ("finetune", None)] if pretrain else [("supervised", None)]
    for name, config in stages:
        if config is None:
            config = (recipe(pretraining, stage=FINETUNE, init_from=str(args.out / "pretrain" / "last.pt"))
                      if name == "finetune" else recipe(base, "supervised"))
            config = config.with_overrides(minutes=_left(started, args.minutes))
        code = _stage(config, args.out / name, data, args)
        record["stages"].append({"stage": name, "folder": str(args.out / name), "exit": code})
        if code:
            break
    else:
        record["model"] = str(args.out / stages[-1][0] / "last.pt")
    record["spent_minutes"] = (time.perf_counter() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RECORD).write_text(json.dumps(record, indent=1))
    print(f"pipeline: {record['spent_minutes']:.1f} min; model {record.get('model', 'none (a stage did not finish)')}")
    return code


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
