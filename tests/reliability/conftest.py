"""Reliability cases (issue 6): the app and the command line when people and machines misbehave.

Every test marked `reliability(section=..., case=...)` is one row of docs/RELIABILITY.md. A test
calls `record(happened, **figures)` to say what it saw (the message shown, the prediction, the
latency); the outcome says whether the case held. With $VIT2040_RELIABILITY_RESULTS set, the rows
are written there as JSON when the session ends (`python -m scripts.reliability_report` does that).

Most cases drive the real app: one `python -m demo.app` subprocess on 127.0.0.1 for the whole
session, reached over HTTP with gradio_client, as a browser tab or a script would reach it.
"""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from core.data.sources import load_dataset
from core.plan.presets import preset
from core.trainer.loop import Trainer
from demo.embedding_plot import UMAP_TITLE
from demo.text import NOT_ANSWERED

ROOT = Path(__file__).resolve().parents[2]
RESULTS_ENV = "VIT2040_RELIABILITY_RESULTS"
REFERENCE = ROOT / "assets" / "examples" / "sneaker.png"  # a Fashion-MNIST test image as a product photo
REFERENCE_CLASS = "Sneaker"  # its true class
STATUS = re.compile(r"\*\*(?P<status>\w+)\*\* · (?P<label>.*?) · epoch \d+/\d+ · step (?P<step>\d+)/(?P<total>\d+)")
PLANNING = re.compile(r"\*\*planning\*\* · (?P<label>.*?) · ")
NOTES = pytest.StashKey[dict]()
_ROWS: list[dict] = []


# -- recording ---------------------------------------------------------------------------------

@pytest.fixture
def record(request):
    """`record(happened, **figures)`: what this case did, for its row in docs/RELIABILITY.md."""
    notes = request.node.stash.setdefault(NOTES, {"happened": "", "figures": {}})

    def note(happened: str, **figures) -> None:
        notes["happened"] = happened
        notes["figures"].update(figures)
    return note


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    markers = list(item.iter_markers("reliability"))
    # One row per case: from the call, or from setup when the case never got to run.
    if markers and (report.when == "call" or (report.when == "setup" and not report.passed)):
        meta = {}
        for marker in reversed(markers):  # the closest marker (a param's) wins over the module's
            meta.update(marker.kwargs)
        notes = item.stash.get(NOTES, {"happened": "", "figures": {}})
        outcome = "held" if report.passed else "skipped" if report.skipped else "not held"
        failure = "" if report.passed else _first_line(report)
        _ROWS.append({"section": meta.get("section", "?"), "case": meta.get("case", item.name),
                      "test": item.nodeid, "outcome": outcome, "happened": notes["happened"] or failure,
                      "failure": failure, "figures": notes["figures"], "seconds": round(report.duration, 2)})
    return report


def _first_line(report) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2]
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message.splitlines()[0] if crash is not None else str(report.longrepr).splitlines()[-1]


def pytest_sessionfinish(session):
    path = os.environ.get(RESULTS_ENV)
    if path:
        Path(path).write_text(json.dumps(_ROWS, indent=1))


# -- the running app ---------------------------------------------------------------------------

@dataclass
class RunningApp:
    url: str
    port: int
    proc: subprocess.Popen
    runs_dir: Path
    log: Path

    def client(self) -> Client:
        return Client(self.url, verbose=False, download_files=False)

    def memory_kib(self) -> dict[str, int]:
        """The app process's resident memory now (VmRSS) and its peak so far (VmHWM), in KiB."""
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines())
        return {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}

    def alive(self) -> bool:
        return self.proc.poll() is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def app(tmp_path_factory) -> RunningApp:
    """`python -m demo.app` exactly as a person starts it (default host), on a free port."""
    home = tmp_path_factory.mktemp("app")
    port, log = free_port(), home / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(home / "gradio")}
    with log.open("w") as sink:  # a file, not a pipe: a full pipe would block the app
        proc = subprocess.Popen([sys.executable, "-m", "demo.app", "--port", str(port), "--runs-dir",
                                 str(home / "runs")], cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    running = RunningApp(f"http://127.0.0.1:{port}/", port, proc, home / "runs", log)
    deadline = time.monotonic() + 180
    while True:
        assert running.alive(), log.read_text()
        try:
            httpx.get(running.url, timeout=2)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the app did not come up"
            time.sleep(0.5)
    yield running
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def client(app) -> Client:
    return app.client()


# -- talking to it -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    status: str  # idle | running | stopped | completed | failed, or "none" before any run
    label: str
    step: int
    total: int
    text: str


def status(client: Client) -> Status:
    """The status line the page shows, read through the same 1 s timer callback the page polls."""
    text = client.predict(sprites=False, replay=0, api_name="/tick")[0]
    match = STATUS.search(text)
    if match is None:
        planning = PLANNING.search(text)  # started: planning and loading before its first step
        return Status("idle", planning["label"], 0, 0, text) if planning else Status("none", "", 0, 0, text)
    return Status(match["status"], match["label"], int(match["step"]), int(match["total"]), text)


def wait_status(client: Client, done, timeout: float = 180.0) -> Status:
    deadline = time.monotonic() + timeout
    while not done(current := status(client)):
        assert time.monotonic() < deadline, f"timed out; status: {current.text}"
        time.sleep(0.25)
    return current


def ensure_idle(client: Client) -> None:
    """Stop whatever runs (a run is "idle" while its data loads, then "running")."""
    if status(client).status in ("idle", "running"):
        client.predict(api_name="/stop")
        wait_status(client, lambda s: s.status not in ("idle", "running"))


def start(client: Client, *, dataset="digits", folder="", epochs=60, lr=1.5e-3, batch_size=128) -> None:
    """Press Start. Runs train on digits by default: a run first measures its kNN baselines on the
    test split, and digits' 2,960 test images make that a few seconds instead of Fashion's 10,000."""
    client.predict(dataset=dataset, folder=folder, objective="instance", preset_name="cpu-quick", epochs=epochs,
                   batch_size=batch_size, lr=lr, api_name="/start")


def app_error(call) -> str:
    """The message a failing call shows the person (a gr.Error toast); fails if the call succeeds."""
    with pytest.raises(AppError) as info:
        call()
    return str(info.value)


def not_answered(result) -> str:
    """The reason the Classify panel gives for an image it did not answer: the panel is cleared (no earlier
    answer left beside the reason) and its notes say why; fails if it answered."""
    seen, top, neighbours, attention, notes = result
    assert seen is None and not top and not neighbours and attention is None, result
    prefix = NOT_ANSWERED.split("{")[0]
    assert notes.startswith(prefix), notes
    return notes.removeprefix(prefix)


def classify(client: Client, path: Path | str):
    """The Classify panel's upload event: (what the model sees, top-5 label dict, ...)."""
    return client.predict(handle_file(str(path)), api_name="/on_upload")


def top_class(result) -> tuple[str, float]:
    label = result[1]
    return label["label"], label["confidences"][0]["confidence"]


# -- a model to classify with ------------------------------------------------------------------

@pytest.fixture(scope="session")
def fresh_checkpoint(tmp_path_factory) -> Path:
    """The cpu-quick model at step 0 on Fashion-MNIST (seeded random weights): a real checkpoint
    that costs no training, and whose kNN vote still reads the reference photo sensibly."""
    out = tmp_path_factory.mktemp("fresh")
    config = preset("cpu-quick").with_overrides(epochs=1, warmup_epochs=0)
    Trainer(config, load_dataset(config.dataset), out_dir=out).save(lambda event: None)
    return out / "last.pt"


@pytest.fixture(scope="module")
def model_loaded(app, fresh_checkpoint) -> Client:
    """Nothing running, the step-0 model loaded through the Keep panel and in service; returns a client."""
    return load_model(app, fresh_checkpoint)


def load_model(app: RunningApp, checkpoint: Path) -> Client:
    """Stop any run, load `checkpoint` as a person would, and wait until it serves; returns a client.

    The app's worker publishes a loaded model's classifier and then draws its UMAP layout, so once
    the loaded run's layout is drawn, every later classification uses that model.
    """
    client = app.client()  # a tab of its own: its timer memo starts empty, so the first tick draws all
    ensure_idle(client)
    client.predict(handle_file(str(checkpoint)), api_name="/load")
    umap = UMAP_TITLE.split(" · ")[0]
    deadline = time.monotonic() + 300  # the first layout waits for UMAP's one-off compilation
    while True:
        tick = client.predict(sprites=False, replay=0, api_name="/tick")
        plots = [out["plot"] for out in tick if isinstance(out, dict) and "plot" in out]
        if f"loaded {checkpoint.name}" in tick[0] and any(umap in plot and "customdata" in plot for plot in plots):
            return client
        assert time.monotonic() < deadline, f"the loaded checkpoint was never drawn; status: {tick[0]}"
        time.sleep(0.25)
