import torch

from core.config import AugmentConfig
from core.data.augment import (
    ViewMaker,
    color_jitter,
    crop_boxes,
    cutmix,
    gaussian_blur,
    mix,
    mixup,
    random_flip,
    resized_crops,
    to_model_input,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=16, c=3, size=32, seed=0):
    return torch.randint(0, 256, (n, c, size, size), generator=gen(seed), dtype=torch.uint8)


def test_crop_boxes_stay_inside_the_image_and_respect_scale():
    boxes = crop_boxes(5000, 28, 40, (0.05, 0.4), gen(), "cpu")
    x1, y1, x2, y2 = boxes.unbind(1)
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 40 + 1e-4).all() and (y2 <= 28 + 1e-4).all()
    assert (x2 > x1).all() and (y2 > y1).all()
    area = (x2 - x1) * (y2 - y1) / (28 * 40)
    assert area.max() <= 0.4 + 1e-4
    # clamping to the image only ever shrinks a box, so most draws keep their area in range
    assert (area >= 0.05 - 1e-4).float().mean() > 0.95


def test_crop_parameters_differ_per_sample_and_repeat_under_the_same_seed():
    a = crop_boxes(64, 28, 28, (0.14, 1.0), gen(3), "cpu")
    b = crop_boxes(64, 28, 28, (0.14, 1.0), gen(3), "cpu")
    assert torch.equal(a, b)
    assert len(torch.unique(a[:, 2] - a[:, 0])) > 56  # own width per sample (a few clamp to 28)


def test_full_image_box_reproduces_the_image():
    x = images(4, 1, 28).float()
    boxes = torch.tensor([[0.0, 0.0, 28.0, 28.0]]).repeat(4, 1)
    out = resized_crops(x, boxes, torch.arange(4), 28)
    assert torch.allclose(out, x, atol=1e-3)


def test_crop_takes_pixels_from_its_own_source_image():
    x = torch.stack([torch.full((1, 8, 8), float(i)) for i in range(5)])
    boxes = torch.tensor([[2.0, 2.0, 6.0, 6.0]]).repeat(10, 1)
    source = torch.tensor([4, 3, 2, 1, 0, 0, 1, 2, 3, 4])
    out = resized_crops(x, boxes, source, 4)
    assert torch.equal(out.mean(dim=(1, 2, 3)), source.float())


def test_flip_is_per_sample():
    x = torch.arange(8.0).reshape(1, 1, 1, 8).repeat(200, 1, 1, 1)
    out = random_flip(x, 0.5, gen())
    flipped = (out[:, 0, 0, 0] == 7).float().mean()
    assert 0.3 < flipped < 0.7
    assert torch.equal(out[out[:, 0, 0, 0] == 7], x.flip(-1)[out[:, 0, 0, 0] == 7])


def test_color_jitter_draws_per_sample_factors_and_keeps_range():
    x = torch.full((64, 3, 8, 8), 0.5)
    x[:, 0] = 0.7
    out = color_jitter(x, (0.4, 0.4, 0.4, 0.1), 1.0, gen())
    assert out.min() >= 0 and out.max() <= 1
    assert len(torch.unique(out.mean(dim=(1, 2, 3)))) > 60
    assert torch.equal(color_jitter(x, (0.4, 0.4, 0.4, 0.1), 0.0, gen()), x)  # p = 0: untouched


def test_jitter_is_not_a_no_op_on_grayscale():
    x = torch.rand(32, 1, 8, 8, generator=gen())
    out = color_jitter(x, (0.4, 0.4, 0.0, 0.0), 1.0, gen(1))
    assert (out - x).abs().mean() > 0.01


def test_blur_preserves_mean_and_smooths():
    x = torch.rand(8, 1, 28, 28, generator=gen())
    out = gaussian_blur(x, (1.0, 2.0), 1.0, gen())
    assert torch.allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=0.02)
    assert out.std() < x.std() * 0.6


def test_cutmix_lambda_equals_the_kept_area():
    x = torch.zeros(64, 1, 20, 30)
    x += torch.arange(64.0)[:, None, None, None]  # each image is its own constant
    mixed = cutmix(x, 0.5, gen())
    own = (mixed.images == x).float().flatten(1).mean(dim=1)
    moved = mixed.partner != torch.arange(64)  # a sample paired with itself shows no paste
    assert torch.allclose(own[moved], mixed.lam[moved])
    pasted = mixed.images != x
    partner_values = x[mixed.partner].expand_as(x)
    assert torch.equal(mixed.images[pasted], partner_values[pasted])
    assert (mixed.lam > 0.45).all() and (mixed.lam < 1).any()
    assert sorted(mixed.partner.tolist()) == list(range(64))


def test_cutmix_alpha_zero_leaves_images_alone():
    x = torch.rand(8, 3, 16, 16, generator=gen())
    mixed = cutmix(x, 0.0, gen())
    assert torch.equal(mixed.images, x) and torch.equal(mixed.lam, torch.ones(8))


def test_view_maker_shapes_range_and_determinism():
    config = AugmentConfig(n_global=2, global_size=28, n_local=3, local_size=14)
    batch = images(10, 1, 28)
    groups = ViewMaker(config)(batch, gen(5))
    assert [tuple(g.shape) for g in groups] == [(20, 1, 28, 28), (30, 1, 14, 14)]
    assert all(g.min() >= -1 and g.max() <= 1 for g in groups)
    again = ViewMaker(config)(batch, gen(5))
    assert all(torch.equal(a, b) for a, b in zip(groups, again))
    other = ViewMaker(config)(batch, gen(6))
    assert not torch.equal(groups[0], other[0])
    # the two global views of one image differ (independent parameters per view)
    assert not torch.equal(groups[0][:10], groups[0][10:])


def test_model_input_range():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert torch.equal(to_model_input(x), torch.tensor([[[[-1.0, 1.0]]]]))


def test_mixup_blends_each_sample_with_its_partner_by_its_own_lam():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 6, 6, generator=g)
    mixed = mixup(x, 0.5, g)
    lam = mixed.lam[:, None, None, None]
    assert torch.allclose(mixed.images, lam * x + (1 - lam) * x[mixed.partner], atol=1e-6)
    assert (mixed.lam >= 0.5).all() and (mixed.lam <= 1).all() and mixed.lam.std() > 0
    unmixed = mixup(x, 0.0, g)
    assert torch.equal(unmixed.images, x) and (unmixed.lam == 1).all()


def test_mix_alternates_mixup_and_cutmix_by_epoch_when_both_are_on():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    both = AugmentConfig(cutmix_alpha=0.5, mixup_alpha=0.5)

    def is_cut(mixed):  # CutMix copies pixels: each is exactly the sample's own or its partner's
        own, other = mixed.images == x, mixed.images == x[mixed.partner]
        return bool((own | other).all())

    assert not is_cut(mix(x, both, 0, g)) and is_cut(mix(x, both, 1, g)) and not is_cut(mix(x, both, 2, g))
    assert is_cut(mix(x, AugmentConfig(cutmix_alpha=0.5), 0, g))
    assert not is_cut(mix(x, AugmentConfig(cutmix_alpha=0.0, mixup_alpha=0.5), 1, g))


def test_a_jitter_stronger_than_one_never_blacks_out_or_inverts_an_image():
    """torchvision clips the factor range at 0; U(1 - s, 1 + s) with s > 1 drew negative factors, which
    turned about a sixth of the images black (brightness) or inverted them (contrast)."""
    x = torch.full((1000, 1, 4, 4), 0.5)
    bright = color_jitter(x, (1.5, 0.0, 0.0, 0.0), 1.0, gen())
    assert (bright.flatten(1).amax(dim=1) > 0).all()
    two_levels = torch.zeros(1000, 1, 4, 4)
    two_levels[:, :, :2] = 0.8  # top half bright, bottom half dark
    contrast = color_jitter(two_levels + 0.1, (0.0, 1.5, 0.0, 0.0), 1.0, gen())
    assert (contrast[:, :, :2].mean(dim=(1, 2, 3)) >= contrast[:, :, 2:].mean(dim=(1, 2, 3))).all()


def test_mixup_keeps_the_inputs_dtype():
    x = torch.rand(6, 1, 4, 4, dtype=torch.float64)
    mixed = mixup(x, 0.5, gen())
    assert mixed.images.dtype == torch.float64
    lam = mixed.lam.double()[:, None, None, None]
    assert torch.allclose(mixed.images, lam * x + (1 - lam) * x[mixed.partner])
