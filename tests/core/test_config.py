import dataclasses

import pytest

from core.config import PRESETS, TrainConfig, from_json, preset, to_json


def test_every_preset_round_trips_through_json():
    for name in PRESETS:
        config = preset(name)
        assert from_json(to_json(config)) == config


def test_config_is_frozen_and_overrides_make_new_validated_configs():
    config = preset("cpu-quick")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0
    changed = config.with_overrides(lr=1e-3, augment={"n_local": 3})
    assert changed.lr == 1e-3 and changed.augment.n_local == 3
    assert config == preset("cpu-quick")  # the original is untouched
    with pytest.raises(ValueError, match="batch_size"):
        config.with_overrides(batch_size=1)


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "epochs"),
    ({"warmup_epochs": 99.0}, "warmup_epochs"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"device": "tpu"}, "device"),
    ({"model": {"patch_size": 5}}, "multiple of patch_size"),
    ({"augment": {"global_scale": (0.5, 0.2)}}, "global_scale"),
    ({"augment": {"local_size": 20}}, "crop size 20"),
])
def test_invalid_values_are_refused_with_the_field_named(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig().with_overrides(**changes)


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
