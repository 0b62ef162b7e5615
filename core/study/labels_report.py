"""docs/RESULTS.md's section on labels: accuracy against labelled images per class, per method and
budget, from every result core.compare left under its output folder (see core/variants.py).

The section sits between two markers, so the paper's table above it (core/results.py) and this one are
rewritten independently; the sentences that read the numbers are computed, each difference against
the larger standard deviation over seeds of the two arms it compares.
"""
from __future__ import annotations

import datetime
import re
from pathlib import Path

from core.study.results import LABELS_BEGIN, LABELS_END, machine, stats, without_labels_section

MEASURES = (("top1", "test top-1"), ("balanced", "balanced accuracy"))
REFERENCE = "scratch"
CNN = "cnn"
PRETRAINED = ("idmm+ft", "contrastive+ft")  # the pretrained ViTs, read against the CNN


def method(result: dict) -> str:
    """An arm's method: its variant, and what its pretraining saw when labels were few."""
    labelled = result["labels_per_class"] and result["pretrain_on"] == "labelled" and result["pretrain"]
    return result["variant"] + (" (pretrained on the labelled only)" if labelled else "")


def _minutes(tag: str) -> float:
    number = re.match(r"[\d.]+", tag)
    return float(number.group()) if number else 0.0


def grid(results: list[dict]) -> dict[str, dict[str, dict[int, dict]]]:
    """{budget tag: {method: {labels per class (0 = all): {measure: [mean, std], "seeds": n}}}}.

    An arm with every label belongs to both pretraining sets: with all labels, the labelled images are
    all the images."""
    cells: dict[str, dict[str, dict[int, list[dict]]]] = {}
    for result in results:
        names = [method(result)]
        if not result["labels_per_class"] and result["pretrain"]:
            names.append(result["variant"] + " (pretrained on the labelled only)")
        for name in names:
            cells.setdefault(result["budget_tag"], {}).setdefault(name, {}).setdefault(
                result["labels_per_class"], []).append(result)
    table = {}
    for tag in sorted(cells, key=_minutes):
        table[tag] = {}
        for name, by_k in sorted(cells[tag].items()):
            table[tag][name] = {k: {**{key: stats([r["final"].get(key) for r in arms]) for key, _ in MEASURES},
                                    "seeds": len(arms)} for k, arms in by_k.items()}
    return table


def _order(ks) -> list[int]:
    return sorted(ks, key=lambda k: (k == 0, k))


def _label(k: int) -> str:
    return "all" if k == 0 else str(k)


def _cell(stat: list[float] | None) -> str:
    return "—" if stat is None else f"{stat[0] * 100:.1f} ± {stat[1] * 100:.1f}"


def markdown_table(methods: dict[str, dict[int, dict]], balanced: bool = True) -> list[str]:
    """One row per method, one column per labels-per-class value: 'top-1 / balanced' (mean ± std), or
    top-1 alone when the test split's classes are equal (the two are then the same number)."""
    ks = _order({k for by_k in methods.values() for k in by_k})
    rows = ["| method | " + " | ".join(f"{_label(k)} per class" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]

    def cell(stat: dict) -> str:
        both = f"{_cell(stat['top1'])} / {_cell(stat['balanced'])}" if balanced else _cell(stat["top1"])
        return f"{both} ({stat['seeds']})"

    for name, by_k in methods.items():
        cells = [cell(by_k[k]) if k in by_k else "not run" for k in ks]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def readings(methods: dict[str, dict[int, dict]], reference: str = REFERENCE,
             names: tuple[str, ...] | None = None) -> list[str]:
    """Each method (or those `names`) against `reference`, at each labels count, in words."""
    if reference not in methods:
        return [f"`{reference}` was not run at this budget: nothing to compare with."]
    lines = []
    for name, by_k in methods.items():
        if name == reference or (names is not None and not name.startswith(names)):
            continue
        verdicts = []
        for k in _order(by_k):
            ours, theirs = by_k[k]["top1"], methods[reference].get(k, {}).get("top1")
            if ours is None or theirs is None:
                continue
            gap, noise = ours[0] - theirs[0], max(ours[1], theirs[1])
            seeds = min(by_k[k]["seeds"], methods[reference][k]["seeds"])
            word = ("one seed: not read" if seeds < 2 else "within the spread" if abs(gap) <= noise
                    else "better" if gap > 0 else "worse")
            verdicts.append((k, word, f"{_label(k)}: {gap * 100:+.1f} (std {noise * 100:.1f}, {word})"))
        if verdicts:
            lines.append((f"- **{name}** − {reference}, test top-1 points by labels per class: "
                          + "; ".join(text for _, _, text in verdicts) + ". " + _crossing(verdicts)).rstrip())
    return lines


def _crossing(verdicts: list[tuple[int, str, str]]) -> str:
    verdicts = [v for v in verdicts if not v[1].startswith("one seed")]
    words = [word for _, word, _ in verdicts]
    if len(words) < 2:  # one count read (or none): nothing crosses
        return ""
    if len(set(words)) == 1:
        return f"The same reading at every count: {words[0]}."
    changes = [f"between {_label(a[0])} and {_label(b[0])} ({a[1]} → {b[1]})"
               for a, b in zip(verdicts, verdicts[1:]) if a[1] != b[1]]
    return "The reading changes " + ", ".join(changes) + "."


def plot(path: Path, table: dict[str, dict[str, dict[int, dict]]], n_per_class: int) -> None:
    """Both measures against labels per class (log axis; 'all' at the training set's count per class):
    lines for the shortest budget, open markers for the longer ones."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    names = sorted({name for methods in table.values() for name in methods})
    for axis, (key, title) in zip(axes, MEASURES):
        for b, (tag, methods) in enumerate(table.items()):
            for name, by_k in methods.items():
                ks = [k for k in _order(by_k) if by_k[k][key]]
                x = [k or n_per_class for k in ks]
                mean = [by_k[k][key][0] * 100 for k in ks]
                std = [by_k[k][key][1] * 100 for k in ks]
                color = f"C{names.index(name)}"
                axis.errorbar(x, mean, yerr=std, color=color, capsize=3, marker="o" if b == 0 else "s",
                              linestyle="-" if b == 0 else "none", mfc=color if b == 0 else "none",
                              label=f"{name} · {tag}")
        axis.set(xscale="log", title=f"{title} on the test split", xlabel="labelled images per class",
                 ylabel=f"{title} (%)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def section(results: list[dict], *, command: str, dataset: str, n_train: int, n_classes: int, seeds: int,
            rate: float | None, image: str, imbalanced: bool = True) -> str:
    table = grid(results)
    parts = [LABELS_BEGIN, "## When does pretraining pay? Labels per class and budget", "",
             f"Written by `core.compare` on {datetime.date.today().isoformat()}; machine: {machine()}.", "",
             f"Command (the latest): `{command}`", "",
             f"Data: {dataset}, {n_train} training images in {n_classes} classes; the test split is unchanged. "
             "Fine-tuning and supervised training see K labelled images per class (drawn with the seed, "
             "nested across K); pretraining sees every training image, or with \"pretrained on the labelled "
             "only\", the same K per class. Each cell: "
             + ("test top-1 / balanced accuracy" if imbalanced else
                "test top-1 (the test split's classes are equal, so balanced accuracy is the same number)")
             + " in %, mean ± sample std over seeds (how many in brackets). "
             "A budget is views seen, the same for every ViT arm"
             + (f" (minutes at the {rate:.0f} views/s measured before the first runs)" if rate else "")
             + "; the CNN gets the same minutes through its own cost per view.", ""]
    for tag, methods in table.items():
        parts += [f"### Budget {tag}", "", *markdown_table(methods, imbalanced), "", *readings(methods), ""]
        if CNN in methods:  # the paper's claim: a ViT pretrained this way can match a CNN on small data
            parts += ["Against the CNN:", "", *readings(methods, CNN, PRETRAINED), ""]
    parts += [f"![accuracy against labels per class]({image})", "", _limits(table, dataset, seeds), "", LABELS_END]
    return "\n".join(parts)


def _limits(table: dict, dataset: str, seeds: int) -> str:
    """What these numbers cannot show, from what was run."""
    budgets = ", ".join(table) or "none"
    return (f"What these numbers do not show: another dataset than {dataset}; budgets other than {budgets} "
            "(the paper pretrains for 800 epochs, these for tens); recipes tuned per label count (every arm "
            "runs the same recipes as the table above, chosen before the runs); and, with "
            f"{seeds} seed{'s' if seeds != 1 else ''} an arm, a spread that is itself rough: a difference within "
            "one standard deviation is no difference shown. A cell that reads \"not run\" was not measured.")


def write_labels_section(path: Path, results: list[dict], **facts) -> None:
    """Replace (or append) the section in the report at `path`, and draw its plot beside it."""
    path = Path(path)
    image = path.with_name(path.stem.lower() + "_labels.png")
    plot(image, grid(results), facts["n_train"] // facts["n_classes"])
    text = section(results, image=image.name, **facts)
    old = path.read_text() if path.exists() else ""
    path.write_text(without_labels_section(old).rstrip() + "\n\n" + text + "\n")
