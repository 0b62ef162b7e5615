"""Batched, per-sample augmentation on the training device.

Every function takes a whole batch and draws one set of random parameters per sample from an
explicit `torch.Generator`, so there is no Python loop over images, no DataLoader workers, and a
run is reproducible from the generator's state alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from core.config import AugmentConfig

# ITU-R BT.601 luma, as torchvision's rgb_to_grayscale uses.
_LUMA = (0.299, 0.587, 0.114)
# YIQ: hue is an angle in the IQ plane, so a hue shift is one 2×2 rotation per sample.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def _coin(n: int, p: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=device) < p


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in [0, 1]) -> float in [-1, 1].

    A fixed affine map rather than dataset statistics: the patch embedding's linear layer absorbs
    any per-channel shift and scale, and a fixed map needs no state in checkpoints.
    """
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    return x * 2.0 - 1.0


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], gen: torch.Generator,
               device, ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Random-resized-crop boxes, (n, 4) as x1, y1, x2, y2 in pixels, always inside the image.

    Area fraction ~ U(scale) and log aspect ratio ~ U(log ratio), as torchvision samples them;
    where a draw does not fit, the side is clamped to the image instead of re-drawn (no loop).
    """
    area = _uniform(n, *scale, gen, device) * height * width
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), gen, device)
    w = torch.sqrt(area * torch.exp(log_r)).clamp(1.0, width)
    h = torch.sqrt(area / torch.exp(log_r)).clamp(1.0, height)
    x1 = torch.rand(n, generator=gen, device=device) * (width - w)
    y1 = torch.rand(n, generator=gen, device=device) * (height - h)
    return torch.stack([x1, y1, x1 + w, y1 + h], dim=1)


def resized_crops(x: torch.Tensor, boxes: torch.Tensor, source: torch.Tensor, size: int) -> torch.Tensor:
    """Crop box i from image source[i] of x (B×C×H×W float), resized to size×size: (n, C, size, size).

    roi_align with an adaptive sampling ratio averages ceil(box/size) bilinear samples per output
    pixel per axis: downscaled crops are anti-aliased and a 1:1 crop is exact.
    """
    rois = torch.cat([source.to(boxes.dtype)[:, None], boxes], dim=1)
    return roi_align(x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def random_flip(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    flip = _coin(len(x), p, gen, x.device)[:, None, None, None]
    return torch.where(flip, x.flip(-1), x)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) -> (n, 1, H, W) luma."""
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype)
    return torch.einsum("nchw,c->nhw", x, w)[:, None]


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate each sample's chroma by `angle` radians (n,) in YIQ space."""
    to_yiq, to_rgb = _RGB_TO_YIQ.to(x), _YIQ_TO_RGB.to(x)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(x), 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    matrix = to_rgb @ rot @ to_yiq  # (n, 3, 3)
    return torch.einsum("nij,njhw->nihw", matrix, x)


def color_jitter(x: torch.Tensor, strength: tuple[float, float, float, float], p: float,
                 gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation, hue with per-sample factors, applied with probability p.

    Factors follow torchvision's ColorJitter: U(max(0, 1-s), 1+s) for the first three (a strength
    above 1 must not draw a negative factor, which would black out or invert the image), U(-h, h)
    turns for hue. The order is fixed (torchvision shuffles it) to keep the batch vectorised. Saturation and hue
    need colour and are skipped for one-channel data.
    """
    n, device = len(x), x.device
    b, c, s, h = strength
    apply = _coin(n, p, gen, device)[:, None, None, None]
    out = x * _factors(n, b, gen, device)
    out = out.clamp(0, 1)
    gray = out.mean(dim=(1, 2, 3), keepdim=True) if x.shape[1] == 1 else _gray(out).mean(dim=(2, 3), keepdim=True)
    out = ((out - gray) * _factors(n, c, gen, device) + gray).clamp(0, 1)
    if x.shape[1] == 3:
        luma = _gray(out)
        out = ((out - luma) * _factors(n, s, gen, device) + luma).clamp(0, 1)
        out = _rotate_hue(out, _uniform(n, -h, h, gen, device) * 2 * math.pi).clamp(0, 1)
    return torch.where(apply, out, x)


def _factors(n: int, strength: float, gen: torch.Generator, device) -> torch.Tensor:
    """Per-sample jitter factors (n, 1, 1, 1) ~ U(max(0, 1 - strength), 1 + strength)."""
    return _uniform(n, max(0.0, 1 - strength), 1 + strength, gen, device)[:, None, None, None]


def random_grayscale(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    apply = _coin(len(x), p, gen, x.device)[:, None, None, None]
    return torch.where(apply, _gray(x).expand_as(x), x)


def gaussian_blur(x: torch.Tensor, sigma_range: tuple[float, float], p: float,
                  gen: torch.Generator) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma, as one grouped convolution per axis."""
    n, c, height, width = x.shape
    apply = _coin(n, p, gen, x.device)
    sigma = _uniform(n, *sigma_range, gen, x.device)
    radius = max(1, min(int(math.ceil(3 * sigma_range[1])), (min(height, width) - 1) // 2))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (n, 2r+1)
    kernel = kernel.repeat_interleave(c, dim=0)  # (n*c, 2r+1): one filter per (sample, channel)
    flat = x.reshape(1, n * c, height, width)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel[:, None, :, None], groups=n * c)
    return torch.where(apply[:, None, None, None], flat.reshape(n, c, height, width), x)


@dataclass(frozen=True)
class MixedBatch:
    """A batch after CutMix: sample i shows `lam[i]` of its own image and the rest of `partner[i]`'s."""

    images: torch.Tensor  # (n, C, H, W)
    partner: torch.Tensor  # (n,) index into the batch
    lam: torch.Tensor  # (n,) fraction of the sample's own pixels, in [0, 1]


def cutmix(x: torch.Tensor, alpha: float, gen: torch.Generator) -> MixedBatch:
    """CutMix as the paper's code does it, with one box per sample.

    lam0 ~ Beta(alpha, alpha), lam0 = max(lam0, 1 - lam0); a box of area (1 - lam0) is centred
    uniformly and clipped to the image; lam is then reset to the area actually kept. The partner is
    a random permutation of the batch. alpha = 0 returns the batch unmixed (lam = 1).
    """
    n, _, height, width = x.shape
    device = x.device
    partner = torch.randperm(n, generator=gen, device=device)
    if alpha <= 0:
        return MixedBatch(x, partner, torch.ones(n, device=device))
    lam0 = _beta_max(n, alpha, gen, device)
    cut = torch.sqrt(1 - lam0)
    cut_w, cut_h = (cut * width).floor(), (cut * height).floor()
    cx = torch.randint(0, width, (n,), generator=gen, device=device)
    cy = torch.randint(0, height, (n,), generator=gen, device=device)
    x1 = (cx - cut_w // 2).clamp(0, width)[:, None]
    x2 = (cx + cut_w // 2).clamp(0, width)[:, None]
    y1 = (cy - cut_h // 2).clamp(0, height)[:, None]
    y2 = (cy + cut_h // 2).clamp(0, height)[:, None]
    cols = torch.arange(width, device=device)[None]
    rows = torch.arange(height, device=device)[None]
    inside = ((rows >= y1) & (rows < y2))[:, :, None] & ((cols >= x1) & (cols < x2))[:, None, :]  # (n, H, W)
    mixed = torch.where(inside[:, None], x[partner], x)
    lam = 1 - inside.flatten(1).float().mean(dim=1)
    return MixedBatch(mixed, partner, lam)


def _beta_max(n: int, alpha: float, gen: torch.Generator, device) -> torch.Tensor:
    """lam ~ Beta(alpha, alpha), folded to max(lam, 1 - lam) so the own image always dominates.

    Drawn from two Gammas with our generator (torch.distributions takes no generator)."""
    g1 = torch._standard_gamma(torch.full((n,), alpha, device=device), generator=gen)
    g2 = torch._standard_gamma(torch.full((n,), alpha, device=device), generator=gen)
    lam = g1 / (g1 + g2)
    return torch.maximum(lam, 1 - lam)


def mixup(x: torch.Tensor, alpha: float, gen: torch.Generator) -> MixedBatch:
    """Mixup per sample: lam * own + (1 - lam) * partner, lam as in `cutmix`; alpha = 0 leaves x as is."""
    n = len(x)
    partner = torch.randperm(n, generator=gen, device=x.device)
    if alpha <= 0:
        return MixedBatch(x, partner, torch.ones(n, device=x.device))
    lam = _beta_max(n, alpha, gen, x.device)  # float32, as the loss weighs it
    return MixedBatch(torch.lerp(x[partner], x, lam.to(x.dtype)[:, None, None, None]), partner, lam)


def mix(x: torch.Tensor, config: AugmentConfig, epoch: int, gen: torch.Generator) -> MixedBatch:
    """The paper's fine-tuning mixes with Mixup on even epochs and CutMix on odd ones when both are
    on; otherwise whichever is on (CutMix alone is the pretraining setting)."""
    if config.mixup_alpha > 0 and (config.cutmix_alpha <= 0 or epoch % 2 == 0):
        return mixup(x, config.mixup_alpha, gen)
    return cutmix(x, config.cutmix_alpha, gen)


class ViewMaker:
    """Multi-crop views of a uint8 batch: `n_global` crops, then `n_local` crops, as two groups.

    Each group is a tensor (n_views*B, C, size, size) in model input range, view-major (rows
    v*B .. v*B+B-1 are view v of the batch), so the instance index of row r is index[r % B].
    """

    def __init__(self, config: AugmentConfig):
        self.config = config

    def _group(self, x: torch.Tensor, n_views: int, size: int, scale, gen: torch.Generator) -> torch.Tensor:
        cfg = self.config
        b, _, height, width = x.shape
        source = torch.arange(b, device=x.device).repeat(n_views)
        views = resized_crops(x, crop_boxes(b * n_views, height, width, scale, gen, x.device), source, size)
        views = random_flip(views, cfg.flip_p, gen)
        views = color_jitter(views, cfg.jitter, cfg.jitter_p, gen)
        views = random_grayscale(views, cfg.gray_p, gen)
        views = gaussian_blur(views, cfg.blur_sigma, cfg.blur_p, gen)
        return to_model_input(views)

    def __call__(self, batch: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        cfg = self.config
        x = batch.float() / 255.0  # (B, C, H, W)
        groups = [self._group(x, cfg.n_global, cfg.global_size, cfg.global_scale, gen)]
        if cfg.n_local:
            groups.append(self._group(x, cfg.n_local, cfg.local_size, cfg.local_scale, gen))
        return groups

    @property
    def views_per_image(self) -> int:
        return self.config.n_global + self.config.n_local
