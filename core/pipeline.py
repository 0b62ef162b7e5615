"""`python -m core.pipeline --dataset folder:PATH --minutes 5 --out DIR`: the best model the minutes allow.

One command for a person with labelled images and a budget: the recipe (the auto recipe by default,
core/auto_recipe.py) is fitted to the data and the machine, and core/payoff.py says whether pretraining
is expected to pay for this many labels a class and passes. Then the stages core/stages.py plans:
either pretraining (DIR/pretrain), then fine-tuning from its best held-out epoch (DIR/finetune) or,
when none beat the random init, supervised training from scratch (DIR/supervised) for what the clock
has left; or supervised training from scratch for all of the minutes (DIR/supervised).
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

from core import auto_recipe, payoff, stages
from core.config import PRESETS, TrainConfig, preset
from core.data import load_dataset
from core.distributed import resolve_device
from core.recipe import PRETRAIN_SHARE
from core.runs import METRICS
from core.splits import DataSplits
from core.train import execute

RECORD = "pipeline.json"
CHOICES = ("auto", "always", "never")
STAGES = (stages.PRETRAIN, stages.FINETUNE_STAGE, stages.SUPERVISED)  # DIR's subfolders, one per stage that ran


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
        plan = auto_recipe.plan(args.dataset, resolve_device(args.device).type, args.minutes, load)
        return plan.config.with_overrides(**fixed), plan.data
    base = preset(args.preset).with_overrides(dataset=args.dataset, device=args.device, minutes=args.minutes, **fixed)
    return base, load(base.data_size)


def _run_stage(name: str, config: TrainConfig, data: DataSplits, args: argparse.Namespace, record: dict) -> int:
    """Train one stage into DIR/name on the loaded splits (when they are at its stored side) and record it."""
    same = config.data_size == data.train.images.shape[-1] or not config.data_size
    code = execute(config, out=args.out / name, data_root=args.data_root, download=args.download,
                   data=data if same else None)
    record["stages"].append({"stage": name, "folder": str(args.out / name), "exit": code})
    return code


def _refuse_a_used_folder(out: Path) -> None:
    """A stage's log appends (a resumed run continues it): a second pipeline in the same folder would mix
    two runs' events, so it is refused rather than overwritten (nothing is lost)."""
    used = [str(out / name) for name in STAGES if (out / name / METRICS).exists()]
    if used or (out / RECORD).exists():
        raise ValueError(f"{out} already holds a pipeline run ({', '.join(used) or RECORD}): choose another --out")


def _train_stages(args: argparse.Namespace, base: TrainConfig, pretraining: TrainConfig | None, data: DataSplits,
                  started: float, record: dict) -> tuple[int, str]:
    """Pretraining (when given) and the stage core/stages.py says follows it, or supervised training from
    scratch; each stage gets what the clock started at `started` has left. Returns (exit code, last stage)."""
    name, config = stages.SUPERVISED, stages.from_scratch(base, args.minutes)
    if pretraining is not None:
        first = pretraining.with_overrides(minutes=stages.minutes_left(started, args.minutes * PRETRAIN_SHARE))
        if code := _run_stage(stages.PRETRAIN, first, data, args, record):
            return code, stages.PRETRAIN
        then = stages.after_pretraining(first, base, args.out / stages.PRETRAIN, args.minutes)
        print(f"pipeline: {then.words}")
        name, config, record["pretrained_best_epoch"] = then.stage, then.config, then.best_epoch
    left = stages.minutes_left(started, args.minutes)
    return _run_stage(name, config.with_overrides(minutes=left), data, args, record), name


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        _refuse_a_used_folder(args.out)
        base, data = _base(args)
        pretraining = stages.pretraining(base, args.objective, args.minutes)
        expected = payoff.for_run(pretraining, data)
    except (ValueError, RuntimeError, OSError) as exc:  # DatasetError and config validation are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pretrain = expected.pretrain if args.pretrain == "auto" else args.pretrain == "always"
    print(auto_recipe.describe(base, args.preset))
    print(f"expected: {expected.reason}")
    print(f"pipeline ({args.pretrain}): {stages.plan_words(pretrain, args.minutes)}")
    record = {"dataset": args.dataset, "minutes": args.minutes, "choice": args.pretrain, "pretrain": pretrain,
              "expected_to_pay": expected.pretrain, "reason": expected.reason,
              "labels_per_class": expected.labels_per_class, "passes": expected.passes, "stages": []}
    code, name = _train_stages(args, base, pretraining if pretrain else None, data, started, record)
    if not code:
        record["model"] = str(args.out / name / "last.pt")
    record["spent_minutes"] = (time.perf_counter() - started) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / RECORD).write_text(json.dumps(record, indent=1))
    print(f"pipeline: {record['spent_minutes']:.1f} min; model {record.get('model', 'none (a stage did not finish)')}")
    return code


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
