"""Run the reliability cases (tests/reliability) and write docs/RELIABILITY.md from what they recorded.

    .venv/bin/python -m scripts.reliability_report                    # the CI-length load test (30 s)
    .venv/bin/python -m scripts.reliability_report --load-minutes 10  # the long load test

Every row comes from that test run: the case, what happened (the message shown, the prediction,
the figures) and whether it held. Exits with pytest's status, so a case that does not hold fails.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from tests.reliability.conftest import RESULTS_ENV
from tests.reliability.test_load import LOAD_SECONDS_ENV

ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/reliability"
OUT = ROOT / "docs" / "RELIABILITY.md"
SECTIONS = ("Bad uploads", "Bad datasets", "Faults", "Load", "Exposure")
FIGURES = {  # figure key -> how the load table names it
    "clients": "concurrent clients", "seconds": "duration (s)", "requests": "requests",
    "failed": "failed requests", "requests_per_s": "requests per second",
    "poll_curves_p50_s": "poll curves: p50 (s)", "poll_curves_p95_s": "poll curves: p95 (s)",
    "poll_curves_max_s": "poll curves: max (s)", "classify_p50_s": "classify: p50 (s)",
    "classify_p95_s": "classify: p95 (s)", "classify_max_s": "classify: max (s)",
    "p95_s": "all requests: p95 (s)", "rss_start_mib": "app RSS at start (MiB)",
    "rss_peak_mib": "app RSS peak while loaded (MiB)", "rss_end_mib": "app RSS at end (MiB)",
    "rss_high_water_mib": "app RSS high-water mark since launch (MiB)",
    "training_steps": "training steps meanwhile", "machine_load_1min": "machine load average (1 min) at end",
}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    memory_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
    gpus = len(list(Path("/proc/driver/nvidia/gpus").glob("*")))
    return (f"{cpu}, {os.cpu_count()} cores, {memory_kib / 2**20:.0f} GiB, {gpus or 'no'} GPU; {platform.platform()}; "
            f"Python {platform.python_version()}, torch {version('torch')}, gradio {version('gradio')}, "
            f"Pillow {version('pillow')}")


def cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(rows: list[dict], *, command: str, started: datetime.datetime, seconds: float, status: int,
           load_before: float) -> str:
    held = sum(row["outcome"] == "held" for row in rows)
    lines = [
        "# Reliability",
        "",
        "What the app and the command line do when people and machines misbehave (issue 6). Each row is "
        "one test in `tests/reliability/`; this file is written from a run of those tests by "
        "`scripts/reliability_report.py`, not by hand.",
        "",
        f"- **Date**: {started:%Y-%m-%d %H:%M} (local time)",
        f"- **Machine**: {machine()}",
        f"- **Command**: `{command}`",
        f"- **Run**: {len(rows)} cases, {held} held, {len(rows) - held} did not; pytest exit status {status}; "
        f"{seconds / 60:.1f} min in all; machine load average {load_before:.1f} when it started"
        + (" (other jobs shared the cores)" if load_before > 0.5 * (os.cpu_count() or 1) else ""),
        "",
        "Most cases drive the real app (`python -m demo.app`, started as a subprocess on 127.0.0.1) over HTTP "
        "with `gradio_client`, as a browser tab or a script reaches it.",
    ]
    for section in [*SECTIONS, *sorted({r["section"] for r in rows} - set(SECTIONS))]:
        members = [row for row in rows if row["section"] == section]
        if not members:
            continue
        lines += ["", f"## {section}", "", "| case | what happened | held |", "|---|---|---|"]
        for row in members:
            outcome = "held" if row["outcome"] == "held" else f"**{row['outcome']}**"
            happened = row["happened"]
            if row["failure"] and row["failure"] != happened:
                happened = f"{happened} (failed: {row['failure']})"
            lines.append(f"| {cell(row['case'])} | {cell(happened)} | {outcome} |")
        for row in members:
            figures = {key: value for key, value in row["figures"].items() if key in FIGURES}
            if section == "Load" and figures:
                lines += ["", f"Figures for “{row['case']}”:", "", "| figure | value |", "|---|---|"]
                lines += [f"| {FIGURES[key]} | {value:,} |" for key, value in figures.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.reliability_report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-minutes", type=float, help="how long the load test runs (default: its CI length)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    command = " ".join(["python -m scripts.reliability_report", *(argv if argv is not None else sys.argv[1:])])
    env = dict(os.environ)
    if args.load_minutes is not None:
        env[LOAD_SECONDS_ENV] = str(args.load_minutes * 60)
    started, load_before, clock = datetime.datetime.now(), os.getloadavg()[0], time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:
        results = Path(scratch) / "results.json"
        env[RESULTS_ENV] = str(results)
        status = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TESTS],
                                cwd=ROOT, env=env).returncode
        if not results.exists():
            print(f"reliability_report: pytest wrote no results (exit status {status})", file=sys.stderr)
            return status or 1
        rows = json.loads(results.read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, command=command, started=started, seconds=time.monotonic() - clock,
                               status=status, load_before=load_before))
    print(f"reliability_report: wrote {args.out} ({len(rows)} cases)")
    return status


if __name__ == "__main__":
    sys.exit(main())
