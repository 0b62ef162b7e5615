import dataclasses
import json

import pytest
import torch
from vit_pytorch.vit import Attention

from core.config import MODEL_SIZES, ModelConfig, TrainConfig, from_json, to_json
from core.model.backbone import Backbone, SdpaAttention, embed, interpolate_positions

SMALL = ModelConfig(image_size=28, patch_size=7, dim=32, depth=2, heads=2, dim_head=16, mlp_dim=64)


def backbone(config=SMALL, channels=1):
    torch.manual_seed(0)
    return Backbone(config, channels).eval()


def test_embedding_shape():
    assert backbone()(torch.randn(3, 1, 28, 28)).shape == (3, 32)


def test_vit_pytorch_itself_misplaces_smaller_and_crashes_on_larger_inputs():
    """The behaviour Backbone exists to fix: vit-pytorch adds pos_embedding[:seq]."""
    net = backbone()
    with pytest.raises(RuntimeError):
        net.vit(torch.randn(1, 1, 56, 56))  # 64 patches + CLS against a 17-row table


def test_smaller_input_uses_interpolated_positions_not_the_first_rows():
    net = backbone()
    small = torch.randn(2, 1, 14, 14)  # a 2x2 grid instead of 4x4
    expected_pos = interpolate_positions(net.vit.pos_embedding, 1, (4, 4), (2, 2))
    x = net.vit.to_patch_embedding(small)
    x = torch.cat([net.vit.cls_token.expand(2, -1, -1), x], dim=1)
    expected = net.vit.transformer(x + expected_pos)[:, 0]
    assert torch.allclose(net(small), expected, atol=1e-5)
    naive = net.vit.transformer(x + net.vit.pos_embedding[:5])[:, 0]  # what vit-pytorch would do
    assert not torch.allclose(net(small), naive, atol=1e-3)


def test_larger_input_works_and_matches_a_regridded_model():
    net = backbone()
    big = torch.randn(2, 1, 56, 56)
    out = net(big)
    regridded = Backbone(dataclasses.replace(net.config, image_size=56), channels=1).eval()
    regridded.load_pretrained(net.state_dict())  # the 4x4 grid interpolated to 8x8
    assert regridded.vit.pos_embedding.shape == (1 + 64, 32)
    assert torch.allclose(out, regridded(big), atol=1e-5)


def test_interpolation_keeps_cls_and_is_identity_on_the_same_grid():
    pos = torch.randn(1 + 16, 8)
    assert interpolate_positions(pos, 1, (4, 4), (4, 4)) is pos
    resized = interpolate_positions(pos, 1, (4, 4), (8, 8))
    assert resized.shape == (65, 8)
    assert torch.equal(resized[0], pos[0])
    # a constant grid stays constant under bicubic resampling
    flat = torch.cat([pos[:1], torch.ones(16, 8)])
    assert torch.allclose(interpolate_positions(flat, 1, (4, 4), (7, 7))[1:], torch.ones(49, 8), atol=1e-5)


def test_mean_pool_has_no_cls_token():
    net = backbone(ModelConfig(**{**SMALL.__dict__, "pool": "mean"}))
    assert net.n_prefix == 0
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 32)


def test_input_not_a_multiple_of_the_patch_is_refused():
    with pytest.raises(ValueError, match="multiple of patch size"):
        backbone()(torch.randn(1, 1, 30, 30))


def test_named_sizes():
    tiny = MODEL_SIZES["deit-tiny"]
    assert (tiny.patch_size, tiny.dim, tiny.depth, tiny.heads, tiny.mlp_dim) == (16, 192, 12, 3, 768)
    params = sum(p.numel() for p in Backbone(tiny, 3).parameters())
    assert 5.0e6 < params < 6.0e6  # DeiT-Tiny is 5.7 M parameters


def test_patch_norm_erases_flat_brightness_and_is_off_by_default():
    white, black = torch.full((1, 1, 28, 28), 1.0), torch.full((1, 1, 28, 28), -1.0)
    with_norm = backbone(ModelConfig(**{**SMALL.__dict__, "patch_norm": True}))
    assert torch.allclose(with_norm(white), with_norm(black), atol=1e-5)  # why it is off
    default = backbone()
    assert not SMALL.patch_norm
    assert not torch.allclose(default(white), default(black), atol=1e-3)



# -- attention: SDPA and vit-pytorch's explicit softmax ----------------------------------------

def with_attention(mode, config=SMALL, **changes):
    return ModelConfig(**{**config.__dict__, **changes, "attention": mode})


def twin_backbones(config=SMALL):
    """The same weights in both modes: explicit's state_dict loaded into an SDPA backbone."""
    explicit = backbone(with_attention("explicit", config))
    sdpa = Backbone(with_attention("sdpa", config), 1)
    sdpa.load_state_dict(explicit.state_dict())
    return explicit, sdpa


def test_sdpa_mode_replaces_every_attention_module_and_explicit_keeps_vit_pytorchs():
    explicit, sdpa = twin_backbones()
    assert all(isinstance(layer[0], Attention) for layer in explicit.vit.transformer.layers)
    assert all(isinstance(layer[0], SdpaAttention) for layer in sdpa.vit.transformer.layers)
    assert ModelConfig().attention == "sdpa"


def test_state_dict_keys_and_shapes_are_the_same_in_both_modes():
    explicit, sdpa = twin_backbones()
    shapes = {k: v.shape for k, v in explicit.state_dict().items()}
    assert shapes == {k: v.shape for k, v in sdpa.state_dict().items()}
    explicit.load_state_dict(sdpa.state_dict())  # strict, in the other direction too


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_sdpa_and_explicit_give_equal_outputs_and_gradients(train, pool):
    # float32 on the CPU: the two differ only in summation order, ~1e-7 relative; 1e-5 absolute
    # on outputs and gradients of order 1 leaves room for that and nothing else.
    explicit, sdpa = twin_backbones(with_attention("explicit", pool=pool))
    images = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    outputs, grads = [], []
    for net in (explicit, sdpa):
        net.train(train)
        out = net(images)
        (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()  # a loss that weighs dimensions unequally
        outputs.append(out.detach())
        grads.append({name: p.grad for name, p in net.named_parameters()})
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    assert grads[0].keys() == grads[1].keys()
    qkv = "vit.transformer.layers.0.0.to_qkv.weight"
    assert grads[0][qkv].abs().max() > 1e-3  # attention really receives gradient
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


def test_attention_dropout_acts_on_the_weights_in_both_modes_and_only_in_training():
    """Both modes drop attention weights with the same p (inverted scaling keeps the mean)."""
    config = with_attention("explicit", dropout=0.3)
    explicit, sdpa = twin_backbones(config)
    x = torch.randn(1, 5, config.dim, generator=torch.Generator().manual_seed(2)).expand(4000, -1, -1)
    spreads = []
    for net in (explicit, sdpa):
        attention = net.vit.transformer.layers[0][0]
        expected = attention.eval()(x[:1])  # (1, 5, D) without dropout
        torch.manual_seed(3)
        draws = attention.train()(x)  # 4000 independent dropout masks
        assert torch.allclose(draws.mean(dim=0), expected[0], atol=0.05)
        spreads.append(draws.std(dim=0).mean())
    assert spreads[0] > 0.05
    assert 0.9 < spreads[1] / spreads[0] < 1.1
    images = torch.randn(2, 1, 28, 28)
    assert torch.allclose(explicit.eval()(images), sdpa.eval()(images), atol=1e-5)


def test_unknown_attention_mode_is_refused():
    with pytest.raises(ValueError, match="model.attention must be one of"):
        with_attention("flash")


def test_a_config_saved_before_the_attention_field_loads_with_sdpa():
    config = TrainConfig(model=with_attention("explicit"))
    raw = json.loads(to_json(config))
    del raw["model"]["attention"]  # what checkpoints written before the field hold
    old = from_json(json.dumps(raw))
    assert old.model.attention == "sdpa"
    assert old.model == dataclasses.replace(config.model, attention="sdpa")
    Backbone(old.model, 1).load_state_dict(backbone(config.model).state_dict())


def test_vit_pytorchs_layout_is_what_backbone_relies_on():
    """Fails loudly (with the names) when a vit-pytorch upgrade moves the internals core/model.py uses."""
    from vit_pytorch import ViT

    from core.model.backbone import _check_layout
    config = ModelConfig(image_size=14, patch_size=7, dim=16, depth=2, heads=2, dim_head=8, mlp_dim=32)
    vit = ViT(image_size=14, patch_size=7, num_classes=0, dim=16, depth=2, heads=2, mlp_dim=32, channels=1,
              dim_head=8)
    _check_layout(vit)  # the pinned version passes
    Backbone(config, 1)
    del vit.transformer.layers[0][0].attend
    with pytest.raises(RuntimeError, match="Attention has no attend"):
        _check_layout(vit)
    vit.to_patch_embedding = torch.nn.Linear(4, 4)
    with pytest.raises(RuntimeError, match="to_patch_embedding"):
        _check_layout(vit)


def test_last_attention_collects_the_weights_of_each_forward_and_only_inside_the_block():
    net = backbone(dataclasses.replace(backbone().config, attention="explicit"))
    images = torch.randn(3, 1, 28, 28)
    with net.last_attention() as captured:
        net(images)
        net(images[:1])
    net(images)  # outside the block: the hook is gone
    assert [tuple(a.shape) for a in captured] == [(3, 2, 17, 17), (1, 2, 17, 17)]
    assert torch.allclose(captured[0].sum(dim=-1), torch.ones(3, 2, 17))  # softmax rows
    with pytest.raises(ValueError, match="explicit"):
        with backbone().last_attention():
            pass


def test_embed_batches_and_restores_train_mode():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    net.train()
    images = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8)
    out = embed(net, images, batch_size=3)
    assert out.shape == (10, 3) and net.training
    assert torch.allclose(out, net(images.float() / 255 * 2 - 1), atol=1e-6)
