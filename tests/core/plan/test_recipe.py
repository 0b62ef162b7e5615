"""The recipe: one function from (base config, objective, stage) to a config that trains."""
import dataclasses

import pytest

from core.objectives import OBJECTIVES, build_objective
from core.plan.presets import preset
from core.plan.recipe import FINETUNE, recipe


def test_finetuning_is_the_papers_stage_two_scaled_to_the_data():
    quick = preset("cpu-quick")
    ft = recipe(quick, stage=FINETUNE, init_from="runs/a/last.pt")
    assert ft.objective == "supervised" and ft.init_from == "runs/a/last.pt"
    assert ft.epochs == quick.epochs // 4 and ft.lr == quick.lr and ft.label_smoothing == 0.1
    assert (ft.augment.n_global, ft.augment.n_local) == (1, 0)
    assert ft.augment.mixup_alpha == ft.augment.cutmix_alpha == 0.5
    assert ft.augment.global_scale == quick.augment.global_scale  # crops scaled to the data, as pretrained
    assert ft.model.image_size == quick.model.image_size and ft.data_size == 0  # fashion stays 28 px

    paper = recipe(preset("paper"), stage=FINETUNE, init_from="x.pt", resolution=224)
    assert paper.model.image_size == paper.augment.global_size == 224
    assert paper.data_size == 256  # resize 256 -> crop 224, as the paper's test transform
    assert paper.epochs == 200 and paper.warmup_epochs == 2
    with pytest.raises(ValueError, match="multiple of patch_size"):
        recipe(quick, stage=FINETUNE, init_from="x.pt", resolution=30)


def test_supervised_from_scratch_is_the_same_recipe_for_the_epochs_asked():
    quick = preset("cpu-quick")
    scratch = recipe(quick, "supervised", epochs=7)
    finetune = recipe(quick, stage=FINETUNE, init_from="x.pt", epochs=7)
    assert scratch.init_from == "" and scratch.epochs == 7 and scratch.warmup_epochs == 7 / 4
    assert dataclasses.replace(finetune, init_from="") == scratch
    assert recipe(quick, "supervised").epochs == quick.epochs  # from scratch: the whole budget


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_each_objective_gets_a_config_it_can_train(name):
    config = recipe(preset("cpu-quick"), name)
    assert config.objective == name
    build_objective(config, n_instances=2040, n_classes=10)  # raises if the recipe did not fit the objective
    if name == "contrastive":
        assert config.augment.n_global == 2 and config.augment.cutmix_alpha == config.augment.mixup_alpha == 0
    if name == "supervised":
        assert config.augment.mixup_alpha > 0 and config.epochs == preset("cpu-quick").epochs


def test_contrastive_local_crops_come_in_pairs_too():
    paper = preset("paper").with_overrides(augment={"n_local": 1})
    config = recipe(paper, "contrastive")
    assert (config.augment.n_global, config.augment.n_local) == (2, 2)
    build_objective(config, n_instances=8, n_classes=2)


def test_the_preset_recipe_is_the_preset():
    """The invariant behind cpu-quick's published kNN: the recipe leaves a tuned preset as it is."""
    assert recipe(preset("cpu-quick")) == preset("cpu-quick")
    assert recipe(preset("paper")) == preset("paper")


@pytest.mark.parametrize("epochs, warmup", [(1, 0.25), (4, 1.0), (8, 2.0), (60, 2.0)])
def test_a_short_run_gets_a_warmup_that_fits_it(epochs, warmup):
    config = recipe(preset("cpu-quick"), epochs=epochs)
    assert (config.epochs, config.warmup_epochs) == (epochs, warmup)


def test_overrides_are_plain_fields_applied_before_the_recipe():
    config = recipe(preset("cpu-quick"), "contrastive", epochs=1, dataset="digits", batch_size=32, lr=1e-3)
    assert (config.dataset, config.batch_size, config.lr, config.epochs) == ("digits", 32, 1e-3, 1)


@pytest.mark.parametrize("call, problem", [
    (dict(objective="magic"), "unknown objective"),
    (dict(stage="third"), "unknown stage"),
    (dict(stage=FINETUNE), "needs the pretrained checkpoint"),
    (dict(stage=FINETUNE, objective="instance", init_from="x.pt"), "fine-tuning trains the supervised"),
    (dict(objective="instance", resolution=56), "supervised recipe only"),
    (dict(epochs=0), "at least 1"),
])
def test_invalid_requests_say_what_is_wrong(call, problem):
    with pytest.raises(ValueError, match=problem):
        recipe(preset("cpu-quick"), **call)
