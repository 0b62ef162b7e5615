"""Load: 20 clients, each a tab of its own, poll the curves once a second (as the page's timer does)
and classify a photo every 3 seconds while a run trains in the same app. No request may fail;
latency and the app's memory are reported.

$VIT2040_LOAD_SECONDS sets how long (30 s by default; the report script's --load-minutes sets it).
"""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from tests.reliability.conftest import REFERENCE, classify, ensure_idle, start, status, wait_status

pytestmark = [pytest.mark.reliability(section="Load"), pytest.mark.slow]

LOAD_SECONDS_ENV = "VIT2040_LOAD_SECONDS"
CLIENTS = 20
PERIOD_S = 1.0  # a page's timer polls once a second
CLASSIFY_EVERY = 3  # periods; a person drops a photo now and then, not at the timer's pace
MEMORY_SAMPLE_S = 0.5
# Memory may grow with the run's history and gradio's per-tab state, but not without bound: the
# limit is generous, far above what the run needs, far below a leak of one upload per request.
GROWTH_LIMIT_MIB = 1024


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@pytest.mark.reliability(case="20 clients polling and classifying while a run trains")
def test_twenty_clients_while_a_run_trains(app, model_loaded, record):
    seconds = float(os.environ.get(LOAD_SECONDS_ENV, 30))
    control = model_loaded
    ensure_idle(control)
    start(control, epochs=1000)  # far more than the window: it trains throughout
    first = wait_status(control, lambda s: s.status == "running" and s.step >= 1)

    samples: list[int] = []  # VmRSS, KiB
    done = threading.Event()

    def sample_memory() -> None:
        while not done.is_set():
            samples.append(app.memory_kib()["VmRSS"])
            done.wait(MEMORY_SAMPLE_S)

    results: list[tuple[int, str, float, str]] = []  # (tab, request, seconds, error or "")
    ready = threading.Barrier(CLIENTS + 1)

    def tab(index: int) -> None:
        client = app.client()
        requests = [("poll curves", lambda: client.predict(sprites=False, replay=0, api_name="/tick")),
                    ("classify", lambda: classify(client, REFERENCE))]
        ready.wait()
        period = index  # tabs classify in turn, not all in the same second
        while not done.is_set():
            period_start = time.monotonic()
            for kind, call in requests[:2 if period % CLASSIFY_EVERY == 0 else 1]:
                began = time.perf_counter()
                try:
                    call()
                    error = ""
                except Exception as exc:  # any failure counts; the report lists it
                    error = f"{type(exc).__name__}: {exc}"
                results.append((index, kind, time.perf_counter() - began, error))
            period += 1
            done.wait(max(0.0, PERIOD_S - (time.monotonic() - period_start)))

    threads = [threading.Thread(target=tab, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    ready.wait()
    sampler = threading.Thread(target=sample_memory)
    sampler.start()
    began = time.monotonic()
    time.sleep(seconds)
    done.set()
    for thread in threads + [sampler]:
        thread.join(timeout=300)
    elapsed = time.monotonic() - began
    end_rss, peak_rss = app.memory_kib()["VmRSS"], app.memory_kib()["VmHWM"]
    last = status(control)
    ensure_idle(control)

    failures = [r for r in results if r[3]]
    latency = {kind: [s for _, k, s, e in results if k == kind and not e] for kind in ("poll curves", "classify")}
    figures = {
        "clients": CLIENTS, "seconds": round(elapsed, 1), "requests": len(results), "failed": len(failures),
        "requests_per_s": round(len(results) / elapsed, 1),
        **{f"{kind.replace(' ', '_')}_{name}_s": round(value, 3) for kind, values in latency.items()
           for name, value in (("p50", percentile(values, 50)), ("p95", percentile(values, 95)),
                               ("max", max(values, default=float("nan"))))},
        "p95_s": round(percentile([s for _, _, s, e in results if not e], 95), 3),
        "rss_start_mib": round(samples[0] / 1024), "rss_peak_mib": round(max(samples) / 1024),
        "rss_end_mib": round(end_rss / 1024), "rss_high_water_mib": round(peak_rss / 1024),
        "training_steps": last.step - first.step, "machine_load_1min": round(os.getloadavg()[0], 1),
    }
    record(f"{len(results):,} requests from {CLIENTS} clients in {elapsed:.0f} s, {len(failures)} failed; "
           f"p95 {figures['p95_s']:.2f} s; RSS {figures['rss_start_mib']} → peak {figures['rss_peak_mib']} → "
           f"end {figures['rss_end_mib']} MiB; the run trained {figures['training_steps']} steps meanwhile",
           **figures)
    assert not failures, failures[:5]
    assert {i for i, kind, _, _ in results if kind == "classify"} == set(range(CLIENTS))  # every tab was served
    assert last.status == "running" and last.step > first.step, last.text  # it trained throughout
    assert end_rss - samples[0] < GROWTH_LIMIT_MIB * 1024, figures
