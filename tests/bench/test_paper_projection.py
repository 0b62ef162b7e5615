"""Row 7's projection: the paper's step and evaluation counts, and the arithmetic that scales a timing up."""
import pytest
import torch

from bench.paper_projection import FLOWERS_TEST, FLOWERS_TRAIN, StageTime, fastest, random_flowers, stage_configs


def stage(name, config, timed_batch=32, step_s=(2.0, 3.0, 4.0), rate=100.0, compiled=False):
    return StageTime(name, config, timed_batch, list(step_s), rate, compiled)


def test_stage_counts_follow_the_papers_recipe():
    first, second = stage_configs("cpu").values()
    assert (first.model.image_size, first.augment.n_global + first.augment.n_local) == (112, 6)
    assert (second.model.image_size, second.data_size, second.objective) == (224, 256, "supervised")
    one, two = stage("1", first), stage("2", second)
    assert one.steps == 800 * 8 and one.evaluations == 80  # ceil(2040 / 256) = 8 steps an epoch; every 10
    assert two.steps == 200 * 8 and two.evaluations == 20
    assert one.views_per_image == 6 and two.views_per_image == 1


def test_projection_scales_the_median_step_to_the_recipes_batch_and_adds_evaluations():
    first = stage_configs("cpu")["stage 1 (pretraining, 112 px)"]
    timed = stage("1", first, timed_batch=32, step_s=(2.0, 3.0, 10.0), rate=100.0)
    assert timed.recipe_step_s == pytest.approx(3.0 * 256 / 32)
    assert timed.evaluation_s == pytest.approx((FLOWERS_TRAIN + FLOWERS_TEST) / 100.0)
    assert timed.projected_s == pytest.approx(6400 * 24.0 + 80 * timed.evaluation_s)


def test_fastest_keeps_the_faster_mode_of_each_stage_in_order():
    first, second = stage_configs("cpu").values()
    eager, compiled = stage("a", first, step_s=(2.0,)), stage("a", first, step_s=(1.0,), compiled=True)
    other = stage("b", second, step_s=(5.0,))
    assert fastest([eager, compiled, other]) == [compiled, other]
    assert fastest([other, eager]) == [other, eager]


def test_random_flowers_has_flowers_shapes():
    data = random_flowers(size=16, n_test=5)
    assert data.train.images.shape == (FLOWERS_TRAIN, 3, 16, 16) and data.train.images.dtype == torch.uint8
    assert len(data.test) == 5 and len(data.class_names) == 102
