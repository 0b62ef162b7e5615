"""The results table and the machine it was measured on, as markdown for the terminal and RESULTS.md."""
from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass, field

import torch

from bench.classify_latency import cpu_name

HEADER = ("#", "measurement", "ours", "reference", "ratio", "bar", "result")
GiB = 1024 ** 3


@dataclass(frozen=True)
class Row:
    """One line of the table. `passed` is None where the row has no bar."""

    key: str
    what: str
    ours: str
    reference: str = "—"
    ratio: str = "—"
    bar: str = "none"
    passed: bool | None = None

    def cells(self) -> tuple[str, ...]:
        result = "—" if self.passed is None else ("pass" if self.passed else "FAIL")
        return (self.key, self.what, self.ours, self.reference, self.ratio, self.bar, result)


@dataclass
class Section:
    """What one benchmark row produced: its table rows and the details written under them."""

    number: int
    title: str
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


def times(ratio: float) -> str:
    return f"{ratio:.2f}×"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device.type} (no accelerator used)" if device.type == "cpu" else device.type


def memory_total() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def machine_lines(device: torch.device, threads: int, command: str, load_start: str, load_end: str,
                  wall_s: float) -> list[str]:
    cores = os.cpu_count() or 1
    busy = max(float(load_start.split(" / ")[0]), 0.0) > 0.5 * cores
    lines = [
        f"- CPU: {cpu_name()}, {cores} logical cores ({len(os.sched_getaffinity(0))} usable by this process)",
        f"- RAM: {memory_total() / GiB:.1f} GiB",
        f"- device: {device_name(device)}",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- software: torch {torch.__version__}, Python {platform.python_version()}, {platform.platform()}",
        f"- torch threads in the benchmark process: {threads or 'torch default'} (DataLoader workers: 1 each; "
        "the app's child process in row 5: torch default)",
        f"- command: `{command}` ({wall_s / 60:.1f} min)",
        f"- load average (1 / 5 / 15 min): {load_start} at the start, {load_end} at the end "
        "(the end figure includes this benchmark's own load)",
    ]
    if busy:
        lines.append(f"- **the machine was busy at the start** (1-min load above half its {cores} cores: "
                     "other jobs shared the cores), so timings are pessimistic and noisier than on an idle machine")
    return lines


def table(sections: list[Section]) -> list[str]:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] * len(HEADER)) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for section in sections for row in section.rows]
    return lines


def markdown(sections: list[Section], machine: list[str]) -> str:
    lines = ["# Benchmarks", "", "Written by `python -m bench.run`; every row is measured in that one run.", "",
             "## Machine", "", *machine, "", "## Results", "", *table(sections), ""]
    for section in sections:
        lines += [f"## {section.number}. {section.title}", "", *section.details, ""]
    return "\n".join(lines)
