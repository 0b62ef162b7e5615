"""Faults: a diverging run, a process killed mid-write, and a person pressing buttons out of order or
handing the app a checkpoint it must not trust. Most cases drive the running app; the two about
checkpoints on disk run the trainer itself (in this process, and in a child killed with SIGKILL)."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from gradio_client import handle_file
from PIL import Image

from core import events as ev
from core.data.sources import load_dataset
from core.plan.presets import preset
from core.trainer.checkpoint import Checkpoint
from core.trainer.loop import Trainer
from tests.core.conftest import make_splits
from tests.reliability.checkpoint_writer import CONFIG
from tests.reliability.conftest import (
    REFERENCE,
    ROOT,
    app_error,
    classify,
    ensure_idle,
    start,
    status,
    top_class,
    wait_status,
)

pytestmark = [pytest.mark.reliability(section="Faults"), pytest.mark.slow]

STEPS_PER_EPOCH = 16  # 2,040 training images in batches of 128 (the cpu-quick preset)


@pytest.mark.reliability(case="absurd learning rate (1e20) from the Start button")
def test_an_absurd_learning_rate_stops_the_run_with_a_message(model_loaded, record):
    client = model_loaded
    start(client, lr=1e20, epochs=2)
    ended = wait_status(client, lambda s: s.status not in ("idle", "running"))
    assert ended.status == "failed", ended.text
    message = ended.text.split("\n", 1)[1].strip()
    assert "loss became" in message and "training stopped" in message, message
    assert top_class(classify(client, REFERENCE))  # the app carries on serving
    record(f"status “failed” at step {ended.step}: “{message}”; the app kept serving")


@pytest.mark.reliability(case="NaN after a good checkpoint: the last good one loads")
def test_a_diverging_run_keeps_its_last_good_checkpoint(tmp_path, record):
    data = make_splits()
    trainer = Trainer(CONFIG, data, out_dir=tmp_path)
    trainer.lrs[trainer.steps_per_epoch:] = 1e20  # a sane first epoch, then an absurd learning rate
    events = []
    failed = trainer.run(events.append)
    assert isinstance(failed, ev.Failed), failed
    saved = [e for e in events if isinstance(e, ev.CheckpointSaved)]
    assert [e.epoch for e in saved] == [1] and failed.checkpoint == saved[0].path
    assert "loss became" in failed.message and f"the last good checkpoint is {saved[0].path}" in failed.message
    good = Checkpoint.load(failed.checkpoint)
    assert good.epoch == 1 and all(torch.isfinite(w).all() for w in good.backbone.values())
    resumed = Trainer(CONFIG, data, out_dir=tmp_path / "again", resume_from=failed.checkpoint).run(lambda e: None)
    assert resumed.reason == "completed" and math.isfinite(resumed.knn_top1)
    record(f"stopped at step {failed.step}: “{failed.message}”; that checkpoint (epoch 1) loads with finite "
           f"weights, and a run resumed from it completed (kNN {resumed.knn_top1:.2f})")


@pytest.mark.reliability(case="kill -9 while writing a checkpoint")
def test_a_kill_while_writing_leaves_the_previous_checkpoint(tmp_path, record):
    errors = tmp_path / "child.log"  # a file, not a pipe: a full pipe would block the child before it stalls
    with errors.open("w") as sink:
        child = subprocess.Popen([sys.executable, "-m", "tests.reliability.checkpoint_writer", str(tmp_path)],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=sink, text=True)
    line = child.stdout.readline()  # returns when the child stalls mid-write, or "" if it died
    assert line.startswith("mid-write"), errors.read_text()
    written, total = map(int, line.split()[1:])
    [partial] = tmp_path.glob(".last.pt.*.tmp")
    assert partial.stat().st_size == written < total
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL
    child.stdout.close()

    previous = Checkpoint.load(tmp_path / "last.pt")
    assert previous.epoch == 1
    resumed = Trainer(CONFIG, make_splits(), out_dir=tmp_path, resume_from=tmp_path / "last.pt").run(lambda e: None)
    assert resumed.reason == "completed" and Checkpoint.load(tmp_path / "last.pt").epoch == CONFIG.epochs
    assert not partial.exists()  # the next successful save removed the dead writer's temp file
    record(f"SIGKILL with {written:,} of {total:,} bytes of the epoch-2 checkpoint written: last.pt was still the "
           f"epoch-1 checkpoint, loaded, and the run resumed from it to completion; its next save removed the "
           f"partial temp file {partial.name}", bytes_written=written, bytes_total=total)


def running(client) -> None:
    """A run (cpu-quick, digits) that is training now."""
    if status(client).status != "running":
        ensure_idle(client)
        start(client, epochs=60)
    wait_status(client, lambda s: s.status == "running" and s.step >= 1)


@pytest.mark.reliability(case="Stop in the middle of an epoch")
def test_stop_in_the_middle_of_an_epoch(app, model_loaded, record):
    client = model_loaded
    ensure_idle(client)
    start(client, epochs=60)
    wait_status(client, lambda s: s.status == "running" and s.step >= 3)
    client.predict(api_name="/stop")
    stopped = wait_status(client, lambda s: s.status != "running")
    assert stopped.status == "stopped" and stopped.step % STEPS_PER_EPOCH, stopped.text
    run_id = stopped.label.split(" · ")[0]
    saved = Checkpoint.load(app.runs_dir / run_id / "pretrain" / "last.pt")  # one stage: a pretraining
    assert saved.step == stopped.step
    record(f"“{stopped.text.splitlines()[-1]}”, step {stopped.step} of epoch 1 ({STEPS_PER_EPOCH} steps); "
           f"its checkpoint holds step {saved.step}")


@pytest.mark.reliability(case="Resume after Stop")
def test_resume_after_stop_continues_the_same_run(model_loaded, record):
    client = model_loaded
    if status(client).status != "stopped":
        running(client)
        client.predict(api_name="/stop")
    stopped = wait_status(client, lambda s: s.status == "stopped")
    client.predict(api_name="/resume")
    resumed = wait_status(client, lambda s: s.status == "running" and s.step > stopped.step + 2)
    assert resumed.label == stopped.label  # the same run, its curve carried on
    assert f"resumed at step {stopped.step}" in resumed.text, resumed.text
    record(f"stopped at step {stopped.step}; after Resume the same run ({resumed.label.split(' · ')[0]}) went on: "
           f"“{resumed.text.splitlines()[-1]}”, now at step {resumed.step}")


@pytest.mark.reliability(case="Start twice")
def test_a_second_start_is_refused(model_loaded, record):
    client = model_loaded
    running(client)
    before = status(client)
    message = app_error(lambda: start(client, epochs=60))
    assert "already going" in message, message
    after = wait_status(client, lambda s: s.step > before.step)
    assert after.label == before.label and after.status == "running"  # the first run trains on
    record(f"refused: “{message}”; the first run kept training")


@pytest.mark.reliability(case="classify while training")
def test_classify_while_training(model_loaded, record):
    client = model_loaded
    running(client)
    before = status(client)
    timings, labels = [], set()
    for _ in range(5):
        started = time.perf_counter()
        result = classify(client, REFERENCE)
        timings.append(time.perf_counter() - started)
        assert len(result[1]["confidences"]) == 5
        labels.add(top_class(result)[0])
    after = status(client)
    assert after.status == "running" and after.step > before.step
    record(f"5 classifications during steps {before.step}–{after.step}, each answered (top class "
           f"{', '.join(sorted(labels))}); median {sorted(timings)[2]:.2f} s", median_s=round(sorted(timings)[2], 3))
    ensure_idle(client)


def folder_checkpoint(root, out) -> None:
    """A step-0 checkpoint of a small folder dataset (28 px, the cpu-quick model)."""
    for name in ("cats", "dogs"):
        for i in range(5):
            (root / name).mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(i + 10 * len(name)).integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    config = preset("cpu-quick").with_overrides(dataset=f"folder:{root}", data_size=28, epochs=1, warmup_epochs=0)
    Trainer(config, load_dataset(config.dataset, size=28), out_dir=out).save(lambda event: None)


@pytest.mark.reliability(case="load a checkpoint trained on other data")
def test_a_checkpoint_from_other_data_is_refused(model_loaded, tmp_path, record):
    client = model_loaded
    ensure_idle(client)
    folder_checkpoint(tmp_path / "photos", tmp_path / "run")
    Image.new("L", (28, 28), 128).save(tmp_path / "photos" / "dogs" / "0.png")  # the folder changed since
    before = status(client)
    message = app_error(lambda: client.predict(handle_file(str(tmp_path / "run" / "last.pt")), api_name="/load"))
    assert message.startswith("refused, the model before it still answers: checkpoint was trained on other data"), \
        message
    assert status(client).label == before.label and top_class(classify(client, REFERENCE))
    record(f"refused: “{message}”; the model in service stayed")


class _Payload:
    """Unpickling this runs a shell command, as a malicious checkpoint would."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.reliability(case="load a checkpoint carrying a pickled payload")
def test_a_checkpoint_carrying_a_pickled_payload_is_refused_unexecuted(app, model_loaded, fresh_checkpoint, tmp_path,
                                                                       record):
    client = model_loaded
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pt"
    payload = torch.load(fresh_checkpoint, weights_only=True)  # a genuine checkpoint, plus the payload
    torch.save({**payload, "note": _Payload(marker)}, evil)
    message = app_error(lambda: client.predict(handle_file(str(evil)), api_name="/load"))
    assert "evil.pt is not a plain-data model file or checkpoint and was refused unexecuted" in message, message
    assert "GLOBAL posix.system" in message and "weights_only" not in message, message  # no advice to disarm it
    assert str(app.runs_dir.parent) not in message, message  # the file's name, not the server's temp path
    assert not marker.exists()
    assert top_class(classify(client, REFERENCE))
    record(f"refused: “{message}”; the payload never ran (no {marker.name} file); the app kept serving")
