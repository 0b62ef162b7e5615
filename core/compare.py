"""`python -m core.compare`: the paper's comparison, at equal compute, over seeds.

Variants: supervised from scratch; IDMM -> fine-tune; contrastive -> fine-tune; IDMM without CutMix;
IDMM without label smoothing. Compute is equalised as *views seen* (forward/backward passes of one
28 px crop each; every view costs the same on a given model), so a slow or busy machine changes the
wall-clock but never the result. `--minutes` converts to views with a throughput measured on this
machine before the runs; `--views` sets the budget directly. A pretrained variant spends 80 % of it
pretraining and 20 % fine-tuning (the paper's 800 + 200 epochs). Each (variant, seed) is written to
its own result.json as it finishes, so an interrupted comparison continues where it stopped.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core import events as ev
from core import runs
from core.augment import ViewMaker
from core.config import TrainConfig, preset
from core.data import DataSplits, load_dataset
from core.metrics import linear_probe, unequal
from core.model import embed
from core.objectives import Supervised
from core.recipe import FINETUNE, recipe
from core.reporting import JsonlLog
from core.results import write_results
from core.trainer import Trainer

PRETRAIN_SHARE = 0.8
EVALS_PER_STAGE = 5


@dataclass(frozen=True)
class Variant:
    """One arm of the comparison: a stage-1 objective (through the recipe) and what it ablates."""

    name: str
    description: str
    objective: str  # stage 1's objective; "supervised" is supervised from scratch, with no stage 2
    ablation: dict = field(default_factory=dict)  # overrides of the base recipe for stage 1

    @property
    def pretrains(self) -> bool:
        return self.objective != Supervised.name

    def views_per_image(self, base: TrainConfig) -> int:
        """Views of each image per stage-1 step, as the recipe gives them (contrastive: a pair)."""
        return ViewMaker(recipe(base.with_overrides(**self.ablation), self.objective).augment).views_per_image


VARIANTS = (
    Variant("scratch", "supervised from scratch: the fine-tuning recipe for the whole budget", Supervised.name),
    Variant("idmm+ft", "IDMM (CutMix 0.5, label smoothing 0.1), then fine-tuning", "instance"),
    Variant("contrastive+ft", "SimCLR NT-Xent (2 views, T 0.2, 128-d projection), then fine-tuning", "contrastive"),
    Variant("idmm-no-cutmix+ft", "IDMM without CutMix, then fine-tuning", "instance",
            {"augment": {"cutmix_alpha": 0.0}}),
    Variant("idmm-no-ls+ft", "IDMM without label smoothing, then fine-tuning", "instance", {"label_smoothing": 0.0}),
)


def base_recipe(dataset: str, seed: int) -> TrainConfig:
    """cpu-quick with the paper's IDMM ingredients back on (CutMix 0.5, smoothing 0.1), so that the
    ablations remove something that is there."""
    return preset("cpu-quick").with_overrides(dataset=dataset, seed=seed, augment={"cutmix_alpha": 0.5},
                                              label_smoothing=0.1, snapshot_every=0)


def _epochs(views: float, n_images: int, views_per_image: int) -> int:
    return max(1, round(views / (n_images * views_per_image)))


def _stage(base: TrainConfig, epochs: int, objective: str | None = None, **recipe_args) -> TrainConfig:
    """The recipe's config for one stage of `epochs` (core.recipe also fits the warmup to a short
    stage), evaluated EVALS_PER_STAGE times and saved once, at the end."""
    config = recipe(base, objective, epochs=epochs, **recipe_args)
    return config.with_overrides(eval_every=max(1, epochs // EVALS_PER_STAGE), checkpoint_every=epochs)


@dataclass
class Stage:
    """What one training stage left: final measures and its curve of (views seen, kNN, test top-1)."""

    knn: float
    probe: float
    top1: float | None
    curve: list = field(default_factory=list)
    seconds: float = 0.0
    balanced: float | None = None  # the class head's balanced accuracy (mean recall over classes)


def run_stage(config: TrainConfig, data: DataSplits, out: Path, views_before: int, views_per_image: int,
              stop: threading.Event) -> Stage:
    trainer = Trainer(config, data, out_dir=out)
    curve, balanced = [], []
    # A run folder like any other: the app lists the arms too.
    runs.begin(out, config, data.class_names, label=" · ".join(out.parts[-3:]))
    log = JsonlLog(out / runs.METRICS)

    def listen(event: ev.Event) -> None:
        log(event)
        if isinstance(event, ev.EpochMetrics) and event.knn_top1 is not None:
            views = views_before + event.epoch * len(data.train) * views_per_image
            curve.append((views, event.knn_top1, event.test_top1))
            balanced.append(event.test_balanced)

    started = time.perf_counter()
    try:
        outcome = trainer.run(listen, stop)
    finally:
        log.close()
    if not isinstance(outcome, ev.Finished) or outcome.reason != "completed":
        raise RuntimeError(f"{out}: the run did not complete ({outcome})")
    train, test = embed(trainer.backbone, trainer.eval_train), embed(trainer.backbone, trainer.eval_test)
    probe = linear_probe(train, data.train.labels, test, data.test.labels, len(data.class_names))
    return Stage(outcome.knn_top1, probe, outcome.test_top1, curve, time.perf_counter() - started, balanced[-1])


def run_variant(variant: Variant, data: DataSplits, seed: int, budget: int, out: Path,
                stop: threading.Event) -> dict:
    base = base_recipe(data.name, seed)
    ablated, n = base.with_overrides(**variant.ablation), len(data.train)
    if not variant.pretrains:
        final = run_stage(_stage(ablated, _epochs(budget, n, 1), variant.objective), data, out, 0, 1, stop)
        return {"final": final.__dict__, "pretrain": None}
    views = variant.views_per_image(base)
    pre_config = _stage(ablated, _epochs(budget * PRETRAIN_SHARE, n, views), variant.objective)
    pre = run_stage(pre_config, data, out / "pretrain", 0, views, stop)
    pre_views = pre_config.epochs * n * views
    ft_config = _stage(pre_config, _epochs(budget - pre_views, n, 1), stage=FINETUNE,
                       init_from=str(out / "pretrain" / "last.pt"))
    final = run_stage(ft_config, data, out / "finetune", pre_views, 1, stop)
    return {"final": final.__dict__, "pretrain": pre.__dict__}


def calibrate(dataset: str, data: DataSplits, seconds: float = 20.0) -> float:
    """Views per second of the supervised recipe on this machine (median over steps after a warm-up)."""
    config = recipe(base_recipe(dataset, 0), Supervised.name, epochs=1000).with_overrides(eval_every=0,
                                                                                         checkpoint_every=0)
    rates, stop = [], threading.Event()
    deadline = time.perf_counter() + seconds + 30  # the first step also waits for the baselines

    def listen(event: ev.Event) -> None:
        if isinstance(event, ev.StepMetrics):
            rates.append(event.images_per_s)
            if time.perf_counter() > deadline or len(rates) >= 60:
                stop.set()

    Trainer(config, data).run(listen, stop)
    return statistics.median(rates[3:] or rates)


def measured_rate(out: Path, dataset: str, data: DataSplits) -> float:
    """The views/s that turns --minutes into views, measured once per output folder and kept in
    OUT/calibration.json: a re-run then gets the same budget, so it reuses every finished result
    instead of re-measuring a slightly different rate and starting over."""
    path = out / "calibration.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("dataset") == dataset:
            print(f"using the rate measured before: {saved['rate']:.0f} views/s (delete {path} to re-measure)")
            return float(saved["rate"])
    rate = calibrate(dataset, data)
    path.write_text(json.dumps({"dataset": dataset, "rate": rate}))
    return rate


def summarise(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean and sample std over seeds of each measure, per variant."""
    def stats(values):
        values = [v for v in values if v is not None]
        if not values:
            return None
        return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]

    table = {}
    for name, seeds in results.items():
        table[name] = {
            "pretrain_knn": stats([r["pretrain"]["knn"] for r in seeds if r["pretrain"]]),
            "pretrain_probe": stats([r["pretrain"]["probe"] for r in seeds if r["pretrain"]]),
            "knn": stats([r["final"]["knn"] for r in seeds]),
            "probe": stats([r["final"]["probe"] for r in seeds]),
            "top1": stats([r["final"]["top1"] for r in seeds]),
            "balanced": stats([r["final"].get("balanced") for r in seeds]),
            "minutes": stats([(r["final"]["seconds"] + (r["pretrain"] or {}).get("seconds", 0)) / 60 for r in seeds]),
        }
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=2.0, help="budget per variant, converted to views")
    budget.add_argument("--views", type=int, help="budget per variant in views seen (overrides --minutes)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=[v.name for v in VARIANTS],
                        default=[v.name for v in VARIANTS])
    parser.add_argument("--out", type=Path, required=True, help="folder for the runs and results.json")
    parser.add_argument("--results", type=Path, default=Path("docs/RESULTS.md"), help="the report to write")
    parser.add_argument("--data-root", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = "python -m core.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        splits = {seed: load_dataset(args.dataset, root=args.data_root, seed=seed) for seed in range(args.seeds)}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rate = None if args.views else measured_rate(args.out, args.dataset, splits[0])
    budget = args.views or int(args.minutes * 60 * rate)
    print(f"budget: {budget} views per variant" + (f" ({args.minutes} min at {rate:.0f} views/s)" if rate else ""))
    results: dict[str, list[dict]] = {}
    stop = threading.Event()
    for name in args.variants:
        variant = next(v for v in VARIANTS if v.name == name)
        for seed in range(args.seeds):
            folder = args.out / name / f"seed{seed}"
            done = folder / "result.json"
            if done.exists() and json.loads(done.read_text())["budget"] == budget:
                result = json.loads(done.read_text())
            else:
                result = {"budget": budget, **run_variant(variant, splits[seed], seed, budget, folder, stop)}
                done.write_text(json.dumps(result))
            results.setdefault(name, []).append(result)
            print(f"{name} seed {seed}: top-1 {result['final']['top1']:.4f}, kNN {result['final']['knn']:.4f}",
                  flush=True)
    summary = summarise(results)
    (args.out / "results.json").write_text(json.dumps({"budget": budget, "rate": rate, "summary": summary,
                                                       "runs": results}, indent=1))
    write_results(args.results, summary=summary, runs=results, variants=VARIANTS, budget=budget, rate=rate,
                  minutes=None if args.views else args.minutes, command=command, dataset=args.dataset,
                  n_train=len(splits[0].train), n_test=len(splits[0].test), seeds=args.seeds,
                  imbalanced=unequal(torch.bincount(splits[0].train.labels)))
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
