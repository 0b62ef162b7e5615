"""The ViT backbone (vit-pytorch), its heads, position-embedding interpolation and the forward pass
that embeds a set of images. The only module that touches vit-pytorch's internals: `_check_layout`
names every one it relies on and fails loudly, at construction, if an upgrade moves them.

vit-pytorch's own forward adds `pos_embedding[:seq]`: an input smaller than `image_size` silently
gets the positions of the wrong patches, a larger one crashes. `Backbone` therefore runs the ViT's
modules itself and interpolates the position grid whenever the input's patch grid differs.

With `attention="sdpa"` every layer's vit-pytorch `Attention` is swapped for `SdpaAttention`, which
holds the very same submodules (so the same state_dict keys) and computes softmax(QK^T/sqrt(d))V with
torch's fused kernel instead of materialising the (B, heads, n, n) weights.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from vit_pytorch import ViT
from vit_pytorch.vit import Attention

from core.config import ModelConfig
from core.data.augment import to_model_input
from core.model.cnn import ResNetBackbone


def cpu_state(source: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies of a module's state (or of a state dict): what may be kept while training goes on."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def interpolate_positions(pos: torch.Tensor, n_prefix: int, old_grid: tuple[int, int],
                          new_grid: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of a (n_prefix + gh*gw, D) position table to a new patch grid; prefix (CLS) kept."""
    if old_grid == new_grid:
        return pos
    prefix, grid = pos[:n_prefix], pos[n_prefix:]
    dim = pos.shape[-1]
    grid = grid.reshape(1, *old_grid, dim).permute(0, 3, 1, 2)  # (1, D, gh, gw)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], dim)
    return torch.cat([prefix, grid], dim=0)


class SdpaAttention(nn.Module):
    """vit-pytorch's `Attention` computed by `F.scaled_dot_product_attention`, on the same parameters.

    It adopts the original's `norm`, `to_qkv` and `to_out` modules, so parameters and state_dict keys
    are unchanged. Dropout keeps vit-pytorch's semantics: on the attention weights (SDPA's
    `dropout_p`, only in training) and again after the output projection (inside `to_out`).
    """

    def __init__(self, source: Attention):
        super().__init__()
        self.heads = source.heads
        self.norm = source.norm
        self.to_qkv = source.to_qkv
        self.to_out = source.to_out
        self.dropout_p = source.dropout.p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)  # (B, n, D)
        qkv = self.to_qkv(x).unflatten(-1, (3, self.heads, -1))  # (B, n, 3, heads, d), as chunk(3) splits it
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, n, d)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout_p if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).flatten(2))  # (B, heads, n, d) -> (B, n, heads*d)


def _check_layout(vit: ViT) -> None:
    """vit-pytorch's module layout as Backbone uses it; a RuntimeError that says what moved otherwise.

    Relied on: `to_patch_embedding` = Sequential(Rearrange, LayerNorm, Linear, LayerNorm), a
    `cls_token` and a `pos_embedding` table of (n_prefix + patches, dim), an embedding `dropout`, and
    `transformer.layers` of [Attention, FeedForward] pairs whose Attention has `heads`, `norm`,
    `to_qkv`, `to_out`, `dropout` and the softmax module `attend`.
    """
    problems = []
    patch = getattr(vit, "to_patch_embedding", None)
    if not (isinstance(patch, nn.Sequential) and len(patch) == 4 and isinstance(patch[1], nn.LayerNorm)
            and isinstance(patch[2], nn.Linear)):
        problems.append("to_patch_embedding is no longer Sequential(Rearrange, LayerNorm, Linear, LayerNorm)")
    for name in ("cls_token", "pos_embedding", "dropout", "transformer"):
        if not hasattr(vit, name):
            problems.append(f"ViT has no {name}")
    layers = getattr(getattr(vit, "transformer", None), "layers", None)
    if layers is None or not all(len(layer) == 2 and isinstance(layer[0], Attention) for layer in layers):
        problems.append("transformer.layers are no longer [Attention, FeedForward] pairs")
    else:
        attention = layers[0][0]
        problems += [f"Attention has no {name}" for name in ("heads", "norm", "to_qkv", "to_out", "dropout", "attend")
                     if not hasattr(attention, name)]
    if problems:
        raise RuntimeError("this vit-pytorch's ViT differs from the layout core/model.py was written for "
                           f"(vit-pytorch==1.26.11): {'; '.join(problems)}")


class Backbone(nn.Module):
    """Image (B, C, H, W) in [-1, 1] -> pooled embedding (B, D)."""

    def __init__(self, config: ModelConfig, channels: int):
        super().__init__()
        self.config = config
        self.channels = channels
        self.vit = ViT(image_size=config.image_size, patch_size=config.patch_size, num_classes=0,
                       dim=config.dim, depth=config.depth, heads=config.heads, mlp_dim=config.mlp_dim,
                       pool=config.pool, channels=channels, dim_head=config.dim_head,
                       dropout=config.dropout, emb_dropout=config.dropout)
        _check_layout(self.vit)
        if not config.patch_norm:
            self.vit.to_patch_embedding[1] = nn.Identity()  # Sequential(Rearrange, LayerNorm, Linear, LayerNorm)
        if config.attention == "sdpa":
            for layer in self.vit.transformer.layers:  # each a ModuleList [Attention, FeedForward]
                layer[0] = SdpaAttention(layer[0])
        self.grid = (config.grid, config.grid)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def n_prefix(self) -> int:
        return self.vit.cls_token.shape[0]  # 1 CLS token for pool="cls", none for "mean"

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> transformer output (B, n_prefix + gh*gw, D)."""
        p = self.config.patch_size
        height, width = images.shape[-2:]
        if height % p or width % p:
            raise ValueError(f"input {height}x{width} is not a multiple of patch size {p}")
        x = self.vit.to_patch_embedding(images)  # (B, gh*gw, D)
        prefix = self.vit.cls_token.expand(x.shape[0], -1, -1)  # shape, not len(): a traced graph keeps N free
        x = torch.cat([prefix, x], dim=1)
        pos = interpolate_positions(self.vit.pos_embedding, self.n_prefix, self.grid, (height // p, width // p))
        return self.vit.transformer(self.vit.dropout(x + pos))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.tokens(images)
        return x[:, 0] if self.config.pool == "cls" else x.mean(dim=1)

    @contextmanager
    def last_attention(self) -> Iterator[list[torch.Tensor]]:
        """Collect the last layer's attention weights (B, heads, n, n), one tensor per forward, while
        inside the block. Needs `attention="explicit"`: SDPA never materialises the weights."""
        layer = self.vit.transformer.layers[-1][0]
        if not isinstance(layer, Attention):
            raise ValueError('attention weights need ModelConfig(attention="explicit")')
        captured: list[torch.Tensor] = []
        handle = layer.attend.register_forward_hook(lambda _module, _args, output: captured.append(output))
        try:
            yield captured
        finally:
            handle.remove()

    def load_pretrained(self, state: dict[str, torch.Tensor]) -> None:
        """Load the weights of a backbone of this architecture trained at any side: its position grid is
        interpolated to this one's (bicubic, CLS kept; e.g. 7x7 -> 14x14 for fine-tuning at twice the side)."""
        pos = state["vit.pos_embedding"]  # (n_prefix + g*g, D)
        side = round((pos.shape[0] - self.n_prefix) ** 0.5)
        with torch.no_grad():
            regridded = interpolate_positions(pos, self.n_prefix, (side, side), self.grid)
        self.load_state_dict({**state, "vit.pos_embedding": regridded})


def build_backbone(config: ModelConfig, channels: int) -> nn.Module:
    """The backbone `config.arch` names: this module's ViT, or the reference CNN (core/cnn.py)."""
    if config.arch == "resnet18":
        return ResNetBackbone(config, channels)
    return Backbone(config, channels)


@torch.no_grad()
def embed(backbone: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """uint8 (N, C, H, W) on any device -> float32 (N, D) on the backbone's device, in eval mode."""
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    try:
        out = [backbone(to_model_input(images[i:i + batch_size].to(device))).float()
               for i in range(0, len(images), batch_size)]
    finally:
        backbone.train(was_training)
    return torch.cat(out)


def instance_head(dim: int, n_instances: int) -> nn.Linear:
    """Parametric instance discrimination: one weight vector (and bias) per training image."""
    return nn.Linear(dim, n_instances)


def class_head(dim: int, n_classes: int) -> nn.Linear:
    return nn.Linear(dim, n_classes)
