"""Row 5: peak resident memory of the app while it trains `cpu-quick` and refreshes UMAP pictures.

The parent (`measure`) runs this module as a child process, so the figure is the app's alone. The
child holds what the app holds: a `demo.session.Session` (training thread, UMAP worker, numba
warm-up, published classifier) and an `App` whose `tick` the browser's one-second timer would
call, here called by a loop with thumbnails drawn (the heavier picture). No server is started.
It prints one JSON line: peak RSS (getrusage ru_maxrss, the process's high-water mark) and what ran.

    python -m bench.app_memory --epochs 20 --runs-dir /tmp/runs
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from core.plan.presets import preset

TERMINAL = ("completed", "stopped", "failed")


@dataclass(frozen=True)
class AppMemory:
    peak_bytes: int
    epochs: int
    snapshot_every: int
    layouts: int
    seconds: float
    status: str


def run_app(epochs: int, device: str, runs_dir: Path, timeout_s: float) -> dict:
    """Train through the Session as the app's Start button does; tick as its timer does."""
    # Imported here, in the child only: gradio is part of the app's footprint, not the parent's.
    from demo.app import SNAPSHOT_EVERY, TICK_S, App
    from demo.session import Session

    config = preset("cpu-quick")
    config = config.with_overrides(epochs=epochs, device=device,
                                   snapshot_every=config.snapshot_every or SNAPSHOT_EVERY)
    session = Session(runs_dir)
    app = App(session)
    start = time.perf_counter()
    drawn: dict = {}
    try:
        session.start(config)
        while True:
            drawn = app.tick(True, None, drawn).get("drawn", drawn)  # left out when nothing changed
            view = session.views()[-1]
            # Done when the run ended and its last snapshot is drawn (the worker keeps only the
            # newest pending snapshot, so not every epoch gets a layout).
            if view.status in TERMINAL and (view.status != "completed" or
                                            (view.layouts and view.layouts[-1].epoch == epochs)):
                break
            if time.perf_counter() - start > timeout_s:
                raise TimeoutError(f"no final layout after {timeout_s:.0f} s (status {view.status})")
            time.sleep(TICK_S)
    finally:
        session.close()
    return {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # KiB on Linux
            "epochs": epochs, "snapshot_every": config.snapshot_every, "layouts": len(view.layouts),
            "seconds": time.perf_counter() - start, "status": view.status}


def measure(epochs: int, device: str, timeout_s: float) -> AppMemory:
    with tempfile.TemporaryDirectory(prefix="vit2040-bench-") as runs_dir:
        done = subprocess.run([sys.executable, "-m", "bench.app_memory", "--epochs", str(epochs),
                               "--device", device, "--runs-dir", runs_dir, "--timeout", str(timeout_s)],
                              capture_output=True, text=True, timeout=timeout_s + 120,
                              cwd=Path(__file__).resolve().parent.parent)
    if done.returncode != 0:
        raise RuntimeError(f"the app's child process failed ({done.returncode}): {done.stderr[-2000:]}")
    result = AppMemory(**json.loads(done.stdout.strip().splitlines()[-1]))
    if result.status != "completed":
        raise RuntimeError(f"the app's training run ended {result.status}: {done.stderr[-2000:]}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.app_memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs-dir", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    print(json.dumps(run_app(args.epochs, args.device, args.runs_dir, args.timeout)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
