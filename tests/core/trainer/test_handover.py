"""The hand-over (core/handover.py): a pretraining run judged on held-out training images ends when the
watchdog's signs apply there, and keeps its best backbone for the next stage."""
import threading

import torch

from core import events as ev
from core.metrics import knn_leave_one_out
from core.policy import FEW_LABELS, GAIN
from core.runs.folder import BEST
from core.trainer.checkpoint import Checkpoint
from core.trainer.handover import HANDOVER, HELD_OUT, HandOver, held_out, stalled
from core.trainer.loop import Trainer
from core.trainer.watchdog import BALANCED, TOP1
from tests.core.conftest import Recorder, make_splits


def scripted_held_out(monkeypatch, curve):
    """The held-out figure reads `curve`: the random-init encoder's first, then one per evaluation."""
    figures = iter(curve)
    monkeypatch.setattr(HandOver, "figure", lambda self, embeddings: next(figures))


def test_stop_when_not_helping_ends_on_the_held_out_training_images_not_on_the_test_split(tiny_config, toy_data,
                                                                                          tmp_path, monkeypatch):
    """A scripted held-out curve (random init 0.9, then 0.6, 0.6): the run ends after epoch 2 of 6, says so,
    leaves a checkpoint, and keeps the random init as its best (epoch 0): the rest goes to scratch. The
    test-split kNN, however it falls, never ends a run."""
    scripted_held_out(monkeypatch, [0.9, 0.6, 0.6, 0.6])
    config = tiny_config.with_overrides(epochs=6, stop_when_not_helping=True, checkpoint_every=0)
    rec = Recorder()
    done = Trainer(config, toy_data, out_dir=tmp_path).run(rec)
    assert done.reason == ev.HANDED_OVER and done.epoch == 2 and done.checkpoint == str(tmp_path / "last.pt")
    assert Checkpoint.load(tmp_path / "last.pt").epoch == 2
    words = rec.of(ev.Advice)[-1].message
    assert words.startswith(HELD_OUT) and "below the random-init encoder's 90.0%" in words
    assert "stop and fine-tune" not in words  # the hand-over does it, and the rest may train from scratch
    assert words.endswith(f"{HANDOVER}supervised training from scratch: no pretraining epoch beat the random-init "
                           "encoder on held-out training images")
    best = Checkpoint.load(tmp_path / BEST)
    assert best.epoch == 0 and best.resume is None  # weights only: the encoder the run started from
    assert done.best_epoch == 0  # the end event says so: the pipeline trains from scratch next
    initial = Trainer(config, toy_data).backbone.state_dict()
    assert all(torch.equal(best.backbone[k], v) for k, v in initial.items())
    # without the flag the same curve only warns (and the held-out kNN is not even computed)
    assert Trainer(config.with_overrides(stop_when_not_helping=False), toy_data).run(Recorder()).epoch == 6


def test_the_hand_over_keeps_the_backbone_of_its_best_held_out_epoch(tiny_config, toy_data, tmp_path, monkeypatch):
    """Held out: random init 0.5, then 0.7, 0.9 (epoch 2, the best), 0.6, 0.6: more than two points below the
    best twice, so the run ends after epoch 4, and best.pt holds epoch 2's backbone, not the last one."""
    scripted_held_out(monkeypatch, [0.5, 0.7, 0.9, 0.6, 0.6])
    config = tiny_config.with_overrides(epochs=6, stop_when_not_helping=True, snapshot_every=1)
    rec = Recorder()
    done = Trainer(config, toy_data, out_dir=tmp_path).run(rec)
    assert done.reason == ev.HANDED_OVER and done.epoch == 4
    words = rec.of(ev.Advice)[-1].message
    assert words.endswith("fine-tuning the pretrained backbone of epoch 2, its best on held-out training images "
                           "(kNN top-1 90.0%)")
    best = Checkpoint.load(tmp_path / BEST)
    at = {s.epoch: s.weights for s in rec.of(ev.EmbeddingSnapshot)}
    assert best.epoch == 2 and best.step == 2 * Trainer(config, toy_data).steps_per_epoch
    assert all(torch.equal(best.backbone[k], v) for k, v in at[2].items())
    assert not all(torch.equal(best.backbone[k], v) for k, v in at[4].items())
    # the decision travels as a value: the end event carries the best epoch and its weights (not read back)
    assert done.best_epoch == 2 and all(torch.equal(done.best_backbone[k], v) for k, v in at[2].items())


def test_the_held_out_knn_never_lets_an_image_vote_for_itself():
    # image 0 (class 0) has no other image of its class nearby: held out, its neighbours say class 1
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.05, 1.0], [0.1, 1.0]])
    labels = torch.tensor([0, 1, 1, 1])
    predicted = knn_leave_one_out(features, labels, 2, k=1).argmax(dim=1)
    assert predicted.tolist() == [1, 1, 1, 1]
    assert held_out(features, labels, 2, 1, 0.07, TOP1) == 0.75
    assert held_out(features, labels, 2, 1, 0.07, BALANCED) == 0.5
    assert knn_leave_one_out(features, labels, 2, k=1, chunk=3).argmax(dim=1).tolist() == predicted.tolist()


def test_a_class_head_run_is_never_handed_over_even_when_asked(tiny_config, toy_data):
    """A supervised run is judged by its class head: the flag asks nothing of it (the recipe drops it too)."""
    from core.plan.recipe import recipe
    supervised = tiny_config.with_overrides(objective="supervised", stop_when_not_helping=True)
    assert Trainer(supervised, toy_data).monitor.handover is None
    assert not recipe(tiny_config.with_overrides(stop_when_not_helping=True), "supervised").stop_when_not_helping


def test_with_many_labels_a_class_a_plateau_hands_over():
    """No figure of the last two evaluations gained a point on the best before them: stalled. With a point
    gained, or with few labels a class (too noisy to read, and pretraining is what pays there), it goes on."""
    epochs = [0, 10, 20, 30, 40]
    words = stalled(epochs, [0.5, 0.7, 0.8, 0.805, 0.809], TOP1, labels=204)
    assert words == ("kNN top-1 80.9% has gained less than 1 point on its best before (80.0%, epoch 20) in 2 "
                     "evaluations: pretraining has stopped improving, and 204 labelled images a class teach "
                     "fine-tuning more with the minutes left")
    assert stalled(epochs, [0.5, 0.7, 0.8, 0.805, 0.8 + GAIN], TOP1, labels=204) is None
    assert stalled(epochs, [0.5, 0.7, 0.8, 0.805, 0.809], TOP1, labels=FEW_LABELS) is None
    assert stalled(epochs[:2], [0.5, 0.5], TOP1, labels=204) is None  # the random init alone is no curve
    assert "its best before (50.0%, the random-init encoder)" in stalled(epochs[:3], [0.5, 0.49, 0.505], TOP1, 204)


def test_a_run_with_many_labels_hands_over_when_its_held_out_curve_flattens(tiny_config, tmp_path, monkeypatch):
    """25 labelled images a class: held out 0.5 (random init), 0.7, 0.8, 0.805, 0.809: the run ends after epoch 4
    of 8, logs the figure it judged at each evaluation, and keeps epoch 4's backbone, the best."""
    data = make_splits(n_train=100)
    curve = [0.5, 0.7, 0.8, 0.805, 0.809]
    scripted_held_out(monkeypatch, curve)
    config = tiny_config.with_overrides(epochs=8, stop_when_not_helping=True, checkpoint_every=0)
    rec = Recorder()
    done = Trainer(config, data, out_dir=tmp_path).run(rec)
    assert done.reason == ev.HANDED_OVER and done.epoch == 4
    assert [m.held_out for m in rec.of(ev.EpochMetrics)] == curve[1:]
    words = rec.of(ev.Advice)[-1].message
    assert "has stopped improving, and 25 labelled images a class" in words
    assert words.endswith("fine-tuning the pretrained backbone of epoch 4, its best on held-out training images "
                          "(kNN top-1 80.9%)")
    assert Checkpoint.load(tmp_path / BEST).epoch == 4


def test_a_stopped_hand_over_run_resumes_judging_the_curve_it_had_read(tiny_config, toy_data, tmp_path, monkeypatch):
    """Held out: random init 0.9, then 0.6 at epoch 1; stopped in epoch 2 and resumed: the next read, 0.6, is
    the second below the random init in a row, so the resumed run hands over after epoch 2, and best.pt is
    still the random init (epoch 0). Without the hand-over's state in the checkpoint the resumed run would
    know no random init to be below, and would keep epoch 2's backbone."""
    scripted_held_out(monkeypatch, [0.9, 0.6, 0.6])
    config = tiny_config.with_overrides(epochs=6, stop_when_not_helping=True)
    spe = Trainer(config, toy_data).steps_per_epoch
    stop = threading.Event()
    first = Trainer(config, toy_data, out_dir=tmp_path)
    done = first.run(lambda e: stop.set() if isinstance(e, ev.StepMetrics) and e.step == spe + 1 else None, stop)
    assert done.reason == "stopped" and done.epoch == 1
    saved = Checkpoint.load(tmp_path / "last.pt").resume.handover
    assert (saved["epochs"], saved["figures"], saved["best_epoch"]) == ([0, 1], [0.9, 0.6], 0)
    resumed = Trainer(config, toy_data, out_dir=tmp_path, resume_from=tmp_path / "last.pt")
    rec = Recorder()
    done = resumed.run(rec)
    assert done.reason == ev.HANDED_OVER and done.epoch == 2
    assert "below the random-init encoder's 90.0% for 2 evaluations" in rec.of(ev.Advice)[-1].message
    best = Checkpoint.load(tmp_path / BEST)
    initial = Trainer(config, toy_data).backbone.state_dict()
    assert best.epoch == 0 and all(torch.equal(best.backbone[k], v) for k, v in initial.items())


def test_a_checkpoint_without_a_hand_over_state_still_loads_and_resumes(tiny_config, toy_data, tmp_path):
    """Checkpoints written before the hand-over's state was kept (and of runs without a hand-over) have none."""
    config = tiny_config.with_overrides(epochs=2)
    Trainer(config.with_overrides(epochs=1), toy_data, out_dir=tmp_path).run(Recorder())
    path = tmp_path / "last.pt"
    payload = torch.load(path, weights_only=True)
    assert payload.pop("handover") is None
    torch.save(payload, path)
    assert Checkpoint.load(path).resume.handover is None
    assert Trainer(config, toy_data, out_dir=tmp_path, resume_from=path).run(Recorder()).epoch == 2


def test_with_many_labels_an_early_read_at_chance_hands_over_to_training_from_scratch(tiny_config, tmp_path,
                                                                                     monkeypatch):
    """25 labelled images a class in 4 classes: guessing scores 25 %, and 2 standard errors reach 33.7 %. Held
    out 0.30 at the random init and 0.31 at the early read (epoch 1 of a run evaluated every 4): at chance,
    so the run ends there, before its first evaluation, and the rest trains from scratch."""
    data = make_splits(n_train=100)
    scripted_held_out(monkeypatch, [0.30, 0.31])
    config = tiny_config.with_overrides(epochs=8, eval_every=4, stop_when_not_helping=True, snapshot_every=0)
    rec = Recorder()
    done = Trainer(config, data, out_dir=tmp_path).run(rec)
    assert done.reason == ev.HANDED_OVER and done.epoch == 1
    [read] = rec.of(ev.EpochMetrics)
    assert read.held_out == 0.31 and read.knn_top1 is not None  # the run ends here: its backbone is evaluated
    words = rec.of(ev.Advice)[-1].message
    assert "kNN top-1 31.0% is at chance (guessing scores 25.0%; 2 standard errors above it, 33.7%)" in words
    assert words.endswith(f"{HANDOVER}supervised training from scratch: no pretraining epoch beat the random-init "
                          "encoder on held-out training images")  # 0.31 is not a point above 0.30
    assert Checkpoint.load(tmp_path / BEST).epoch == 0


def test_an_early_read_above_chance_only_keeps_its_backbone_and_the_signs_wait_for_evaluations(tiny_config, tmp_path,
                                                                                             monkeypatch):
    """Held out 0.60 at the random init, 0.40 at the early read (below the random init, above chance), then
    0.70 and 0.72 at the evaluations of epochs 4 and 8: the early read is not one of the watchdog's two
    evaluations in a row below the random init, so the run completes."""
    data = make_splits(n_train=100)
    scripted_held_out(monkeypatch, [0.60, 0.40, 0.70, 0.72])
    config = tiny_config.with_overrides(epochs=8, eval_every=4, stop_when_not_helping=True, snapshot_every=0)
    rec = Recorder()
    done = Trainer(config, data, out_dir=tmp_path).run(rec)
    assert done.reason == "completed" and done.epoch == 8 and not rec.of(ev.Advice)
    assert [(m.epoch, m.held_out, m.knn_top1 is not None) for m in rec.of(ev.EpochMetrics)
            if m.held_out is not None] == [(1, 0.40, False), (4, 0.70, True), (8, 0.72, True)]  # 1: a read
    assert Checkpoint.load(tmp_path / BEST).epoch == 8


def test_few_labels_make_no_early_read_and_no_at_chance_sign(tiny_config, toy_data, monkeypatch):
    """10 labelled images a class: the labels cannot teach the features, so pretraining keeps its share."""
    scripted_held_out(monkeypatch, [0.25, 0.25, 0.25])
    config = tiny_config.with_overrides(epochs=8, eval_every=4, stop_when_not_helping=True, snapshot_every=0)
    rec = Recorder()
    assert Trainer(config, toy_data).run(rec).reason == "completed"
    assert [m.epoch for m in rec.of(ev.EpochMetrics) if m.held_out is not None] == [4, 8]


def test_a_pretrained_epoch_replaces_the_random_init_only_by_a_point():
    handover = HandOver(torch.arange(8), torch.arange(8) % 2, 2, k=3, temperature=0.1)
    module = torch.nn.Linear(2, 2)
    handover.start(0.60, module.state_dict(), module)
    handover.observe(1, 0.605, module, module)
    assert handover.best.epoch == 0  # half a point: the figure's noise
    handover.observe(2, 0.62, module, module)
    handover.observe(3, 0.625, module, module)
    assert handover.best.epoch == 3  # then any gain on a pretrained epoch
