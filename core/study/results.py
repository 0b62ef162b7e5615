"""docs/RESULTS.md and its curve plot, from the comparison's summary (see core.compare).

The report has two parts with a writer each: the paper's table (here) and the labels-per-class
section (core/labels_report.py), which sits between LABELS_BEGIN and LABELS_END; each writer keeps
the other's part as it was."""
from __future__ import annotations

import datetime
import os
import platform
import statistics
from pathlib import Path

import torch

LABELS_BEGIN = "<!-- labels per class: written by core.compare --labels-per-class -->"
LABELS_END = "<!-- end of labels per class -->"
COLUMNS = (("pretrain_knn", "stage-1 kNN"), ("pretrain_probe", "stage-1 probe"), ("knn", "final kNN"),
           ("probe", "final probe"), ("top1", "test top-1"), ("minutes", "minutes"))


def machine() -> str:
    model, cpuinfo = platform.processor(), Path("/proc/cpuinfo")
    if cpuinfo.exists():
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("model name")), model)
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{model or 'unknown CPU'}, {os.cpu_count()} cores{gpu}; torch {torch.__version__}"


def stats(values: list) -> list[float] | None:
    """[mean, sample std] of the values that were measured (std 0 for one), None for none."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def _cell(value, scale: float = 100.0, digits: int = 1) -> str:
    if value is None:
        return "—"
    mean, std = value
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


# (variant, the variant it is compared with, measure, what the difference measures)
FINDINGS = (
    ("idmm+ft", "scratch", "top1", "pretraining + fine-tuning vs supervised from scratch"),
    ("idmm+ft", "contrastive+ft", "pretrain_knn", "IDMM vs contrastive pretraining"),
    ("idmm+ft", "contrastive+ft", "top1", "IDMM vs contrastive pretraining, after fine-tuning"),
    ("idmm+ft", "idmm-no-cutmix+ft", "pretrain_knn", "CutMix in IDMM"),
    ("idmm+ft", "idmm-no-cutmix+ft", "top1", "CutMix in IDMM, after fine-tuning"),
    ("idmm+ft", "idmm-no-ls+ft", "pretrain_knn", "label smoothing in IDMM"),
    ("idmm+ft", "idmm-no-ls+ft", "top1", "label smoothing in IDMM, after fine-tuning"),
)


def _gap(summary: dict, first: str, second: str, key: str) -> tuple[float, float] | None:
    """(mean of first - mean of second, the larger of their stds), or None if either was not run."""
    a, b = summary.get(first, {}).get(key), summary.get(second, {}).get(key)
    if not a or not b:
        return None
    return a[0] - b[0], max(a[1], b[1])


def _reading(gap: float, noise: float) -> str:
    if abs(gap) <= noise:
        return "within one std: no difference shown"
    return "first better" if gap > 0 else "second better"


def _verdict(summary: dict) -> str:
    """The paper's claim, checked on these numbers: IDMM -> fine-tune beats scratch at equal compute."""
    gap = _gap(summary, "idmm+ft", "scratch", "top1")
    if gap is None:
        return "The claim needs both `idmm+ft` and `scratch`; one of them was not run."
    (difference, noise), ours, scratch = gap, summary["idmm+ft"]["top1"][0], summary["scratch"]["top1"][0]
    if difference > noise:
        outcome = "holds"
    elif difference < -noise:
        outcome = "does not hold: scratch is better"
    else:
        outcome = "is not shown: the difference is within one standard deviation"
    return (f"IDMM → fine-tune {ours * 100:.1f} % vs supervised from scratch {scratch * 100:.1f} % test top-1 "
            f"(difference {difference * 100:+.1f} points, largest std {noise * 100:.1f}): the paper's ordering "
            f"{outcome} at this budget.")


def findings(summary: dict) -> list[str]:
    """The table's pairwise differences as markdown rows, each read against the seeds' spread."""
    titles = dict(COLUMNS)
    rows = ["| comparison (first − second) | measure | difference, points | largest std | reading |",
            "|---|---|---|---|---|"]
    for first, second, key, what in FINDINGS:
        if (gap := _gap(summary, first, second, key)) is not None:
            difference, noise = gap
            points = round(difference * 100, 1) + 0.0  # + 0.0: a rounded -0.0 prints as +0.0
            rows.append(f"| {what} (`{first}` − `{second}`) | {titles[key]} | {points:+.1f} | "
                        f"{noise * 100:.1f} | {_reading(difference, noise)} |")
    return rows if len(rows) > 2 else []


def plot_curves(path: Path, runs: dict[str, list[dict]]) -> None:
    """kNN and class-head top-1 against views seen, averaged over seeds at the shared evaluation points."""
    import matplotlib
    matplotlib.use("Agg")  # no display; called from a CLI
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for index, (name, seeds) in enumerate(runs.items()):
        color = f"C{index}"  # one colour per variant: its pretraining dashed, its final stage solid
        for stage, style in (("pretrain", "--"), ("final", "-")):
            curves = [r[stage]["curve"] for r in seeds if r[stage]]
            if not curves:
                continue
            length = min(len(c) for c in curves)
            views = [curves[0][i][0] / 1e3 for i in range(length)]
            knn = [sum(c[i][1] for c in curves) / len(curves) for i in range(length)]
            left.plot(views, knn, style, marker=".", color=color, label=f"{name} ({stage})")
            if stage == "final":
                top1 = [sum(c[i][2] for c in curves) / len(curves) for i in range(length)]
                right.plot(views, top1, style, marker=".", color=color, label=name)
    left.set(title="kNN top-1 (k = 20) on the test split", xlabel="views seen (thousands)", ylabel="top-1")
    right.set(title="class-head test top-1", xlabel="views seen (thousands)", ylabel="top-1")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(path: Path, *, summary: dict, runs: dict, variants, budget: int, rate: float | None,
                  minutes: float | None, command: str, dataset: str, n_train: int, n_test: int, seeds: int,
                  imbalanced: bool = False) -> None:
    """The report; unequal classes (`imbalanced`) add the class head's balanced accuracy beside top-1."""
    path = Path(path)
    columns = COLUMNS[:5] + ((("balanced", "test balanced accuracy"),) if imbalanced else ()) + COLUMNS[5:]
    image = path.with_name(path.stem.lower() + "_curves.png")
    plot_curves(image, runs)
    budget_text = f"{budget:,} views per variant"
    if rate:
        budget_text += f" ({minutes:g} minutes at the {rate:.0f} views/s measured on this machine before the runs)"
    header = "| variant | " + " | ".join(title for _, title in columns) + " |"
    rule = "|---" * (len(columns) + 1) + "|"
    rows = [f"| {name} | " + " | ".join(_cell(stats.get(key), 1.0 if key == "minutes" else 100.0)
                                        for key, _ in columns) + " |" for name, stats in summary.items()]
    described = [f"- **{v.name}**: {v.description}" for v in variants if v.name in summary]
    text = f"""# Results: IDMM vs the alternatives at equal compute

Written by `core.compare` on {datetime.date.today().isoformat()}; machine: {machine()}.

Command: `{command}`

Data: {dataset}, {n_train} training images, {n_test} test images; {seeds} seeds (the seed also draws the
training subset). Budget: {budget_text}. A view is one 28 px crop through the backbone, forward and backward;
a pretrained variant spends 80 % of it pretraining and 20 % fine-tuning. Accuracies in %, mean ± sample std
over seeds. Stage-1 columns measure the pretrained backbone (kNN k = 20 and a linear probe on frozen
embeddings); final columns measure the backbone after fine-tuning (or after supervised training).

{header}
{rule}
{chr(10).join(rows)}

{_verdict(summary)}

{chr(10).join(findings(summary))}

"minutes" is the wall-clock of both stages with their evaluations on this machine: it moves with the
machine's load, while the budget in views, and so every accuracy, does not (runs are seeded).

Variants:
{chr(10).join(described)}

![curves]({image.name})
"""
    # The labels section (core/labels_report.py) has its own writer: keep it as it was.
    kept = labels_section(path.read_text()) if path.exists() else ""
    path.write_text(text + (f"\n{kept}\n" if kept else ""))


def labels_section(text: str) -> str:
    """The labels section of a report ('' if it has none)."""
    start, end = text.find(LABELS_BEGIN), text.find(LABELS_END)
    return text[start:end + len(LABELS_END)] if 0 <= start < end else ""


def without_labels_section(text: str) -> str:
    """The report with its labels section taken out."""
    kept = labels_section(text)
    return text.replace(kept, "") if kept else text


def summarise(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean and sample std over seeds of each measure, per variant (core.compare's arms' results)."""
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
