"""`python -m bench.own_images FOLDER [FOLDER ...]`: the auto recipe on a person's own folders, at equal minutes.

Three arms per folder, each one `python -m core.pipeline` command given the same total minutes (default
5; loading, planning and timing count): the auto recipe pretrained for PRETRAIN_SHARE of them and
fine-tuned for the rest (`--pretrain always`); the same with the cpu-quick preset (tuned on
Fashion-MNIST at 28 px) in place of the auto recipe; and supervised training from scratch with the auto
recipe for all of them (`--pretrain never`). Prints one markdown table: the baselines (raw pixels,
random-init encoder), the pretrained backbone's kNN (top-1 and balanced), the class head's test top-1
and balanced accuracy, wall-clock minutes, and what the pipeline's default (`--pretrain auto`) would
have chosen (core/payoff.py), so its result is the row it names. A pretraining arm names what its
second stage was: fine-tuning from the backbone of the best held-out epoch, or, when no epoch beat the
random init there, training from scratch (core/handover.py). `--arms` reruns some arms; the others'
results in OUT/results.json are kept. Asserts nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from core import events as ev
from core.runs.folder import RunFolder, StageFolder
from core.trainer.watchdog import Yardstick


def _run(args: list[str]) -> float:
    """Minutes a command line took; it must succeed."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return (time.perf_counter() - started) / 60


def _last_evaluation(stage: StageFolder) -> ev.EpochMetrics:
    return [e for e in stage.events() if isinstance(e, ev.EpochMetrics) and e.knn_top1 is not None][-1]


def _first(stage: StageFolder, kind: type) -> ev.Event:
    return next(e for e in stage.events() if isinstance(e, kind))


def arm(folder: Path, out: Path, name: str, minutes: float, flags: list[str], seed: int = 0) -> dict:
    """One arm: a core.pipeline command with `flags` and `seed` (it also draws the test split), read back
    from its run folder."""
    shutil.rmtree(out / name, ignore_errors=True)  # the bench's own folder: a rerun replaces the arm
    spent = _run(["core.pipeline", "--dataset", f"folder:{folder}", "--minutes", str(minutes), "--out",
                  str(out / name), "--seed", str(seed), *flags])
    run = RunFolder(out / name)
    record, stages = run.record(), [stage for _, stage in run.stages()]
    final, baselines = _last_evaluation(stages[-1]), _first(stages[0], ev.Baselines)
    result = {"arm": name, "minutes": spent, "top1": final.test_top1, "balanced": final.test_balanced,
              "baselines": dataclasses.asdict(baselines), "expected_to_pay": record["expected_to_pay"],
              "labels_per_class": record["labels_per_class"], "passes": record["passes"]}
    backbone = _last_evaluation(stages[0])
    result.update(knn=backbone.knn_top1, knn_balanced=backbone.knn_balanced)
    if record["pretrain"]:
        ended = stages[0].ended()
        yardstick = Yardstick.of(baselines, _first(stages[0], ev.RunStarted).class_counts)
        judged = yardstick.read(backbone.knn_top1, backbone.knn_balanced)
        result.update(judged_by=yardstick.metric, above_baselines=judged > max(yardstick.raw_pixels,
                                                                                yardstick.random_init),
                      advice=[e.message for e in stages[0].events() if isinstance(e, ev.Advice)],
                      pretraining_ended=f"{ended.reason} at epoch {ended.epoch}",
                      then=_second_stage(record))
    return result


def _second_stage(record: dict) -> str:
    first, last = record["stages"][0], record["stages"][-1]
    if last["stage"] == "finetune":
        return f"fine-tuned from epoch {first['best_epoch']}"
    return "trained from scratch (no epoch beat the random init on held-out images)"


ARMS = (("auto+ft", ["--pretrain", "always"]), ("cpu-quick+ft", ["--preset", "cpu-quick", "--pretrain", "always"]),
        ("scratch", ["--pretrain", "never"]))


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| folder | arm | raw pixels kNN (balanced) | random-init kNN (balanced) | backbone kNN (balanced) "
             "| class head top-1 "
             "| balanced accuracy | minutes | the backbone ends above both baselines; pretraining ended "
             "| --pretrain auto would |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for folder, arms in results.items():
        for r in arms:
            b = r["baselines"]
            raw, random_init = (f"{b[k]:.1%} ({b[f'{k}_balanced']:.1%})" for k in ("raw_pixels", "random_init"))
            above = "—" if r["arm"] == "scratch" else (f"{'yes' if r['above_baselines'] else '**no**'} "
                                                       f"({r['judged_by']}); {r['pretraining_ended']}; "
                                                       f"then {r.get('then', 'fine-tuned from the last epoch')}")
            would = (f"{'pretrain' if r['expected_to_pay'] else 'train from scratch'} "
                     f"({r['labels_per_class']:g} a class, ~{r['passes']:.0f} passes)")
            lines.append(f"| {folder} | {r['arm']} | {raw} | {random_init} | {r['knn']:.1%} "
                         f"({r['knn_balanced']:.1%}) | {r['top1']:.1%} | {r['balanced']:.1%} | {r['minutes']:.1f} "
                         f"| {above} | {would} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.own_images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--minutes", type=float, default=5.0, help="total minutes per arm")
    parser.add_argument("--out", type=Path, default=Path("runs/own-images"))
    parser.add_argument("--seed", type=int, default=0, help="the pipeline's seed: its test split and its runs")
    parser.add_argument("--arms", nargs="+", choices=[name for name, _ in ARMS], default=[name for name, _ in ARMS])
    args = parser.parse_args(argv)
    saved = args.out / "results.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    for folder in args.folders:
        kept = {r["arm"]: r for r in results.get(folder.name, [])}
        for name, flags in ARMS:
            if name in args.arms:
                kept[name] = arm(folder, args.out / folder.name, name, args.minutes, flags, args.seed)
                print(f"{folder.name} {name}: {json.dumps(kept[name])}", flush=True)
        results[folder.name] = [kept[name] for name, _ in ARMS if name in kept]
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(results, indent=1))  # after every folder: a stopped bench keeps what ran
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
