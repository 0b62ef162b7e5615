"""The named recipes: the presets, the auto recipe, and which one a dataset gets by default."""
import pytest

from core.config import from_json, to_json
from core.plan.presets import AUTO, PRESETS, RECIPES, default_recipe, preset


def test_every_preset_round_trips_through_json():
    for name in PRESETS:
        config = preset(name)
        assert from_json(to_json(config)) == config


def test_paper_preset_is_the_paper_recipe():
    config = preset("paper")
    assert config.dataset == "flowers102"
    model = config.model
    assert (model.image_size, model.patch_size, model.dim, model.depth) == (112, 16, 192, 12)
    assert (config.augment.n_global, config.augment.n_local) == (2, 4)
    assert config.augment.global_scale == (0.14, 1.0) and config.augment.local_scale == (0.05, 0.4)
    assert (config.epochs, config.batch_size, config.lr, config.weight_decay) == (800, 256, 5e-4, 1e-3)
    assert config.augment.cutmix_alpha == 0.5


def test_unknown_preset():
    with pytest.raises(ValueError, match="cpu-quick"):
        preset("nope")


def test_a_dataset_with_no_tuned_preset_gets_the_auto_recipe():
    assert default_recipe("fashion") == "cpu-quick"  # tuned on it
    assert default_recipe("digits") == default_recipe("folder:/x") == default_recipe("flowers102") == AUTO
    assert set(RECIPES) == {*PRESETS, AUTO}
