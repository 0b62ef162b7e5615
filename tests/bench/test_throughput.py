"""The reference pipeline of bench row 1 must make the views our trainer expects, in its layout."""
import pytest
import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader

from bench.throughput import LoaderViews, PerSampleViews, RandomBatches, reference_transform
from core.config import AugmentConfig
from core.data.augment import ViewMaker

# Crops of a flat image are flat, so each view's mean names the image it came from.
PLAIN = AugmentConfig(n_global=2, global_size=14, n_local=3, local_size=7, flip_p=0.0, jitter_p=0.0,
                      gray_p=0.0, blur_p=0.0, cutmix_alpha=0.0)


def flat_images(n: int, channels: int = 1) -> torch.Tensor:
    levels = torch.linspace(0, 255, n).round().to(torch.uint8)  # image i is flat at levels[i]
    return levels[:, None, None, None].expand(n, channels, 28, 28).contiguous()


def test_reference_batches_have_our_view_major_layout_and_range():
    images = flat_images(8)
    loader = DataLoader(PerSampleViews(images, PLAIN), batch_sampler=RandomBatches(8, 4, 1, seed=0))
    views, index = next(iter(loader))
    feeder = LoaderViews(PLAIN, torch.device("cpu"))
    feeder.feed(views)
    ours = ViewMaker(PLAIN)(images[index], torch.Generator().manual_seed(0))
    assert [g.shape for g in feeder(images[index], None)] == [g.shape for g in ours] == [
        (2 * 4, 1, 14, 14), (3 * 4, 1, 7, 7)]
    expected = images[index].float().mean(dim=(1, 2, 3)) / 255 * 2 - 1  # to_model_input of each image
    for reference_group, our_group in zip(feeder.groups, ours):
        # row r of a group is a view of image index[r % B], in both pipelines
        assert torch.allclose(reference_group.mean(dim=(1, 2, 3)), expected.repeat(len(reference_group) // 4),
                              atol=1e-2)
        assert torch.allclose(our_group.mean(dim=(1, 2, 3)), expected.repeat(len(our_group) // 4), atol=1e-2)


def test_reference_transform_follows_the_recipe():
    recipe = AugmentConfig(global_size=28, flip_p=0.0, blur_p=0.5, blur_sigma=(0.1, 2.0),
                           jitter=(0.8, 0.7, 0.6, 0.2))
    gray = reference_transform(recipe, 28, (0.2, 1.0), channels=1).transforms
    kinds = [type(t) for t in gray]  # no flip (p 0), no grayscale (one channel)
    assert kinds == [T.RandomResizedCrop, T.RandomApply, T.RandomApply, T.ToTensor, T.Normalize]
    crop, jitter, blur = gray[0], gray[1].transforms[0], gray[2].transforms[0]
    assert crop.size == (28, 28) and crop.scale == (0.2, 1.0)
    assert jitter.brightness == pytest.approx((0.2, 1.8)) and jitter.contrast == pytest.approx((0.3, 1.7))
    assert jitter.saturation is None and jitter.hue is None  # nothing to saturate or rotate in one channel
    assert blur.kernel_size == (13, 13) and blur.sigma == (0.1, 2.0)  # radius 3 sigma = 6, as core.augment
    colour = [type(t) for t in reference_transform(recipe, 28, (0.2, 1.0), channels=3).transforms]
    assert T.RandomGrayscale in colour
