"""The app's Session, driven as the UI drives it, on the digits set with a tiny model."""
import csv
import time

import numpy as np
import pytest
from PIL import Image

from core.config import AugmentConfig, ModelConfig, TrainConfig
from core.plan.presets import AUTO
from core.plan.request import ONLY, Request
from core.serve.model_file import ModelFile
from core.trainer.checkpoint import Checkpoint
from demo.session import Session

pytestmark = pytest.mark.slow

TINY = TrainConfig(dataset="digits", model=ModelConfig(dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32),
                   augment=AugmentConfig(n_global=1, n_local=0), epochs=2, batch_size=256, warmup_epochs=0,
                   knn_k=5, eval_every=1, snapshot_every=1, checkpoint_every=1)


def wait_for(predicate, timeout=180.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def session(tmp_path):
    s = Session(tmp_path / "runs")
    yield s
    s.close()


def digit_photo() -> Image.Image:
    """A dark '1' drawn on white paper, as a person would upload it."""
    image = Image.new("L", (120, 160), 255)
    image.paste(0, (55, 20, 68, 140))
    return image


def test_a_run_trains_publishes_a_classifier_and_projects_embeddings(session):
    assert session.start(TINY) == "started run-1"
    with pytest.raises(RuntimeError, match="already going"):
        session.start(TINY)
    wait_for(lambda: session.views()[-1].status == "completed")
    wait_for(lambda: len(session.views()[-1].layouts) == 2)  # one UMAP layout per snapshot
    view = session.views()[-1]
    assert view.step == view.total_steps > 0 and len(view.knn) == 2 and view.baselines is not None
    layout = view.layouts[-1]
    assert layout.xy.shape == (2040, 2) and np.isfinite(layout.xy).all()
    assert session.thumbnails().shape == (2040, 28, 28)
    prediction = session.classify(digit_photo())
    assert len(prediction.top) == 5 and prediction.top[0][1] >= prediction.top[-1][1]
    assert len(prediction.neighbours) == 8


def test_stop_then_resume_continues_the_same_run(session):
    session.start(TINY.with_overrides(epochs=40))
    wait_for(lambda: session.views()[-1].step >= 3)
    assert "stopping" in session.stop()
    wait_for(lambda: session.views()[-1].status == "stopped")
    stopped_at = session.views()[-1].step
    assert session.views()[-1].checkpoint is not None
    assert session.resume().startswith("resuming run-1")
    wait_for(lambda: session.views()[-1].step > stopped_at + 2)
    session.stop()
    wait_for(lambda: session.views()[-1].status == "stopped")
    assert len(session.views()) == 1  # the same run, its curve carried on
    steps = session.views()[-1].steps
    assert (np.diff(steps) == 1).all() and steps[0] == 1


def test_download_the_model_and_load_it_with_no_dataset_or_load_a_checkpoint(session, tmp_path, monkeypatch):
    session.start(TINY.with_overrides(epochs=1))
    wait_for(lambda: session.views()[-1].status == "completed" and session.classifier() is not None)
    answered = session.classify(digit_photo())
    exported = session.export_model(tmp_path / "export")
    assert exported.name == "vit2040-run-1-epoch1.pt" and ModelFile.load(exported).epoch == 1
    import core.data.cache as cache
    monkeypatch.setattr(cache, "load_dataset", lambda *a, **k: pytest.fail("a model file needs no dataset"))
    assert session.load(exported).startswith(f"loaded {exported.name}: digits · instance, epoch 1")
    wait_for(lambda: len(session.views()[-1].layouts) == 1)
    assert session.views()[-1].status == "completed" and session.thumbnails().shape == (2040, 28, 28)
    again = session.classify(digit_photo())
    assert again.top == answered.top and again.neighbours == answered.neighbours
    monkeypatch.undo()
    checkpoint = session.views()[0].checkpoint
    assert session.load(checkpoint).startswith("loaded last.pt: digits")  # a checkpoint: with its dataset
    assert session.views()[-1].run_id == "run-1"  # a run's file makes that run current


def test_failures_reach_the_status_line(session, tmp_path):
    session.start(TINY.with_overrides(dataset=f"folder:{tmp_path / 'missing'}"))
    wait_for(lambda: session.views()[-1].status == "failed")
    assert "missing" in session.views()[-1].message
    with pytest.raises(LookupError, match="no model yet"):
        session.classify(digit_photo())
    with pytest.raises(LookupError, match="no model yet"):
        session.export_model(tmp_path)


def test_preload_decodes_the_dataset_once(session, monkeypatch):
    import core.data.cache as module
    calls = []
    real = module.load_dataset
    monkeypatch.setattr(module, "load_dataset", lambda *a, **k: calls.append(a) or real(*a, **k))
    session.preload(TINY).join(timeout=120)
    session.start(TINY.with_overrides(epochs=1))
    wait_for(lambda: session.views()[-1].status == "completed")
    assert calls == [("digits",)]  # the run reused the preloaded data


def test_close_waits_for_every_thread(tmp_path):
    s = Session(tmp_path / "runs")
    s.start(TINY.with_overrides(epochs=40))
    wait_for(lambda: s.views()[-1].step >= 1)
    s.close()
    assert not s.running()
    assert not any(thread.is_alive() for thread in s.publisher.threads)


def test_finetuning_continues_the_run_and_publishes_a_class_head(session):
    with pytest.raises(LookupError, match="nothing to fine-tune"):
        session.finetune()
    session.start(TINY)
    wait_for(lambda: session.views()[-1].status == "completed")
    pretrained = session.views()[-1]
    assert session.finetune(epochs=2).startswith("fine-tuning run-1 for 2 epochs")
    wait_for(lambda: session.views()[-1].status == "completed" and session.views()[-1].step > pretrained.step)
    wait_for(lambda: "class head" in (session.classifier().methods if session.classifier() else ()))
    view = session.views()[-1]
    assert len(session.views()) == 1 and view.label.endswith("→ fine-tuning")  # the same run, continued
    assert view.stages == (("fine-tuning", 2),)
    steps = view.steps
    assert (np.diff(steps) == 1).all() and steps[-1] == 2 * pretrained.step  # stage 2 appended after stage 1
    assert list(view.top1_epochs) == [3, 4] and list(view.knn_epochs) == [1, 2, 3, 4]
    assert view.confusion.shape == (10, 10) and view.confusion.sum() == 2960 and view.confusion_epoch == 4
    assert Checkpoint.load(pretrained.checkpoint).config.objective == "instance"  # stage 1 kept
    assert Checkpoint.load(view.checkpoint).config.init_from == pretrained.checkpoint
    by_head = session.classify(digit_photo())
    assert by_head.method.startswith("fine-tuned class head")
    assert session.classify(digit_photo(), "kNN vote").method.startswith("kNN vote")
    with pytest.raises(LookupError, match="already trains on the labels"):
        session.finetune()


def test_finetuning_on_few_labels_trains_on_them_votes_with_them_and_the_table_says_so(session):
    session.start(TINY)
    wait_for(lambda: session.views()[-1].status == "completed")
    assert session.finetune(epochs=1, labels_per_class=3) == ("fine-tuning run-1 for 1 epochs on 3 labels per "
                                                             "class from last.pt")
    wait_for(lambda: session.views()[-1].status == "completed" and session.views()[-1].stages)
    wait_for(lambda: "class head" in (session.classifier().methods if session.classifier() else ()))
    assert Checkpoint.load(session.views()[-1].checkpoint).config.labels_per_class == 3
    vote = session.classify(digit_photo(), "kNN vote")
    assert vote.method == "kNN vote over 30 labelled training embeddings (k=5)"  # 3 of each of 10 classes
    assert sum(n for _, n in vote.votes) == 5
    row = session.table()[0]
    assert "instance → fine-tuning (3 labels per class)" in row



def test_an_auto_run_fits_its_recipe_in_the_training_thread_and_trains_on_it(session, tmp_path):
    from scripts.make_folder_dataset import main as make_folder
    folder = tmp_path / "photos"
    assert make_folder([str(folder), "--classes", "2", "--largest", "12", "--imbalance", "2"]) == 0
    asked = TrainConfig(dataset=f"folder:{folder}", objective="instance", snapshot_every=1)
    session.start(Request(asked, AUTO, ONLY, 0.0, 1))
    wait_for(lambda: session.views()[-1].status in ("completed", "failed"))
    view = session.views()[-1]
    assert view.status == "completed" and view.label == "run-1 · photos · pretraining"
    run = session._runs[-1]
    assert run.config.model.image_size == 64 and run.config.data_size == 73 and run.config.epochs == 1
    assert run.data.train.size == 73 and run.config.snapshot_every == 1
    wait_for(lambda: session.classifier() is not None)  # the auto run publishes a classifier like any run


def test_a_budgeted_run_leaves_its_fixed_length_for_a_fine_tune_to_continue(session):
    session.start(TINY.with_overrides(minutes=0.05, epochs=2))  # 3 s: fixed after its 5 s of timed steps
    wait_for(lambda: session.views()[-1].status in ("completed", "failed"))
    run = session._runs[-1]
    assert session.views()[-1].status == "completed" and run.config.minutes == 0.0
    saved = Checkpoint.load(session.views()[-1].checkpoint).config
    assert (saved.epochs, saved.minutes) == (run.config.epochs, 0.0)  # fine-tune's quarter is of these epochs


def test_runs_persist_across_sessions_with_their_curves_and_the_command_lines_runs_are_listed(tmp_path):
    import threading

    from core.data.sources import load_dataset
    from core.plan.stage import run_stage
    from core.runs.folder import RunFolder, StageFolder
    from tests.core.conftest import Recorder
    root = tmp_path / "runs"
    first = Session(root)
    try:
        first.start(TINY)
        wait_for(lambda: first.views()[-1].status == "completed")
        wait_for(lambda: first.classifier() is not None)
        before = first.views()[-1]
    finally:
        first.close()
    cli = TINY.with_overrides(lr=2e-3)  # what core.train writes: one stage, its files at the top
    run_stage(cli, load_dataset("digits"), StageFolder(root / "from-the-cli"), Recorder(), threading.Event())

    second = Session(root)
    try:
        # a restarted app offers the newest run that holds a model file (run_stage alone writes none), as it
        # answered before
        assert second.open_last().startswith("loaded model.pt")
        wait_for(lambda: second.classifier() is not None)
        assert second.views()[-1].run_id == "run-1" and second.answering().startswith("run-1")
        views = {v.run_id: v for v in second.views()}
        assert set(views) == {"run-1", "from-the-cli"}
        again = views["run-1"]
        assert np.array_equal(again.steps, before.steps) and np.array_equal(again.knn, before.knn)
        assert again.status == "completed" and again.checkpoint == before.checkpoint
        assert again.class_names == before.class_names and again.baselines == before.baselines
        table = {row[0]: row for row in second.table()}
        assert table["run-1"][3] == "instance" and table["run-1"][-1] == "completed"
        assert (root / "run-1" / "pipeline.json").is_file() and (root / "run-1" / "pretrain" / "last.pt").is_file()
        assert table["from-the-cli"][1] == "from-the-cli"
        assert second.diff("run-1", "from-the-cli") == [["lr", repr(TINY.lr), repr(2e-3)]]
        assert second.start(TINY) == "started run-2"  # numbering continues after the runs on disk
        wait_for(lambda: not second.running())
        second.rename("run-1", "the first one")
        assert RunFolder(root / "run-1").label == "the first one"
        assert "loaded" in second.open("run-1")  # its checkpoint: the listed run becomes current, once
        assert [v.run_id for v in second.views()].count("run-1") == 1 and second.views()[-1].run_id == "run-1"
        wait_for(lambda: second.classifier() is not None and second.answering() == "the first one"
                 and second.classifier().published.trained_with == TINY)
        csv_path = second.export_metrics(["run-1", "from-the-cli"], tmp_path)
        assert {row["run"] for row in csv.DictReader(csv_path.open())} == {"the first one", "from-the-cli"}
        assert "deleted" in second.delete("from-the-cli")
        assert not (root / "from-the-cli").exists() and "from-the-cli" not in [v.run_id for v in second.views()]
    finally:
        second.close()


def few_labelled_photos(tmp_path) -> str:
    """Three classes of 5 to 10 photos: at most 20 labels a class, so pretraining is expected to pay."""
    from scripts.make_folder_dataset import main as make_folder
    folder = tmp_path / "photos"
    assert make_folder([str(folder), "--classes", "3", "--largest", "10", "--imbalance", "2"]) == 0
    return f"folder:{folder}"


def held_out_curve(monkeypatch, figures):
    """The pretraining's held-out figures (core/handover.py) read `figures`, the random init's first."""
    from core.trainer.handover import HandOver
    figures = iter(figures)
    monkeypatch.setattr(HandOver, "figure", lambda self, embeddings: next(figures))


def start_pipeline(session, dataset, minutes=0.25):
    asked = TrainConfig(dataset=dataset, objective="instance", snapshot_every=1)
    session.start(Request(asked, AUTO, "auto", minutes))
    wait_for(lambda: not session.running() and session.views()[-1].status in ("completed", "stopped", "failed"))
    return session.views()[-1], session._runs[-1]


def test_the_pipeline_pretrains_then_fine_tunes_its_best_held_out_backbone_as_one_run(session, tmp_path,
                                                                                      monkeypatch):
    import itertools
    held_out_curve(monkeypatch, itertools.count(0.1, 0.01))  # every epoch better on held-out images
    view, run = start_pipeline(session, few_labelled_photos(tmp_path))
    assert view.status == "completed" and view.label == "run-1 · photos · pretraining → fine-tuning"
    assert len(view.stages) == 1  # the fine-tuning stage continues the run's curves
    (_, pre), (_, fine) = run.folder.stages()  # the same layout core.pipeline writes
    assert (pre.path, fine.path) == (run.folder.path / "pretrain", run.folder.path / "finetune")
    pretrained = Checkpoint.load(pre.last).config
    assert pretrained.objective == "instance" and pretrained.stop_when_not_helping
    tuned = Checkpoint.load(fine.last).config
    assert tuned.objective == "supervised" and tuned.init_from == str(pre.best)
    assert not tuned.stop_when_not_helping  # judged by its class head
    # both stages within the one budget: the second had what the clock left of the 0.25 minutes
    from core import events as ev
    fitted = next(e for e in fine.events() if isinstance(e, ev.BudgetFitted))
    pretrained_s = [e for e in pre.events() if isinstance(e, ev.EpochMetrics)][-1].elapsed_s
    assert fitted.minutes < 0.25 - pretrained_s / 60


def test_when_no_pretraining_epoch_beats_the_random_init_the_pipeline_trains_from_scratch(session, tmp_path,
                                                                                          monkeypatch):
    import itertools
    held_out_curve(monkeypatch, itertools.chain([0.9], itertools.repeat(0.2)))
    view, run = start_pipeline(session, few_labelled_photos(tmp_path))
    assert view.status == "completed" and view.label.endswith("→ training from scratch")
    second = Checkpoint.load(run.folder.path / "supervised" / "last.pt").config
    assert second.objective == "supervised" and not second.init_from
    again = Session(tmp_path / "runs")  # the stage is named the same when the run is listed again
    try:
        assert again.views()[-1].label.endswith("→ training from scratch")
    finally:
        again.close()


def test_fine_tune_starts_from_the_backbone_a_hand_over_run_kept_at_its_best_held_out_epoch(session, monkeypatch):
    held_out_curve(monkeypatch, [0.1, 0.5, 0.3])  # the random init, then epoch 1 best, epoch 2 lower
    session.start(TINY.with_overrides(stop_when_not_helping=True))
    wait_for(lambda: session.views()[-1].status == "completed")
    pretrained = session.views()[-1]
    assert Checkpoint.load(pretrained.checkpoint).epoch == 2
    said = session.finetune(epochs=1)
    assert said.endswith("from best.pt (epoch 1, its best on held-out training images)")
    wait_for(lambda: session.views()[-1].status == "completed" and session.views()[-1].step > pretrained.step)
    tuned = Checkpoint.load(session.views()[-1].checkpoint)
    assert tuned.config.init_from.endswith("best.pt") and Checkpoint.load(tuned.config.init_from).epoch == 1


def test_a_stopped_pipeline_resumes_its_pretraining_then_goes_on_to_fine_tuning(session, tmp_path, monkeypatch):
    import itertools

    from core.trainer.handover import HandOver
    reads = itertools.count()

    def figure(self, embeddings):  # every epoch better on held-out images; Stop pressed at the second evaluation
        n = next(reads)
        if n == 2:
            session.stop()
        return 0.1 + 0.01 * n

    monkeypatch.setattr(HandOver, "figure", figure)
    view, run = start_pipeline(session, few_labelled_photos(tmp_path), minutes=0.3)
    assert view.status == "stopped" and not view.stages
    spent = run.folder.record()["spent_minutes"]
    assert 0 < spent < 0.3
    session.resume()
    wait_for(lambda: not session.running() and session.views()[-1].status in ("completed", "failed"))
    view = session.views()[-1]
    assert view.status == "completed" and view.label == "run-1 · photos · pretraining → fine-tuning"
    (_, pre), (_, fine) = run.folder.stages()
    assert Checkpoint.load(fine.last).config.init_from == str(pre.best)
    from core import events as ev
    fitted = next(e for e in fine.events() if isinstance(e, ev.BudgetFitted))
    assert fitted.minutes < 0.3 - spent  # the pause before Resume was not spent; what ran before it was


def stopping_curve(monkeypatch, stop):
    """Every epoch better on held-out images; `stop()` at the pretraining's second evaluation."""
    import itertools

    from core.trainer.handover import HandOver
    reads = itertools.count()

    def figure(self, embeddings):
        n = next(reads)
        if n == 2:
            stop()
        return 0.1 + 0.01 * n

    monkeypatch.setattr(HandOver, "figure", figure)


def test_a_pipeline_the_command_line_started_is_one_run_in_the_app_and_the_app_finishes_it(tmp_path, monkeypatch):
    import os
    import signal

    from core import pipeline as cli
    root = tmp_path / "runs"
    stopping_curve(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGTERM))  # Ctrl-C, as a person would
    out = root / "from-the-cli"
    assert cli.main(["--dataset", few_labelled_photos(tmp_path), "--minutes", "0.25", "--out", str(out)]) == 130
    monkeypatch.undo()
    session = Session(root)
    try:
        (view,) = session.views()
        assert view.run_id == "from-the-cli" and view.status == "stopped" and view.plan  # its plan, said again
        session.resume()
        wait_for(lambda: not session.running() and session.views()[-1].status in ("completed", "failed"))
        view = session.views()[-1]
        assert view.status == "completed" and len(view.stages) == 1 and len(session.views()) == 1
        assert session.table()[0][3].startswith("instance → ")  # one run, its stages in it
    finally:
        session.close()
    assert cli.main(["--resume", str(out)]) == 2  # finished: the command line says so too


def test_a_pipeline_the_app_started_is_finished_by_the_command_line(session, tmp_path, monkeypatch, capsys):
    from core import pipeline as cli
    stopping_curve(monkeypatch, session.stop)
    view, run = start_pipeline(session, few_labelled_photos(tmp_path), minutes=0.3)
    assert view.status == "stopped"
    monkeypatch.undo()
    assert cli.main(["--resume", str(run.folder.path)]) == 0
    assert f"model {run.folder.path / 'model.pt'}" in capsys.readouterr().out
    assert [s["ended"] for s in run.folder.record()["stages"]] == ["completed", "completed"]
