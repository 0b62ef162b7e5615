"""What a run measures (core/monitor.py): the kNN monitor, its baselines, and who judges the curve."""
from core.trainer.loop import Trainer
from core.trainer.watchdog import TOP1


def test_the_baselines_start_the_judging_and_a_class_head_run_is_not_judged_by_its_knn(tiny_config, toy_data):
    pretraining = Trainer(tiny_config.with_overrides(stop_when_not_helping=True), toy_data)
    monitor = pretraining.monitor
    assert monitor.yardstick is None and monitor.handover.best is None  # nothing measured yet
    random_init = monitor.evaluate()
    baselines = monitor.measure_baselines()
    assert monitor.baselines is baselines and baselines.random_init == random_init.knn
    assert monitor.yardstick.metric == TOP1  # the toy classes are equal
    assert monitor.handover.best.epoch == 0  # the random-init encoder is the candidate to beat
    assert monitor.watch(1, random_init) == [] and monitor.judged_knn == random_init.knn
    supervised = Trainer(tiny_config.with_overrides(objective="supervised"), toy_data).monitor
    assert supervised.watch(1, supervised.evaluate()) == [] and supervised.judged_knn is None
