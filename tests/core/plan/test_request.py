"""A request planned into its first stage: the recipe, the expectation, and what trains first."""
import pytest

from core.plan.presets import AUTO
from core.plan.request import ONLY, Request, plan_first
from core.policy import PRETRAIN_SHARE


def test_the_best_model_pretrains_for_its_share_when_pretraining_is_expected_to_pay(tiny_config, toy_data):
    """Ten labels a class: pretraining is expected to pay; it gets its share of the minutes and hands over."""
    first = plan_first(Request(tiny_config, "tiny", "auto", 5.0), lambda config: toy_data)
    assert first.expected.pretrain and first.expected.labels_per_class == 10
    assert first.stage.objective == "instance" and first.stage.stop_when_not_helping
    assert first.stage.minutes == first.until == 5.0 * PRETRAIN_SHARE and first.hand_over
    assert first.words[0].startswith("tiny recipe: 14 px") and "at most 20 labels a class" in first.words[1]
    assert first.words[2] == "pretraining, then fine-tuning, 5 min in all"


def test_never_trains_supervised_from_scratch_for_all_the_minutes_and_still_says_what_it_expected(tiny_config,
                                                                                                   toy_data):
    first = plan_first(Request(tiny_config, "tiny", "never", 5.0), lambda config: toy_data)
    assert first.expected.pretrain and not first.hand_over  # expected to pay, and not done: as asked
    assert (first.stage.objective, first.stage.init_from, first.stage.minutes, first.until) == ("supervised", "",
                                                                                                5.0, 5.0)
    assert first.words[2] == "supervised training from scratch, 5 min in all"


def test_one_stage_trains_the_objective_as_asked(tiny_config, toy_data):
    first = plan_first(Request(tiny_config.with_overrides(objective="contrastive"), "tiny", ONLY, 0.0, 3),
                       lambda config: toy_data)
    assert first.stage.objective == "contrastive" and first.stage.epochs == 3 and first.until is None
    assert first.stage.augment.n_global == 2 and not first.hand_over  # the recipe's pair of views
    as_given = plan_first(Request(tiny_config, "", ONLY), lambda config: toy_data)
    assert as_given.stage == tiny_config  # a config already through the recipe trains as it is


def test_a_request_is_validated_and_round_trips_through_json(tiny_config):
    with pytest.raises(ValueError, match="give it minutes"):
        Request(tiny_config, AUTO, "auto", 0.0)
    with pytest.raises(ValueError, match="pretrain must be one of"):
        Request(tiny_config, AUTO, "sometimes", 1.0)
    request = Request(tiny_config, AUTO, "always", 2.5)
    assert Request.from_json(request.to_json()) == request
