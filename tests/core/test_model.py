import pytest
import torch

from core.config import ModelConfig
from core.model import MODEL_SIZES, Backbone, interpolate_positions

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
    regridded = backbone()
    regridded.set_image_size(56)
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

