import itertools
import json
import os
import signal

import pytest

from core import pipeline
from core.runs.folder import BEST, RECORD
from core.serve.model_file import ModelFile
from core.trainer.checkpoint import Checkpoint
from core.trainer.handover import HandOver
from scripts.make_folder_dataset import main as make_folder


def first_event(folder, kind):
    return next(e for e in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines()) if e["event"] == kind)


def last_event(folder, kind):
    return [e for e in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines()) if e["event"] == kind][-1]


@pytest.fixture(scope="module")
def few_labels(tmp_path_factory):
    """Three classes of 5 to 10 photos: at most 20 labels a class, so pretraining is expected to pay or tie."""
    folder = tmp_path_factory.mktemp("data") / "photos"
    assert make_folder([str(folder), "--classes", "3", "--largest", "10", "--imbalance", "2"]) == 0
    return f"folder:{folder}"


def held_out_curve(monkeypatch, figures):
    """The pretraining's held-out figures (core/handover.py) read `figures`: the random init's first."""
    figures = iter(figures)
    monkeypatch.setattr(HandOver, "figure", lambda self, embeddings: next(figures))


@pytest.mark.slow
def test_few_labels_pretrain_then_fine_tune_from_the_pretrained_backbone_within_the_minutes(few_labels, tmp_path,
                                                                                            capsys, monkeypatch):
    held_out_curve(monkeypatch, itertools.count(0.1, 0.01))  # every epoch better than the last on held-out images
    out = tmp_path / "run"
    assert pipeline.main(["--dataset", few_labels, "--minutes", "0.25", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "expected: " in printed
    assert "labelled images a class and ~" in printed and f"(why: {out / RECORD})" in printed  # one short line
    # one short line per event, a folder's path aside (a person's own paths are as long as they are)
    lines = [line.split(" (why: ")[0] for line in printed.replace(str(tmp_path), "OUT").splitlines()]
    long = [line for line in lines if len(line) >= 110 and not line.startswith(("auto recipe", "\r"))]
    assert not long, long
    assert "pipeline: pretraining, then fine-tuning, 15 s in all" in printed
    record = json.loads((out / RECORD).read_text())
    assert record["pretrain"] and record["expected_to_pay"] and record["labels_per_class"] <= 20
    assert "expected to match or beat supervised training from scratch (at most 20 labels a class)" in record["reason"]
    assert [s["stage"] for s in record["stages"]] == ["pretrain", "finetune"]
    assert record["model"] == "model.pt" and f"model {out / 'model.pt'}" in printed
    model = ModelFile.load(out / "model.pt")  # what a person takes home: the fine-tuned stage's, with its head
    assert model.head is not None and model.epoch == Checkpoint.load(out / "finetune" / "last.pt").epoch
    assert first_event(out / "pretrain", "RunStarted")["objective"] == "instance"
    assert Checkpoint.load(out / "pretrain" / "last.pt").config.stop_when_not_helping  # held-out hand-over
    ended = last_event(out / "pretrain", "Finished")
    assert record["stages"][0]["best_epoch"] == ended["epoch"] == Checkpoint.load(out / "pretrain" / BEST).epoch
    assert ended["best_epoch"] == ended["epoch"] and "best_backbone" not in ended  # the log keeps the epoch only
    tuned = first_event(out / "finetune", "RunStarted")
    assert tuned["objective"] == "supervised" and tuned["init_from"] == str(out / "pretrain" / BEST)
    # the fine-tuning stage is given what the clock left of the whole budget, not a fresh one
    assert Checkpoint.load(out / "finetune" / "last.pt").config.dataset == few_labels
    pretrained_s = last_event(out / "pretrain", "EpochMetrics")["elapsed_s"]
    assert first_event(out / "finetune", "BudgetFitted")["minutes"] < 0.25 - pretrained_s / 60


@pytest.mark.slow
def test_when_no_epoch_beats_the_random_init_on_held_out_images_the_rest_trains_from_scratch(few_labels, tmp_path,
                                                                                              capsys, monkeypatch):
    held_out_curve(monkeypatch, itertools.chain([0.9], itertools.repeat(0.2)))
    out = tmp_path / "run"
    assert pipeline.main(["--dataset", few_labels, "--minutes", "0.25", "--out", str(out)]) == 0
    assert "pipeline: supervised training from scratch" in capsys.readouterr().out
    record = json.loads((out / RECORD).read_text())
    assert [s["stage"] for s in record["stages"]] == ["pretrain", "supervised"]
    assert record["stages"][0]["best_epoch"] == 0
    assert last_event(out / "pretrain", "Finished")["reason"] == "handed over"
    started = first_event(out / "supervised", "RunStarted")
    assert started["objective"] == "supervised" and not started["init_from"]
    assert record["model"] == "model.pt" and ModelFile.load(out / "model.pt").trained_with.objective == "supervised"


@pytest.mark.slow
def test_never_trains_supervised_from_scratch_and_still_says_what_it_expected(few_labels, tmp_path, capsys):
    out = tmp_path / "run"
    assert pipeline.main(["--dataset", few_labels, "--minutes", "0.1", "--out", str(out), "--pretrain", "never"]) == 0
    assert "pipeline: supervised training from scratch" in capsys.readouterr().out
    record = json.loads((out / RECORD).read_text())
    assert not record["pretrain"] and record["expected_to_pay"]
    assert [s["stage"] for s in record["stages"]] == ["supervised"] and not (out / "pretrain").exists()
    started = first_event(out / "supervised", "RunStarted")
    assert started["objective"] == "supervised" and not started["init_from"]


def test_a_folder_that_already_holds_a_pipeline_run_is_refused_not_mixed_into(few_labels, tmp_path, capsys):
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "metrics.jsonl").write_text("")
    assert pipeline.main(["--dataset", few_labels, "--minutes", "1", "--out", str(tmp_path)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "pretrain" / "metrics.jsonl").read_text() == ""


def test_a_folder_that_cannot_load_is_an_error_not_a_traceback(tmp_path, capsys):
    out = tmp_path / "run"
    assert pipeline.main(["--dataset", f"folder:{tmp_path / 'nope'}", "--minutes", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    # nothing trained there: the folder may be used again
    assert pipeline.main(["--dataset", f"folder:{tmp_path / 'nope'}", "--minutes", "1", "--out", str(out)]) == 2
    assert "already holds" not in capsys.readouterr().err


@pytest.mark.slow
def test_a_stopped_pipeline_resumes_its_stage_and_goes_on_to_the_next(few_labels, tmp_path, capsys, monkeypatch):
    """SIGTERM (as Ctrl-C) at the pretraining's second evaluation: the pipeline stops with a checkpoint and a
    record that says how to go on; --resume finishes the pretraining from where it stopped, then fine-tunes
    from its best held-out epoch, and the record names the model. A finished pipeline is not resumed again."""
    reads = itertools.count()

    def figure(self, embeddings):
        n = next(reads)
        if n == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return 0.1 + 0.01 * n  # every epoch better than the last on held-out images

    monkeypatch.setattr(HandOver, "figure", figure)
    out = tmp_path / "run"
    assert pipeline.main(["--dataset", few_labels, "--minutes", "0.25", "--out", str(out)]) == 130
    assert f"resume with: python -m core.pipeline --resume {out}" in capsys.readouterr().out
    record = json.loads((out / RECORD).read_text())
    assert "model" not in record and 0 < record["spent_minutes"] < 0.25
    assert [(s["stage"], s["folder"], s["ended"]) for s in record["stages"]] == [("pretrain", "pretrain", "stopped")]
    stopped = Checkpoint.load(out / "pretrain" / "last.pt")
    assert stopped.resume.handover["figures"] == pytest.approx([0.1, 0.11, 0.12])

    assert pipeline.main(["--resume", str(out)]) == 0
    assert f"pipeline: resuming {out}" in capsys.readouterr().out
    record = json.loads((out / RECORD).read_text())
    assert [(s["stage"], s["ended"]) for s in record["stages"]] == [("pretrain", "completed"),
                                                                     ("finetune", "completed")]
    assert record["model"] == "model.pt" and record["spent_minutes"] > 0
    starts = [e for e in map(json.loads, (out / "pretrain" / "metrics.jsonl").read_text().splitlines())
              if e["event"] == "RunStarted"]
    assert [s["start_step"] == 0 for s in starts] == [True, False]  # one log, continued from the stop's step
    pretrained = Checkpoint.load(out / "pretrain" / "last.pt")
    assert record["stages"][0]["best_epoch"] == pretrained.epoch == Checkpoint.load(out / "pretrain" / BEST).epoch
    assert first_event(out / "finetune", "RunStarted")["init_from"] == str(out / "pretrain" / BEST)

    assert pipeline.main(["--resume", str(out)]) == 2
    assert "has finished: its model is" in capsys.readouterr().err


def test_resume_needs_a_pipeline_run_and_the_flags_otherwise(tmp_path, capsys):
    assert pipeline.main(["--resume", str(tmp_path)]) == 2
    assert "holds no pipeline run to resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        pipeline.main(["--minutes", "1"])
    assert "--dataset, --minutes and --out are required (or --resume DIR)" in capsys.readouterr().err
