"""`python -m bench.run --quick` end to end: the table's structure and the results file, never timings."""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import run
from core.data import sources as data

needs_fashion = pytest.mark.skipif(not data.FASHION_DEBIAN_DIR.is_dir(),
                                   reason="Debian package dataset-fashion-mnist not installed")

RESULT = re.compile(r"^(pass|FAIL|—)$")
ROOT = Path(__file__).resolve().parents[2]


def bench_run(*args: str) -> str:
    """`python -m bench.run ARGS` as a user types it (a process of its own: it sets torch's threads)."""
    done = subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def table_rows(text: str) -> dict[str, list[str]]:
    """The results table as {row key: its 7 cells}."""
    lines = text.split("## Results", 1)[1].strip().splitlines()
    assert lines[0] == "| # | measurement | ours | reference | ratio | bar | result |"
    assert lines[1] == "|---|---|---|---|---|---|---|"
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 7, line
        rows[cells[0]] = cells
    return rows


def check_report(text: str, out, command: str, keys: list[str], sections: list[int]) -> dict[str, list[str]]:
    assert out.read_text().strip() == text
    for fact in ("- CPU: ", "- RAM: ", "- device: cpu", "- date: ", "- software: torch ", "- load average"):
        assert fact in text
    assert f"- command: `{command}`" in text
    rows = table_rows(text)
    assert list(rows) == keys
    for key, (_, what, ours, _reference, ratio, bar, result) in rows.items():
        assert what and ours and RESULT.match(result), key
        assert (bar == "none") == (result == "—"), key  # a row with a bar passes or fails
        assert ratio == "—" or re.fullmatch(r"\d+\.\d\d×", ratio), key
    for number in range(1, 8):
        assert (f"\n## {number}. " in text) == (number in sections)
    return rows


@needs_fashion
def test_quick_run_of_the_fast_rows(tmp_path):
    out = tmp_path / "RESULTS.md"
    # One torch thread: the suite may share the cores, where two threads slow every step down a lot.
    text = bench_run("--quick", "--rows", "6,1,2,4", "--device", "cpu", "--threads", "1", "--out", str(out))
    rows = check_report(text, out,
                        f"python -m bench.run --quick --rows 6,1,2,4 --device cpu --threads 1 --out {out}",
                        ["1a", "1b", "2a", "2b", "4", "6"], [1, 2, 4, 6])
    assert rows["1a"][5] == "≥ 1.5×" and rows["4"][5] == "p95 ≤ 50 ms"  # the CPU bars
    assert "6 per image" in rows["1a"][1] and "1 per image" in rows["1b"][1]  # paper multi-crop vs cpu-quick
    assert "| 30 | 1 |" in text and "| 60 | 1 |" in text  # one line per dataset size


@needs_fashion
@pytest.mark.slow
def test_quick_run_of_every_row(tmp_path):
    out = tmp_path / "RESULTS.md"
    text = bench_run("--quick", "--device", "cpu", "--threads", "1", "--out", str(out))
    rows = check_report(text, out,
                        f"python -m bench.run --quick --device cpu --threads 1 --out {out}",
                        ["1a", "1b", "2a", "2b", "3", "4", "5", "6", "7a", "7b", "7c"], [1, 2, 3, 4, 5, 6, 7])
    assert rows["3"][5] == "≥ 10×" and rows["5"][5] == "≤ 3 GiB"
    assert rows["7c"][5] == "none"  # the 15-minute goal is a GPU's; a CPU run has no bar
    assert "800 epochs (6,400 steps), 80 evaluations" in text and "200 epochs (1,600 steps)" in text
    assert 0.1 < float(rows["5"][2].removesuffix(" GiB")) < 64  # a real resident size was read


@pytest.mark.parametrize("text", ["8", "x", "", "0,1"])
def test_rows_outside_the_table_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        run.parse_rows(text)
    assert run.parse_rows("4, 1,4") == [1, 4]
