"""The reference a person would pick instead of a ViT: torchvision's ResNet-18 with a stem for small
images, as a backbone with the ViT's interface (image (B, C, H, W) in [-1, 1] -> embedding (B, 512)).

ImageNet's stem (7x7 stride-2 convolution, then a stride-2 max pool) shrinks a 28 px image to 7x7
before the first residual stage; the small-image stem (the CIFAR ResNets' 3x3 stride-1 convolution,
no pool) keeps 28x28, so the four stages see 28, 14, 7 and 4 px. Trained from scratch, never from
ImageNet weights: nothing is downloaded, and it sees the same images and labels as the ViT.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18

from core.config import RESNET18_DIM, ModelConfig


class ResNetBackbone(nn.Module):
    """ResNet-18, small-image stem, classifier removed: (B, C, H, W) -> (B, 512); any input side."""

    def __init__(self, config: ModelConfig, channels: int):
        super().__init__()
        self.config = config
        self.channels = channels
        self.net = resnet18(weights=None)
        self.net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.net.maxpool = nn.Identity()
        self.net.fc = nn.Identity()  # the objective brings its own head

    @property
    def dim(self) -> int:
        return RESNET18_DIM

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)  # global average pool over the last stage: (B, 512)

    def load_pretrained(self, state: dict[str, torch.Tensor]) -> None:
        """A CNN's weights do not depend on the side it was trained at."""
        self.load_state_dict(state)
