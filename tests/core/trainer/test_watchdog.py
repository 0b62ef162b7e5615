"""The watchdog: when the kNN curve says pretraining has stopped helping, the person is told, once."""
import dataclasses

import torch

from core import events as ev
from core.trainer.checkpoint import Checkpoint
from core.trainer.loop import Trainer
from core.trainer.watchdog import BALANCED, TOP1, Yardstick, verdict
from tests.core.conftest import Recorder


def test_a_rising_or_flat_curve_says_nothing():
    assert verdict([1, 2, 3], [0.5, 0.6, 0.7], 0.4) is None
    assert verdict([1, 2, 3], [0.70, 0.69, 0.685], 0.4) is None  # within two points of the best
    assert verdict([1], [0.3], 0.4) is None  # one evaluation below the baseline is not a trend


def test_two_evaluations_more_than_two_points_below_the_best():
    assert verdict([10, 20, 30], [0.81, 0.78, 0.80], 0.6) is None  # recovered
    words = verdict([10, 20, 30, 40], [0.81, 0.80, 0.78, 0.77], 0.6)
    assert "below its best (81.0%, epoch 10)" in words and "fine-tune" in words


def test_below_the_random_init_encoder():
    words = verdict([10, 20], [0.60, 0.58], 0.62)
    assert "below the random-init encoder's 62.0%" in words and "worse" in words


def test_the_trainer_tells_once_and_only_for_pretraining(tiny_config, toy_data):
    """A scripted kNN curve (0.9, then falling) through the real loop: one Advice, at epoch 3."""
    curve = iter([0.5, 0.9, 0.85, 0.8, 0.75, 0.7])  # the first is the random-init baseline

    def scripted(trainer):
        real = trainer.monitor.evaluate

        def evaluate():
            return dataclasses.replace(real(), knn=next(curve))
        trainer.monitor.evaluate = evaluate
        return trainer

    rec = Recorder()
    scripted(Trainer(tiny_config.with_overrides(epochs=5), toy_data)).run(rec)
    advice = rec.of(ev.Advice)
    assert [a.epoch for a in advice] == [3] and "stopped helping" in advice[0].message
    supervised = tiny_config.with_overrides(objective="supervised", epochs=5, augment={"n_local": 0})
    curve = iter([0.5, 0.9, 0.85, 0.8, 0.75, 0.7])
    rec = Recorder()
    scripted(Trainer(supervised, toy_data)).run(rec)
    knns = [e.knn_top1 for e in rec.of(ev.EpochMetrics)]
    assert knns == [0.9, 0.85, 0.8, 0.75, 0.7] and not rec.of(ev.Advice)  # the same fall, judged by its head


def test_the_watchdog_speaks_when_the_words_start_to_apply_and_again_only_after_a_recovery():
    from core.trainer.watchdog import Watchdog
    dog = Watchdog(random_init=0.1)
    said = [dog.observe(epoch, knn) for epoch, knn in enumerate([0.8, 0.7, 0.7, 0.7, 0.8, 0.75, 0.7, 0.7], 1)]
    assert [epoch for epoch, words in enumerate(said, 1) if words] == [3, 7]  # the recovery at 5 re-arms it


def test_a_run_ends_by_saying_plainly_whether_it_beat_both_baselines():
    from core.trainer.watchdog import ending
    assert "is above both baselines" in ending(0.81, 0.75, 0.63)
    worse = ending(0.70, 0.75, 0.63)
    assert "is NOT above raw pixels (" in worse and "random-init" not in worse.split("(")[0]
    assert "NOT above raw pixels or the random-init encoder" in ending(0.5, 0.75, 0.63)


def test_with_unequal_classes_the_run_is_judged_by_balanced_knn(tiny_config, toy_data, tmp_path):
    """Top-1 can rise by filing everything under the largest class; balanced accuracy cannot. A scripted
    curve whose top-1 climbs while its balanced accuracy sinks below the random init's is told so."""
    keep = torch.cat([torch.arange(len(toy_data.train)), torch.tensor([0, 4, 8, 12, 16, 20])])  # class 0: 16 of 46
    unequal = dataclasses.replace(toy_data, train=toy_data.train.subset(keep))
    top1 = iter([0.3, 0.4, 0.5, 0.6, 0.7])
    balanced = iter([0.3, 0.28, 0.26, 0.25, 0.24])  # the first is the random-init baseline's

    trainer = Trainer(tiny_config.with_overrides(epochs=4), unequal, out_dir=tmp_path)
    real = trainer.monitor.evaluate
    trainer.monitor.evaluate = lambda: dataclasses.replace(real(), knn=next(top1), knn_balanced=next(balanced))
    rec = Recorder()
    trainer.run(rec)
    baselines = rec.of(ev.Baselines)[0]
    assert (baselines.random_init, baselines.random_init_balanced) == (0.3, 0.3)
    assert baselines.raw_pixels_balanced is not None
    assert trainer.monitor.yardstick.metric == BALANCED and trainer.monitor.judged_knn == 0.24
    advice = rec.of(ev.Advice)
    assert [a.epoch for a in advice] == [2] and advice[0].message.startswith("balanced kNN accuracy 26.0% has been")
    saved = Checkpoint.load(trainer.last_checkpoint)
    assert saved.baselines == dataclasses.astuple(baselines)  # the balanced pair travels with the run
    equal = Trainer(tiny_config.with_overrides(epochs=1), toy_data)
    equal.run(Recorder())
    assert equal.monitor.yardstick.metric == TOP1


def test_old_checkpoints_hold_two_baselines_and_are_judged_by_top1():
    old = ev.Baselines(0.7, 0.6)
    assert Yardstick.of(old, [3, 5]) == Yardstick(TOP1, 0.7, 0.6)
    assert Yardstick.of(ev.Baselines(0.7, 0.6, 0.5, 0.4), [3, 5]).read(0.9, 0.3) == 0.3
    assert Yardstick.of(ev.Baselines(0.7, 0.6, 0.5, 0.4), [0, 4, 4]).metric == TOP1  # an empty class is no class
