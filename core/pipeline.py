"""`python -m core.pipeline --dataset folder:PATH --minutes 5 --out DIR`: the best model the minutes allow.

One command for a person with labelled images and a budget: the recipe (the auto recipe by default,
core/auto_recipe.py) is fitted to the data and the machine, and core/payoff.py says whether pretraining
is expected to pay for this many labels a class and passes. Then the stages core/stages.py plans:
either pretraining (DIR/pretrain), then fine-tuning from its best held-out epoch (DIR/finetune) or,
when none beat the random init, supervised training from scratch (DIR/supervised) for what the clock
has left; or supervised training from scratch for all of the minutes (DIR/supervised).
`--pretrain always|never` overrides the expectation, which is printed either way. Every minute counts:
loading, planning and timing come out of the budget, and the data are loaded once for both stages.
DIR/pipeline.json records the choice, its reason, the base recipe, the stages (written before each one
starts, so that even a killed run leaves it) and `model`, the checkpoint to use.

`python -m core.pipeline --resume DIR` continues a pipeline that was stopped (Ctrl-C), failed or was
killed: the unfinished stage resumes from its last checkpoint with what is left of its fixed length
(core.train's resume), and a pretraining that then ends goes on to the stage after it with what is left
of the pipeline's minutes.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core.config import PRESETS, TrainConfig, from_json, preset, to_json
from core.data.sources import load_dataset
from core.data.splits import DataSplits
from core.plan import auto as auto_recipe
from core.plan import payoff, stages
from core.plan.recipe import PRETRAIN_SHARE
from core.runs.folder import CHECKPOINT, METRICS
from core.train import STOPPED, execute
from core.trainer.checkpoint import Checkpoint
from core.trainer.distributed import resolve_device

RECORD = "pipeline.json"
CHOICES = ("auto", "always", "never")
STAGES = (stages.PRETRAIN, stages.FINETUNE_STAGE, stages.SUPERVISED)  # DIR's subfolders, one per stage that ran


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="fashion | digits | flowers102 | folder:PATH")
    parser.add_argument("--minutes", type=float, help="the whole budget, both stages")
    parser.add_argument("--out", type=Path, help="folder for the stages and pipeline.json")
    parser.add_argument("--resume", type=Path, metavar="DIR",
                        help="continue the stopped pipeline in DIR (the other choices are its own)")
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


class Record:
    """DIR/pipeline.json, written when the plan is made and before and after every stage, with the minutes
    spent so far (counted across resumes): a pipeline stopped, failed or killed can be resumed from it."""

    def __init__(self, out: Path, fields: dict, started: float):
        self.out, self.fields, self.started = out, fields, started
        self._spent_before = float(fields.get("spent_minutes", 0.0))

    @classmethod
    def unfinished(cls, out: Path, started: float) -> Record:
        """The record of the pipeline in `out` that has a stage left to train, else ValueError."""
        if not (out / RECORD).is_file():
            raise ValueError(f"{out} holds no pipeline run ({RECORD}) to resume")
        fields = json.loads((out / RECORD).read_text())
        if "model" in fields:
            raise ValueError(f"the pipeline in {out} has finished: its model is {fields['model']}")
        if "base" not in fields or not fields["stages"]:
            raise ValueError(f"the pipeline in {out} stopped before its first stage: start it again")
        return cls(out, fields, started)

    def left(self) -> float:
        """The minutes of the budget not spent before this process started."""
        return max(0.0, self.fields["minutes"] - self._spent_before)

    def write(self) -> None:
        self.fields["spent_minutes"] = self._spent_before + (time.perf_counter() - self.started) / 60
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / RECORD).write_text(json.dumps(self.fields, indent=1))


def _execute(config: TrainConfig, entry: dict, args: argparse.Namespace, record: Record,
             data: DataSplits | None = None, resume: Path | None = None) -> int:
    """Train one stage into `entry`'s folder, the entry written before (exit None: training, or the process
    was killed) and after."""
    entry["exit"] = None
    record.write()
    entry["exit"] = execute(config, out=Path(entry["folder"]), data_root=args.data_root, download=args.download,
                            data=data, resume=resume, resume_with=f"python -m core.pipeline --resume {record.out}")
    record.write()
    return entry["exit"]


def _run_stage(name: str, config: TrainConfig, data: DataSplits | None, args: argparse.Namespace,
               record: Record) -> int:
    """Train one stage into DIR/name on the loaded splits (when they are at its stored side) and record it."""
    same = data is not None and (config.data_size == data.train.images.shape[-1] or not config.data_size)
    record.fields["stages"].append(entry := {"stage": name, "folder": str(record.out / name)})
    return _execute(config, entry, args, record, data if same else None)


def _refuse_a_used_folder(out: Path) -> None:
    """A stage's log appends (a resumed run continues it): a second pipeline in the same folder would mix
    two runs' events, so it is refused rather than overwritten (nothing is lost)."""
    used = [str(out / name) for name in STAGES if (out / name / METRICS).exists()]
    if used or (out / RECORD).exists():
        raise ValueError(f"{out} already holds a pipeline run ({', '.join(used) or RECORD}): choose another --out "
                         f"(or continue it: --resume {out})")


def _train_stages(args: argparse.Namespace, base: TrainConfig, pretraining: TrainConfig | None, data: DataSplits,
                  record: Record) -> tuple[int, str]:
    """Pretraining (when given) and the stage core/stages.py says follows it, or supervised training from
    scratch; each stage gets what the record's clock has left. Returns (exit code, last stage)."""
    name, config = stages.SUPERVISED, stages.from_scratch(base, args.minutes)
    if pretraining is not None:
        first = pretraining.with_overrides(minutes=stages.minutes_left(record.started, args.minutes * PRETRAIN_SHARE))
        if code := _run_stage(stages.PRETRAIN, first, data, args, record):
            return code, stages.PRETRAIN
        name, config = _after_pretraining(first, base, record, args.minutes)
    left = stages.minutes_left(record.started, args.minutes)
    return _run_stage(name, config.with_overrides(minutes=left), data, args, record), name


def _after_pretraining(pretrained: TrainConfig, base: TrainConfig, record: Record,
                       minutes: float) -> tuple[str, TrainConfig]:
    """The stage core/stages.py says follows the pretraining in DIR/pretrain, said and recorded."""
    then = stages.after_pretraining(pretrained, base, record.out / stages.PRETRAIN, minutes)
    print(f"pipeline: {then.words}")
    record.fields["pretrained_best_epoch"] = then.best_epoch
    return then.stage, then.config


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.resume is not None:
        return resume(args, started)
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
    record = Record(args.out, {
        "dataset": args.dataset, "minutes": args.minutes, "choice": args.pretrain, "pretrain": pretrain,
        "expected_to_pay": expected.pretrain, "reason": expected.reason, "labels_per_class": expected.labels_per_class,
        "passes": expected.passes, "base": json.loads(to_json(base)), "stages": []}, started)
    code, name = _train_stages(args, base, pretraining if pretrain else None, data, record)
    return _end(record, code, name)


def _end(record: Record, code: int, name: str) -> int:
    """Record the model (when the last stage finished) and the minutes spent; say how to go on otherwise."""
    if not code:
        record.fields["model"] = str(record.out / name / CHECKPOINT)
    record.write()
    model = record.fields.get("model", "none (a stage did not finish)")
    print(f"pipeline: {record.fields['spent_minutes']:.1f} min; model {model}")
    if code not in (0, STOPPED):  # a stopped stage has said it (execute's resume line)
        print(f"continue with: python -m core.pipeline --resume {record.out}")
    return code


def resume(args: argparse.Namespace, started: float) -> int:
    """Continue the pipeline in `args.resume`: its unfinished stage from its checkpoint (with what is left of
    its fixed length), then the stage after a pretraining, with what is left of the pipeline's minutes."""
    try:
        record = Record.unfinished(args.resume, started)
        last = record.fields["stages"][-1]
        checkpoint = Path(last["folder"]) / CHECKPOINT
        if last["exit"] != 0 and not checkpoint.is_file():
            raise ValueError(f"its {last['stage']} stage saved no checkpoint to resume from ({checkpoint}): "
                             "start a new pipeline")
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    minutes, name = record.left(), last["stage"]
    print(f"pipeline: resuming {record.out} at its {name} stage, {minutes:.2f} of {record.fields['minutes']:g} "
          "min left")
    code, saved = 0, Checkpoint.load(checkpoint).config  # the stage's config, its budget fixed into epochs
    if last["exit"] != 0:
        code = _execute(saved, last, args, record, resume=checkpoint)
    if not code and name == stages.PRETRAIN:
        base = from_json(json.dumps(record.fields["base"]))
        name, config = _after_pretraining(saved, base, record, minutes)
        code = _run_stage(name, config.with_overrides(minutes=stages.minutes_left(started, minutes)), None, args,
                          record)
    return _end(record, code, name)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is None and None in (args.dataset, args.minutes, args.out):
        parser.error("--dataset, --minutes and --out are required (or --resume DIR)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
