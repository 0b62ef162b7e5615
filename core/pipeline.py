"""`python -m core.pipeline --dataset folder:PATH --minutes 5 --out DIR`: the best model the minutes allow.

One command for a person with labelled images and a budget. The recipe (the preset tuned on the dataset, else
the auto recipe: core/plan/presets.py) is fitted to the data and the machine, and core/plan/payoff.py says
whether pretraining is expected to pay for this many labels a class and passes. Then the pipeline
(core/plan/pipeline.py) trains its stages in DIR: either pretraining (DIR/pretrain), then fine-tuning from its
best held-out epoch (DIR/finetune) or, when none beat the random init, supervised training from scratch
(DIR/supervised) for what the clock has left; or supervised training from scratch for all of the minutes
(DIR/supervised). `--pretrain always|never` overrides the expectation, which is printed either way. Every
minute counts: loading, planning and timing come out of the budget. DIR/pipeline.json records the request,
the plan and why, every stage and how it ended, and `model`, the checkpoint to use.

`python -m core.pipeline --resume DIR` continues a pipeline that was stopped (Ctrl-C), failed or was killed,
here or in the app: the unfinished stage resumes from its last checkpoint with what is left of its fixed
length, and a pretraining that then ends goes on to the stage after it with what is left of the minutes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core import console
from core import events as ev
from core.data.cache import DatasetCache
from core.objectives import OBJECTIVES
from core.plan.pipeline import REFUSED, Pipeline
from core.plan.presets import AUTO, RECIPES, default_recipe, preset
from core.plan.request import CHOICES, Request
from core.runs.folder import RunFolder


def build_parser() -> argparse.ArgumentParser:
    parser = console.parser("core.pipeline", __doc__)
    parser.add_argument("--dataset", type=console.dataset, help=console.DATASET_HELP)
    parser.add_argument("--minutes", type=console.positive, help="the whole budget, every stage")
    parser.add_argument("--out", type=Path, help="the run folder: its stages, pipeline.json and model.pt")
    parser.add_argument("--resume", type=Path, metavar="RUN",
                        help="continue the stopped pipeline in RUN (the other choices are its own)")
    parser.add_argument("--preset", choices=RECIPES,
                        help="the recipe; default: cpu-quick for fashion (tuned on it), auto for any other dataset")
    parser.add_argument("--objective", choices=sorted(OBJECTIVES), default="instance",
                        help="the pretraining objective")
    parser.add_argument("--pretrain", choices=CHOICES, default="auto",
                        help="auto: pretrain when core/plan/payoff.py expects it to pay")
    parser.add_argument("--seed", type=console.at_least(0), default=0,
                        help="its runs' seed; it also draws a folder's test split")
    parser.add_argument("--labels-per-class", type=console.labels_per_class, default="all", help=console.LABELS_HELP)
    console.add_device(parser)
    console.add_data_flags(parser)
    return parser


def request_from_args(args: argparse.Namespace) -> Request:
    name = args.preset or default_recipe(args.dataset)
    base = preset(name) if name != AUTO else preset("cpu-quick")  # auto reads only what is set below
    base = base.with_overrides(dataset=args.dataset, objective=args.objective, seed=args.seed,
                               labels_per_class=args.labels_per_class, device=args.device)
    return Request(base, name, args.pretrain, args.minutes)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is None and None in (args.dataset, args.minutes, args.out):
        parser.error("--dataset, --minutes and --out are required (or --resume DIR)")
    datasets = DatasetCache(args.data_root, args.download)
    try:
        if args.resume is not None:
            pipeline = Pipeline.open(RunFolder(args.resume), datasets.get)
            if pipeline.finished:
                raise ValueError(f"the pipeline in {args.resume} has finished: its model is {pipeline.folder.model()}")
            print(f"pipeline: resuming {args.resume}, {pipeline.spent():.2f} of {pipeline.record['minutes']:g} min "
                  "spent")
        else:
            pipeline = Pipeline.start(RunFolder(args.out), request_from_args(args), datasets.get)
    except (ValueError, OSError) as exc:
        return console.error(str(exc))
    ended = console.interruptible(lambda stop: pipeline.run(console.Console(pipeline.folder.path), stop))
    if ended.reason == ev.STOPPED:
        print(f"resume with: python -m core.pipeline --resume {pipeline.folder.path}")
        return console.STOPPED
    if ended.reason not in (ev.COMPLETED, REFUSED):
        print(f"continue with: python -m core.pipeline --resume {pipeline.folder.path}")
    return {ev.COMPLETED: console.OK, REFUSED: console.REFUSED}.get(ended.reason, console.TRAINING_FAILED)


if __name__ == "__main__":
    sys.exit(main())
