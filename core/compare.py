"""`python -m core.compare`: the paper's comparison, at equal compute, over seeds, labels and budgets.

Variants (core/study/variants.py): supervised from scratch; IDMM -> fine-tune; contrastive -> fine-tune; IDMM
without CutMix; IDMM without label smoothing; and the CNN a person would pick instead (ResNet-18). Every arm
trains on the recipe core.pipeline trains on the dataset (cpu-quick on Fashion-MNIST, the auto recipe fitted
to the data, the machine and the first budget's minutes anywhere else: a folder of photos compares at the
side the pipeline would train), through the same pipeline driver.
Compute is equalised as *views seen*, so a slow or busy machine changes the wall-clock but never the
result. `--minutes` converts to views with a throughput measured on this machine before the first runs
(kept in OUT/calibration.json); `--views` sets the budget directly. The CNN's views cost more: its
budget is the same minutes, through its cost per view measured beside the ViT's.

`--labels-per-class 5,20,all` lets fine-tuning and supervised training see only K labelled images per
class (nested across K, drawn with the seed; the test split is unchanged); `--pretrain-on all,labelled`
pretrains on every training image or on the labelled ones only. `--minutes 3,10` runs several budgets.
Each arm is written to its own result.json as it finishes, so an interrupted comparison continues
where it stopped, and the reports are built from every result under OUT.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

import torch

from core import console
from core.config import PRETRAIN_ON, TrainConfig
from core.data.cache import DatasetCache
from core.data.splits import DataSplits
from core.metrics import unequal
from core.plan.presets import AUTO, default_recipe, preset
from core.plan.request import ONLY, Request, base_for
from core.runs.folder import ARM_RESULT, REPORT, RunFolder
from core.study.calibration import cost_ratio, measured_rate
from core.study.labels_report import write_labels_section
from core.study.results import summarise, write_results
from core.study.variants import VARIANT_NAMES, VARIANTS, Arm, base_recipe, run_arm, variant

DEFAULT_VARIANTS = tuple(name for name in VARIANT_NAMES if name != "cnn")  # the paper's table


def _several(parse):
    """A comma list of values `parse` reads, each refused (in one line) as it would be alone."""
    def several(text: str) -> list:
        values = [parse(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r}: give one value or a comma list")
        return values
    return several


def _pretrain_on(text: str) -> str:
    if text not in PRETRAIN_ON:
        raise argparse.ArgumentTypeError(f"{text!r}: choose {' or '.join(PRETRAIN_ON)}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = console.parser("core.compare", __doc__)
    parser.add_argument("--out", type=Path, required=True,
                        help="the folder for the runs, results.json and, unless --results names another, RESULTS.md")
    parser.add_argument("--dataset", type=console.dataset, default="fashion", help=console.DATASET_HELP)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=_several(console.positive), default=[2.0],
                        help="budget per arm, turned into views at a rate measured here once (printed, and kept in "
                             "OUT/calibration.json); a comma list runs several (3,10)")
    budget.add_argument("--views", type=_several(console.at_least(1)),
                        help="budget per arm in views seen, the same on any machine (a comma list runs several)")
    parser.add_argument("--seeds", type=console.at_least(1), default=3,
                        help="how many seeds each arm runs (0, 1, ...; a seed also draws the training subset)")
    parser.add_argument("--variants", nargs="+", choices=VARIANT_NAMES, default=list(DEFAULT_VARIANTS),
                        help="the arms")
    parser.add_argument("--labels-per-class", type=_several(console.labels_per_class),
                        help=f"{console.LABELS_HELP}, for fine-tuning and supervised training; a comma list runs "
                             "each (5,20,all) and the report gains the accuracy-against-labels section "
                             "(default: all)")
    parser.add_argument("--pretrain-on", type=_several(_pretrain_on), default=["all"],
                        help="what pretraining sees with few labels: all (every training image), labelled, "
                             "or both (all,labelled)")
    parser.add_argument("--results", type=Path, help="the report to write (default: OUT/RESULTS.md)")
    console.add_data_flags(parser)
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the results already under OUT; train nothing")
    return parser


def _arms(args, budgets: list[tuple[str, int]], ratios: dict[str, float]):
    """(budget folder, arm) in the order they run: budgets as given, then seeds (a whole first seed reads
    sooner than every seed of half the grid), then labels, all first (its pretraining is the one the
    other counts reuse), then variants."""
    for tag, views in budgets:
        for seed in range(args.seeds):
            for k in sorted(args.labels_per_class or [0], key=lambda k: (k != 0, k)):
                for name in args.variants:
                    chosen = variant(name)
                    for pretrain_on in args.pretrain_on if chosen.pretrains and k else ["all"]:
                        yield tag, Arm(chosen, seed, round(views * ratios[chosen.arch]), k, pretrain_on)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m core.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    args.results = args.results or args.out / "RESULTS.md"
    datasets = DatasetCache(args.data_root, args.download)
    try:
        base, splits = _base_and_splits(args, datasets)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rate = None if args.views else measured_rate(args.out, base, splits[0])
    budgets = ([(f"{v}views", v) for v in args.views] if args.views else
               [(f"{m:g}min", int(m * 60 * rate)) for m in args.minutes])
    ratios = {v.arch: cost_ratio(args.out, base, splits[0], v.arch) for v in VARIANTS
              if v.name in args.variants}
    for tag, views in budgets:
        print(f"budget {tag}: {views} views per arm" + (f" at {rate:.0f} views/s" if rate else "")
              + "".join(f"; {arch} {views * r:.0f} (its cost per view measured)" for arch, r in ratios.items()
                        if arch != "vit"))
    stop = threading.Event()
    for tag, arm in [] if args.report_only else _arms(args, budgets, ratios):
        run = RunFolder(args.out / tag / arm.variant.name / arm.labels / f"seed{arm.seed}")
        if (run.result() or {}).get("budget") != arm.budget:
            run.write_result({"budget": arm.budget, "budget_tag": tag, "variant": arm.variant.name, "seed": arm.seed,
                              "labels_per_class": arm.labels_per_class, "pretrain_on": arm.pretrain_on,
                              **run_arm(arm, base, splits[arm.seed], args.out / tag, stop)})
        final = run.result()["final"]
        print(f"{tag} {arm.variant.name} labels {arm.labels} seed {arm.seed}: top-1 {final['top1']:.4f}, "
              f"balanced {final['balanced']:.4f}, kNN {final['knn']:.4f}", flush=True)
    report(args, budgets, rate, splits[0], command)
    print(f"wrote {args.results}")
    return 0


def _base_and_splits(args, datasets: DatasetCache) -> tuple[TrainConfig, dict[int, DataSplits]]:
    """The comparison's base recipe (core.pipeline's for this dataset, fitted once, at the first budget's minutes)
    and every seed's splits at its stored side (the seed also draws a subset or a folder's test split)."""
    name = default_recipe(args.dataset)
    asked = (preset(name) if name != AUTO else TrainConfig()).with_overrides(dataset=args.dataset)
    request = Request(asked, name, ONLY, 0.0 if args.views else args.minutes[0])
    base, _, _ = base_for(request, datasets.get)
    base = base_recipe(base.with_overrides(minutes=0.0))
    return base, {seed: datasets.get(base.with_overrides(seed=seed)) for seed in range(args.seeds)}


def _results(out: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(out.glob(f"*/*/*/seed*/{ARM_RESULT}"))]


def report(args, budgets: list[tuple[str, int]], rate: float | None, data: DataSplits, command: str) -> None:
    """The paper's table (every label, the first budget) or, with --labels-per-class, the labels section."""
    everything = _results(args.out)
    if args.labels_per_class:
        write_labels_section(args.results, everything, command=command, dataset=args.dataset,
                             n_train=len(data.train), n_classes=len(data.class_names), seeds=args.seeds,
                             rate=rate, imbalanced=unequal(torch.bincount(data.test.labels)))
        return
    tag, budget = budgets[0]
    table: dict[str, list[dict]] = {}
    for result in everything:
        if result["budget_tag"] == tag and not result["labels_per_class"] and result["variant"] in args.variants:
            table.setdefault(result["variant"], []).append(result)
    table = {name: table[name] for name in args.variants if name in table}
    summary = summarise(table)
    (args.out / REPORT).write_text(json.dumps({"budget": budget, "rate": rate, "summary": summary,
                                                       "runs": table}, indent=1))
    write_results(args.results, summary=summary, runs=table, variants=VARIANTS, budget=budget, rate=rate,
                  minutes=None if args.views else args.minutes[0], command=command, dataset=args.dataset,
                  n_train=len(data.train), n_test=len(data.test), seeds=args.seeds,
                  imbalanced=unequal(torch.bincount(data.train.labels)))


if __name__ == "__main__":
    sys.exit(main())
