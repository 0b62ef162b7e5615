"""All benchmarks in one run: prints a markdown table and writes it, with the machine, to bench/RESULTS.md.

    python -m bench.run                      # every row, on the best device (several minutes)
    python -m bench.run --rows 1,2 --device cpu
    python -m bench.run --quick              # tiny sizes: checks the wiring, the figures mean nothing

Rows: 1 pretraining throughput (ours vs a per-sample torchvision pipeline), 2 explicit vs SDPA
attention, 3 UMAP of 2,040 embeddings, 4 classify latency, 5 the app's peak memory, 6 epoch time
against the training-set size, 7 the paper's recipe timed and projected to its 800 + 200 epochs.
Each row shows our figure, the reference's, their ratio and the bar it must meet. Rows 3 and 5
compile numba's UMAP kernels (~30 s) even with --quick. A CPU run writes bench/RESULTS.md and a
CUDA run bench/RESULTS_CUDA.md, so neither overwrites the other's rows.
"""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench import app_memory, attention, paper_projection, scaling, throughput
from bench.classify_latency import EXAMPLE, published_model, time_calls
from bench.report import GiB, Row, Section, load_average, machine_lines, markdown, times
from bench.umap_refresh import REFRESHES, clustered_embeddings, drifted, time_default, timed
from core.config import MODEL_SIZES
from core.data.sources import load_dataset
from core.plan.presets import preset
from core.serve.classifier import Classifier
from core.serve.projection import Projector
from core.trainer.distributed import resolve_device


def default_out(device: torch.device) -> Path:
    """bench/RESULTS.md for the CPU, bench/RESULTS_CUDA.md for a GPU: one device's run keeps the other's."""
    name = "RESULTS.md" if device.type == "cpu" else f"RESULTS_{device.type.upper()}.md"
    return Path(__file__).resolve().parent / name


def throughput_row(device: torch.device, quick: bool) -> Section:
    section = Section(1, "Pretraining throughput: on-device batched views vs per-sample torchvision")
    base = preset("cpu-quick").with_overrides(device=device.type)
    # The paper's recipe (the `paper` preset's views, CutMix and batch) scaled to 28 px Fashion crops.
    paper = dataclasses.replace(base, augment=dataclasses.replace(preset("paper").augment, global_size=28,
                                                                  local_size=28), batch_size=256)
    recipes = {"paper recipe at 28 px": (paper, throughput.Plan(2, 2, 3, 4)),
               "cpu-quick recipe": (base, throughput.Plan(2, 4, 3, 8))}
    data = load_dataset(base.dataset, seed=base.seed)
    bar = 1.5 if device.type == "cpu" else 5.0
    for index, (name, (config, plan)) in enumerate(recipes.items()):
        if quick:
            config, plan = config.with_overrides(batch_size=16), throughput.Plan(1, 1, 1, 2)
        result = throughput.measure(config, data, plan)
        ratio = result.ours_median / result.reference_median
        views = result.views_per_image
        section.rows.append(Row(
            f"1{'ab'[index]}", f"pretraining, {name}: source images/s (views/s, {views} per image)",
            f"{result.ours_median:,.0f} ({result.ours_median * views:,.0f})",
            f"{result.reference_median:,.0f} ({result.reference_median * views:,.0f})",
            times(ratio), f"≥ {bar}×", ratio >= bar))
        section.details += [
            f"- {name}: {throughput.describe(config)}",
            f"  - ours, images/s per window: {', '.join(f'{v:,.0f}' for v in result.ours)}",
            f"  - reference, images/s per window: {', '.join(f'{v:,.0f}' for v in result.reference)}",
            f"  - {plan.rounds} alternating rounds of (ours, reference); each {plan.warmup} warm-up steps, then "
            f"{plan.windows} windows of {plan.steps_per_window} steps; figure = median over windows"]
    section.details += [
        f"- Reference: a Dataset opening each image as PIL and applying torchvision.transforms per view, a "
        f"DataLoader with {throughput.REFERENCE_WORKERS} persistent workers (pin_memory {device.type == 'cuda'}), "
        "then the very same `Trainer._train_step` (model, objective, CutMix, AdamW) from the same weights.",
        "- Source images/s counts images drawn from the dataset; views/s counts the crops the model saw.",
        f"- Bar: ours ≥ {bar}× the reference ({'CPU' if device.type == 'cpu' else 'GPU'})."]
    return section


def attention_row(device: torch.device, quick: bool) -> Section:
    section = Section(2, "Attention: vit-pytorch's explicit softmax vs SDPA, forward + backward")
    cases = [("cpu model, 28 px", MODEL_SIZES["cpu"], 1, 256, 7),
             ("DeiT-Tiny, 112 px", MODEL_SIZES["deit-tiny"], 3, 32 if device.type == "cpu" else 256, 5)]
    for index, (name, model, channels, batch, repeats) in enumerate(cases):
        if quick:
            batch, repeats = 2, 2
        seconds = attention.measure(model, channels, batch, device, warmup=1 if quick else 2, repeats=repeats)
        section.rows.append(Row(f"2{'ab'[index]}", f"{name}, batch {batch}: ms per step (SDPA vs explicit)",
                                f"{seconds['sdpa'] * 1e3:,.1f}", f"{seconds['explicit'] * 1e3:,.1f}",
                                times(seconds["explicit"] / seconds["sdpa"])))
        section.details.append(f"- {name}: {model.depth} layers, {model.heads} heads × {model.dim_head}, "
                               f"{(model.image_size // model.patch_size) ** 2 + 1} tokens; batch {batch}; "
                               f"median of {repeats}, the modes alternating")
    section.details.append("- Ratio = explicit / SDPA time (above 1: SDPA is faster). No bar.")
    return section


def umap_row(device: torch.device, quick: bool) -> Section:
    section = Section(3, "UMAP of the training-set embeddings: umap-learn's default vs the project's Projector")
    points, _ = clustered_embeddings()
    refreshes = REFRESHES
    if quick:
        points, refreshes = points[:300], 2
    Projector.warm_up()  # numba compilation, once per process (the app does it at start-up)
    default_s = time_default(points)[0]
    projector = Projector()
    first_s = timed(lambda: projector.project(points))[0]
    refresh_s = statistics.median(timed(lambda s=s: projector.project(s))[0] for s in drifted(points, refreshes))
    ratio = default_s / refresh_s
    section.rows.append(Row("3", f"UMAP of {len(points):,} × {points.shape[1]}-D: s per layout "
                                 "(warm refresh vs `UMAP().fit_transform`)",
                            f"{refresh_s:.2f}", f"{default_s:.2f}", times(ratio), "≥ 10×", ratio >= 10))
    section.details += [
        f"- ours: `Projector.project` warm-started refresh, median of {refreshes} (what the app runs per "
        f"snapshot); its first, fresh fit took {first_s:.2f} s ({default_s / first_s:.1f}× faster than the default)",
        "- reference: umap-learn's default `UMAP().fit_transform`, after its own numba warm-up "
        "(functions of bench/umap_refresh.py); both on the CPU"]
    return section


def classify_row(device: torch.device, quick: bool) -> Section:
    section = Section(4, "Classify latency of one uploaded photo, end to end")
    data = EXAMPLE.read_bytes()
    ms = time_calls(Classifier(published_model()), data)
    p95 = float(np.percentile(ms, 95))
    section.rows.append(Row("4", "classify one upload: ms (median / p95)",
                            f"{np.median(ms):.1f} / {p95:.1f}", bar="p95 ≤ 50 ms", passed=p95 <= 50))
    section.details.append(f"- {len(ms)} calls of core.images.decode + Classifier.classify on {EXAMPLE.name} "
                           f"({len(data):,} bytes, decoded every call) against 2,040 training embeddings, "
                           "cpu-quick model; classification always runs on the CPU, on one thread "
                           "(functions of bench/classify_latency.py)")
    return section


def memory_row(device: torch.device, quick: bool) -> Section:
    section = Section(5, "Peak resident memory of the app while training cpu-quick with UMAP refreshing")
    # 20 epochs keep the run near a minute and a half here; 2 is the fewest cpu-quick's warm-up allows.
    result = app_memory.measure(2 if quick else 20, device.type, timeout_s=300 if quick else 900)
    peak = result.peak_bytes / GiB
    section.rows.append(Row("5", f"app training cpu-quick ({result.epochs} epochs) + UMAP: peak RSS",
                            f"{peak:.2f} GiB", bar="≤ 3 GiB", passed=peak <= 3))
    section.details.append(
        f"- a child process holding a demo Session and App (gradio imported, no server), training cpu-quick "
        f"cut to {result.epochs} epochs (the preset runs 60) with an embedding snapshot every "
        f"{result.snapshot_every} epochs, as the app asks; "
        f"App.tick called every second with thumbnails drawn; {result.layouts} UMAP layouts drawn in "
        f"{result.seconds:.0f} s; peak = the child's getrusage ru_maxrss")
    return section


def scaling_row(device: torch.device, quick: bool) -> Section:
    section = Section(6, "Epoch time against the training-set size, cpu-quick recipe")
    config = preset("cpu-quick").with_overrides(device=device.type)
    costs = scaling.measure(config, (3, 6) if quick else (50, 100, 204, 400), 200 if quick else None)
    first, last = costs[0], costs[-1]
    section.rows.append(Row("6", f"one epoch, {last.images:,} vs {first.images:,} images "
                                 f"(×{last.images / first.images:.1f} images): s",
                            f"{last.train_s:.2f}", f"{first.train_s:.2f}", times(last.train_s / first.train_s)))
    section.details += ["| images | steps | epoch s | images/s | kNN eval s | instance head params |",
                        "|---:|---:|---:|---:|---:|---:|"]
    section.details += [f"| {c.images:,} | {c.steps} | {c.train_s:.2f} | {c.images / c.train_s:,.0f} | "
                        f"{c.knn_s:.2f} | {c.head_params:,} |" for c in costs]
    section.details += ["", f"- batch {config.batch_size}; balanced seeded subsets of the Fashion-MNIST train "
                        "split (each inside the next); kNN eval embeds the training set and the test split "
                        f"({'200 images' if quick else 'the official 10k'}) and votes; the recipe runs it every "
                        f"{config.eval_every} epochs. No bar."]
    return section


def _minutes(minutes: float) -> str:
    """Minutes, with hours or days beside them once they are long."""
    if minutes >= 2 * 24 * 60:
        return f"{minutes:,.1f} ({minutes / 1440:.1f} days)"
    return f"{minutes:,.1f}" + (f" ({minutes / 60:.1f} h)" if minutes >= 120 else "")


def paper_row(device: torch.device, quick: bool) -> Section:
    section = Section(7, "The paper's recipe end to end (800 + 200 epochs), timed and projected")
    stages, notes = paper_projection.measure(device, quick)
    for index, stage in enumerate(stages):
        mode = "compiled" if stage.compiled else "eager"
        rate = stage.config.batch_size / stage.recipe_step_s
        section.rows.append(Row(
            f"7{'abcde'[index]}", f"{stage.name}, {mode}: s per step at batch {stage.config.batch_size} "
                                 f"(images/s, views/s)",
            f"{stage.recipe_step_s:.3f} ({rate:,.0f}, {rate * stage.views_per_image:,.0f})"))
    best = paper_projection.fastest(stages)
    total_min = sum(stage.projected_s for stage in best) / 60
    bar = device.type == "cuda"
    section.rows.append(Row(f"7{'abcde'[len(stages)]}", "the whole recipe projected: minutes (stage 1 + stage 2, "
                                                       "evaluations included)",
                            _minutes(total_min), bar="≤ 15 min (one H100)" if bar else "none",
                            passed=total_min <= 15 if bar else None))
    section.details += [f"- {paper_projection.describe(stage)}" for stage in stages] + notes
    section.details += [
        "- projection per stage (the faster mode): " + "; ".join(
            f"{s.name}: {s.steps:,} steps × {s.recipe_step_s:.3f} s + {s.evaluations} evaluations × "
            f"{s.evaluation_s:.1f} s = {s.projected_s / 60:,.1f} min" for s in best),
        "- random images of Flowers-102's shapes (2,040 train, 6,149 test, 102 classes); a step's cost does not "
        "depend on the pixels (functions of bench/paper_projection.py)",
        "- where the timed batch is below the recipe's 256, the step time is scaled linearly to 256"]
    if not bar:
        section.details.append("- the 15-minute goal is for one H100; this run had no GPU, so the row has no bar")
    return section


ROWS: dict[int, Callable[[torch.device, bool], Section]] = {
    1: throughput_row, 2: attention_row, 3: umap_row, 4: classify_row, 5: memory_row, 6: scaling_row,
    7: paper_row}


def parse_rows(text: str) -> list[int]:
    try:
        rows = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rows takes numbers like 1,3,6; got {text!r}") from None
    if not rows or not set(rows) <= set(ROWS):
        raise argparse.ArgumentTypeError(f"--rows must name rows among {sorted(ROWS)}; got {text!r}")
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes and step counts (a wiring check)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", type=Path, help="markdown file to write (default: bench/RESULTS.md on the CPU, "
                                                 "bench/RESULTS_CUDA.md on a GPU)")
    parser.add_argument("--rows", type=parse_rows, default=sorted(ROWS), help="comma-separated rows, e.g. 1,4")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads in this process (default: torch's own choice, as the app runs). "
                             "1 keeps timings sane on cores other jobs are using: two OpenMP threads that "
                             "wait on each other's time slices made steps up to 50x slower here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    device = resolve_device(args.device)
    load_start, started = load_average(), time.perf_counter()
    sections = []
    for number in args.rows:
        print(f"bench.run: row {number} ...", file=sys.stderr, flush=True)  # rows take minutes; say which
        if args.threads:  # before every row: numba's UMAP kernels reset the OpenMP thread count torch shares
            torch.set_num_threads(args.threads)
        sections.append(ROWS[number](device, args.quick))
    command = " ".join(["python -m bench.run", *map(shlex.quote, argv)])
    text = markdown(sections, machine_lines(device, args.threads, command, load_start, load_average(),
                                            time.perf_counter() - started))
    out = args.out or default_out(device)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
