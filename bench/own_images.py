"""`python -m bench.own_images FOLDER [FOLDER ...]`: the auto recipe on a person's own folders, at equal minutes.

Three arms per folder, each through the command lines a person would type, each given the same total
minutes (default 5): the auto recipe pretrained for 80 % of them and fine-tuned for the rest; the same
with the cpu-quick preset (tuned on Fashion-MNIST at 28 px) in place of the auto recipe; and supervised
training from scratch with the auto recipe for all of them. Prints one markdown table: the baselines
(raw pixels, random-init encoder), the pretrained backbone's kNN (top-1 and balanced), the class head's
test top-1 and balanced accuracy, and wall-clock minutes. Asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from core import events as ev
from core.metrics import unequal
from core.watchdog import Yardstick

PRETRAIN_SHARE = 0.8


def _run(args: list[str]) -> float:
    """Minutes a command line took; it must succeed."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return (time.perf_counter() - started) / 60


def _events(run: Path) -> dict[str, list[dict]]:
    events: dict[str, list[dict]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        events.setdefault(record["event"], []).append(record)
    return events


def _last_evaluation(run: Path) -> dict:
    return [e for e in _events(run)["EpochMetrics"] if e["knn_top1"] is not None][-1]


def arm(folder: Path, out: Path, name: str, minutes: float, preset: list[str]) -> dict:
    """One arm: pretrain + fine-tune (preset given) or supervised from scratch (preset None)."""
    dataset = ["--dataset", f"folder:{folder}"]
    if name == "scratch":
        spent = _run(["core.train", *dataset, "--objective", "supervised", "--minutes", str(minutes),
                      "--out", str(out / name)])
        final = _last_evaluation(out / name)
        return {"arm": name, "minutes": spent, "knn": final["knn_top1"], "knn_balanced": final["knn_balanced"],
                "top1": final["test_top1"], "balanced": final["test_balanced"],
                "baselines": _events(out / name)["Baselines"][0]}
    pre, ft = out / name, out / f"{name}-ft"
    spent = _run(["core.train", *preset, *dataset, "--minutes", str(minutes * PRETRAIN_SHARE), "--out", str(pre)])
    spent += _run(["core.finetune", str(pre / "last.pt"), "--minutes", str(minutes * (1 - PRETRAIN_SHARE)),
                   "--out", str(ft)])
    pretrained, final, events = _last_evaluation(pre), _last_evaluation(ft), _events(pre)
    baselines = {k: v for k, v in events["Baselines"][0].items() if k != "event"}
    yardstick = Yardstick.of(ev.Baselines(**baselines), unequal(events["RunStarted"][0]["class_counts"]))
    judged = yardstick.read(pretrained["knn_top1"], pretrained["knn_balanced"])
    return {"arm": name, "minutes": spent, "knn": pretrained["knn_top1"], "knn_balanced": pretrained["knn_balanced"],
            "top1": final["test_top1"], "balanced": final["test_balanced"], "baselines": events["Baselines"][0],
            "judged_by": yardstick.metric,
            "above_baselines": judged > max(yardstick.raw_pixels, yardstick.random_init),
            "advice": [a["message"] for a in events.get("Advice", [])]}


ARMS = (("auto+ft", []), ("cpu-quick+ft", ["--preset", "cpu-quick"]), ("scratch", None))


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| folder | arm | raw pixels kNN (balanced) | random-init kNN (balanced) | backbone kNN (balanced) "
             "| class head top-1 "
             "| balanced accuracy | minutes | the backbone ends above both baselines |",
             "|---|---|---|---|---|---|---|---|---|"]
    for folder, arms in results.items():
        for r in arms:
            b = r["baselines"]
            raw, random_init = (f"{b[k]:.1%} ({b[f'{k}_balanced']:.1%})" for k in ("raw_pixels", "random_init"))
            above = "—" if r["arm"] == "scratch" else (f"{'yes' if r['above_baselines'] else '**no**'} "
                                                       f"({r['judged_by']})")
            lines.append(f"| {folder} | {r['arm']} | {raw} | {random_init} | {r['knn']:.1%} "
                         f"({r['knn_balanced']:.1%}) | {r['top1']:.1%} | {r['balanced']:.1%} | {r['minutes']:.1f} "
                         f"| {above} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.own_images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--minutes", type=float, default=5.0, help="total minutes per arm")
    parser.add_argument("--out", type=Path, default=Path("runs/own-images"))
    args = parser.parse_args(argv)
    results = {}
    for folder in args.folders:
        results[folder.name] = []
        for name, preset in ARMS:
            result = arm(folder, args.out / folder.name, name, args.minutes, preset)
            results[folder.name].append(result)
            print(f"{folder.name} {name}: {json.dumps(result)}", flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
