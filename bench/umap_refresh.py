"""Benchmark: umap-learn's default fit vs Projector's first fit and warm-started refresh.

    python -m bench.umap_refresh

Prints a markdown table. Data: 2,040 points x 128-D in 10 Gaussian clusters, the size of
the app's training set; each refresh sees the previous snapshot plus a little drift, as
successive training snapshots do. Wall time is what the app waits; CPU time is less
sensitive to other jobs sharing the cores.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
import warnings

import numba
import numpy as np
import torch
import umap

from core.serve.projection import Projector

N_POINTS, DIM, CLUSTERS, REFRESHES = 2040, 128, 10, 5


def clustered_embeddings(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N_POINTS, DIM) float32 points around CLUSTERS random centres, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, DIM))
    labels = rng.integers(0, CLUSTERS, N_POINTS)
    points = centres[labels] + rng.normal(size=(N_POINTS, DIM)) * 0.6
    return points.astype(np.float32), labels


def drifted(points: np.ndarray, steps: int, seed: int = 1) -> list[np.ndarray]:
    """`steps` snapshots, each the previous one plus small Gaussian drift."""
    rng = np.random.default_rng(seed)
    snapshots, current = [], points
    for _ in range(steps):
        current = current + rng.normal(size=points.shape).astype(np.float32) * 0.05
        snapshots.append(current)
    return snapshots


def timed(fn):
    """Run fn() once -> (wall seconds, process CPU seconds over all threads, result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def label_agreement(layout: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each point's k nearest 2-D neighbours that share its label."""
    d = ((layout[:, None, :] - layout[None, :, :]) ** 2).sum(-1)  # (N, N)
    np.fill_diagonal(d, np.inf)
    nearest = np.argpartition(d, k, axis=1)[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


def time_default(points: np.ndarray):
    # Its parallel, unseeded path has numba kernels of its own: compile them on a small
    # fit first so that, like ours, it is timed after warm-up.
    umap.UMAP().fit_transform(points[:300])
    return timed(lambda: umap.UMAP().fit_transform(points))


def machine_info() -> list[str]:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return [f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"- cores: {os.cpu_count()}, load average (1/5/15 min): {load}",
            f"- {platform.platform()}, Python {platform.python_version()}",
            f"- torch {torch.__version__}, umap-learn {umap.__version__}, "
            f"numba {numba.__version__}"]


def main() -> None:
    # umap's advisory warnings (e.g. on its default, unseeded parallelism) would break up the table.
    warnings.filterwarnings("ignore", category=UserWarning, module="umap")
    points, labels = clustered_embeddings()
    snapshots = drifted(points, REFRESHES)
    warm_wall, warm_cpu, _ = timed(Projector.warm_up)
    default_wall, default_cpu, default_layout = time_default(points)
    projector = Projector()
    first_wall, first_cpu, first_layout = timed(lambda: projector.project(points))
    refreshes = [timed(lambda s=s: projector.project(s)) for s in snapshots]
    refresh_wall = statistics.median(r[0] for r in refreshes)
    refresh_cpu = statistics.median(r[1] for r in refreshes)
    rows = [
        ("numba warm-up, once per process (`Projector.warm_up`)", warm_wall, warm_cpu, None),
        ("umap-learn default `UMAP().fit_transform`", default_wall, default_cpu,
         label_agreement(default_layout, labels)),
        ("`Projector.project`, first (fresh) fit", first_wall, first_cpu,
         label_agreement(first_layout, labels)),
        (f"`Projector.project`, warm refresh (median of {REFRESHES})", refresh_wall, refresh_cpu,
         label_agreement(refreshes[-1][2], labels)),
    ]
    print(f"UMAP of {N_POINTS} points x {DIM}-D ({CLUSTERS} Gaussian clusters)\n")
    print("| step | wall s | CPU s | 2-D 10-NN label agreement |")
    print("|---|---:|---:|---:|")
    for name, wall, cpu, agree in rows:
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {'-' if agree is None else f'{agree:.3f}'} |")
    print(f"\nDefault fit / refresh (wall): {default_wall / refresh_wall:.1f}x; "
          f"refresh walls: {', '.join(f'{r[0]:.2f}' for r in refreshes)} s\n")
    print("\n".join(machine_info()))


if __name__ == "__main__":
    main()
