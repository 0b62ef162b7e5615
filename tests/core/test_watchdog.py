"""The watchdog: when the kNN curve says pretraining has stopped helping, the person is told, once."""
import dataclasses

from core import events as ev
from core.trainer import Trainer
from core.watchdog import verdict
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
    assert "below the randomly initialised encoder's 62.0%" in words and "worse" in words


def test_the_trainer_tells_once_and_only_for_pretraining(tiny_config, toy_data):
    """A scripted kNN curve (0.9, then falling) through the real loop: one Advice, at epoch 3."""
    curve = iter([0.5, 0.9, 0.85, 0.8, 0.75, 0.7])  # the first is the random-init baseline

    def scripted(trainer):
        real = trainer.evaluate

        def evaluate():
            return dataclasses.replace(real(), knn=next(curve))
        trainer.evaluate = evaluate
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
    from core.watchdog import Watchdog
    dog = Watchdog(random_init=0.1)
    said = [dog.observe(epoch, knn) for epoch, knn in enumerate([0.8, 0.7, 0.7, 0.7, 0.8, 0.75, 0.7, 0.7], 1)]
    assert [epoch for epoch, words in enumerate(said, 1) if words] == [3, 7]  # the recovery at 5 re-arms it


def test_a_run_ends_by_saying_plainly_whether_it_beat_both_baselines():
    from core.watchdog import ending
    assert "is above both baselines" in ending(0.81, 0.75, 0.63)
    worse = ending(0.70, 0.75, 0.63)
    assert "is NOT above raw pixels (" in worse and "random-init" not in worse.split("(")[0]
    assert "NOT above raw pixels or the random-init encoder" in ending(0.5, 0.75, 0.63)
