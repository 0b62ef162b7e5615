import pytest
import torch

from core.data.augment import ViewMaker
from core.data.labels import labels_per_class
from core.plan import payoff
from core.plan.timing import EVALUATIONS, Throughput
from core.policy import LONG_PASSES


def labels(*counts):
    return torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])


def test_few_labels_a_class_expect_pretraining_to_pay_whatever_the_budget():
    expected = payoff.expect(labels(5, 5, 5), passes=3)
    assert expected.pretrain and expected.labels_per_class == 5
    assert "expected to match or beat supervised training from scratch (at most 20 labels a class)" in expected.reason


def test_many_labels_and_a_short_budget_expect_scratch_to_match_or_beat_it():
    expected = payoff.expect(labels(204, 204), passes=97)
    assert not expected.pretrain
    assert expected.reason.startswith("204 labelled images a class and ~97 passes over the images: supervised")


def test_a_long_budget_expects_pretraining_to_pay_even_with_many_labels():
    assert payoff.expect(labels(204, 204), passes=LONG_PASSES).pretrain
    assert "300+ passes" in payoff.expect(labels(204, 204), passes=325).reason


def test_labels_a_class_is_the_median_over_the_classes_present():
    # 10, 30, 400 labelled: the median class has 30 (a large class does not hide two small ones)
    assert labels_per_class(labels(10, 30, 400)) == 30
    assert labels_per_class(labels(0, 12, 30)) == 21  # an empty class is not a class of this data
    assert payoff.expect(labels(10, 30, 400), passes=10).pretrain is False
    assert payoff.expect(labels(10, 12, 400), passes=10).pretrain is True



def test_a_budgeted_run_counts_its_passes_at_its_own_configs_throughput(tiny_config, toy_data):
    """passes = (minutes x 60 - the evaluations' seconds) x the images a second the command's timing gives this
    very config x its views / training images; the timing is the one the recipe was fitted with, passed on."""
    class Timed:
        asked = []

        def of(self, config):
            self.asked.append(config)
            return Throughput(50.0, eval_s=1.0, batch=config.batch_size)

    budgeted, timing = tiny_config.with_overrides(minutes=0.5), Timed()
    views = ViewMaker(budgeted.augment).views_per_image
    assert payoff.for_run(budgeted, toy_data, timing).passes == pytest.approx(
        (0.5 * 60 - (EVALUATIONS + 1) * 1.0) * 50.0 * views / len(toy_data.train))
    assert timing.asked == [budgeted]  # its batch, views and instance head, not a planning config's
    assert payoff.for_run(budgeted.with_overrides(minutes=0.0, epochs=7), toy_data, timing).passes == 7 * views
    assert len(timing.asked) == 1  # a run of epochs is not timed
