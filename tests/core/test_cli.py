"""The command-line entry points, run as a user would run them (subprocesses on the digits set)."""
import json
import signal
import subprocess
import sys
import time

import pytest

from core.trainer.checkpoint import Checkpoint

pytestmark = pytest.mark.slow


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, **kwargs)


def events(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_train_evaluate_and_resume(tmp_path):
    out = tmp_path / "run"
    done = cli("core.train", "--dataset", "digits", "--epochs", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "completed at epoch 2" in done.stdout
    log = events(out / "metrics.jsonl")
    assert log[0]["event"] == "RunStarted" and log[-1]["event"] == "Finished"
    knn = [e["knn_top1"] for e in log if e["event"] == "EpochMetrics" and e["knn_top1"] is not None][-1]
    assert Checkpoint.load(out / "last.pt").epoch == 2

    evaluated = cli("core.evaluate", str(out / "last.pt"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"{knn:.4f}" in evaluated.stdout  # the same number the run reported
    assert "baselines: raw pixels" in evaluated.stdout

    more = cli("core.train", "--epochs", "3", "--out", str(out), "--resume", str(out / "last.pt"))
    assert more.returncode == 0, more.stderr
    started = [e for e in events(out / "metrics.jsonl") if e["event"] == "RunStarted"]
    assert started[-1]["start_step"] == started[0]["steps_per_epoch"] * 2
    assert Checkpoint.load(out / "last.pt").epoch == 3

    tuned = tmp_path / "tuned"
    ft = cli("core.finetune", str(out / "last.pt"), "--out", str(tuned), "--epochs", "2", "--resolution", "56")
    assert ft.returncode == 0, ft.stderr
    assert "completed at epoch 2" in ft.stdout and "test top-1" in ft.stdout
    top1 = [e["test_top1"] for e in events(tuned / "metrics.jsonl") if e["event"] == "EpochMetrics"][-1]
    config = Checkpoint.load(tuned / "last.pt").config
    assert config.objective == "supervised" and config.model.image_size == 56
    assert config.init_from == str(out / "last.pt")

    report = cli("core.evaluate", str(tuned / "last.pt"))
    assert report.returncode == 0, report.stderr
    assert f"class-head top-1 on 2960 test images: {top1:.4f}" in report.stdout
    assert "linear-probe top-1" in report.stdout
    assert len([line for line in report.stdout.splitlines() if line.split()[:1] in (["0"], ["9"])]) == 2


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "core.train", "--dataset", "digits", "--epochs", "100",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and '"StepMetrics"' in log.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "stopped at epoch" in stdout
    assert Checkpoint.load(out / "last.pt").step >= 1


def test_bad_input_gives_a_message_not_a_traceback(tmp_path):
    missing = cli("core.train", "--dataset", f"folder:{tmp_path / 'nope'}", "--out", str(tmp_path / "o"))
    assert missing.returncode == 2 and "error:" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "junk.pt").write_bytes(b"junk")
    refused = cli("core.evaluate", str(tmp_path / "junk.pt"))
    assert refused.returncode == 2 and "not a readable checkpoint" in refused.stderr
    not_there = cli("core.finetune", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o"))
    assert not_there.returncode == 2 and "checkpoint not found" in not_there.stderr
    assert "Traceback" not in not_there.stderr


def test_the_auto_recipe_is_the_default_for_datasets_without_a_tuned_preset(capsys):
    from core import train
    from core.data.cache import DatasetCache
    parse, datasets = train.build_parser().parse_args, DatasetCache()
    said = []
    for argv in (["--out", "x"], ["--out", "x", "--dataset", "digits"],
                 ["--out", "x", "--dataset", "digits", "--preset", "cpu-quick"]):
        train.config_from_args(parse(argv), datasets)
        said.append(capsys.readouterr().out.split(" recipe:")[0])
    assert said == ["cpu-quick", "auto", "cpu-quick"]


def test_labels_per_class_reach_the_config_of_a_training_and_a_fine_tuning_run(tmp_path):
    from core import finetune, train
    from core.data.cache import DatasetCache
    args = train.build_parser().parse_args(["--out", "x", "--objective", "supervised", "--labels-per-class", "5"])
    assert train.config_from_args(args, DatasetCache()).labels_per_class == 5
    pretrained = tmp_path / "a"
    done = cli("core.train", "--preset", "cpu-quick", "--dataset", "digits", "--epochs", "1", "--out", str(pretrained))
    assert done.returncode == 0, done.stderr
    args = finetune.build_parser().parse_args([str(pretrained / "last.pt"), "--out", "y", "--labels-per-class", "3"])
    config = finetune.config_from_args(args)
    assert (config.labels_per_class, config.objective) == (3, "supervised")
    tuned = tmp_path / "b"
    done = cli("core.finetune", str(pretrained / "last.pt"), "--epochs", "1", "--labels-per-class", "3",
               "--out", str(tuned))
    assert done.returncode == 0, done.stderr
    assert "30 train / " in done.stdout  # 3 labelled images of each of the 10 classes
    report = cli("core.evaluate", str(tuned / "last.pt"))
    assert report.returncode == 0 and ", 3 labels per class (30 labelled images)" in report.stdout
