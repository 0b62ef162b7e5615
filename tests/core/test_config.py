import dataclasses

import pytest

from core.config import MODEL_SIZES, TrainConfig
from core.plan.presets import preset


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


def test_the_model_sizes_are_the_cpu_vit_and_deit_tiny():
    assert TrainConfig().model == MODEL_SIZES["cpu"]  # the defaults are cpu-quick's 0.8 M-parameter ViT
    tiny = MODEL_SIZES["deit-tiny"]
    assert (tiny.dim, tiny.depth, tiny.heads, tiny.dim_head, tiny.mlp_dim) == (192, 12, 3, 64, 768)
