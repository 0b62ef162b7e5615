"""The in-memory form every dataset source decodes into: a uint8 `ImageSet` per split, the two
splits as `DataSplits`, and the seeded stratified hold-out that carves a test split from one set."""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import torch

from core.data.framing import Framing, measure_framing
from core.data.images import fit_square

TEST_FRACTION = 0.2


class DatasetError(ValueError):
    """A data problem the user can fix; the message names the problem and the path involved."""


@dataclass(frozen=True, eq=False)  # eq=False: field-wise == on tensors is ambiguous
class ImageSet:
    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    # Each image's file, relative to its dataset folder ("cats/001.jpg"), where the source has files; else ().
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape N x C x H x W")
        if images.shape[1] not in (1, 3) or images.shape[2] != images.shape[3]:
            raise ValueError(f"images must have 1 or 3 channels and be square, "
                             f"got {tuple(images.shape)}")
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
            raise ValueError("labels must be a 1-D int64 tensor")
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if not self.class_names or not all(isinstance(n, str) for n in self.class_names):
            raise ValueError("class_names must be a non-empty sequence of strings")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in [0, {len(self.class_names)})")
        if self.names and len(self.names) != len(images):
            raise ValueError(f"{len(images)} images but {len(self.names)} names")
        # Frozen, so normalise through object.__setattr__; the hash and .numpy() need contiguity.
        object.__setattr__(self, "images", images.contiguous())
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "names", tuple(self.names))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        return self.images.shape[2]

    def fingerprint(self) -> str:
        digest = hashlib.sha256(repr(tuple(self.images.shape)).encode())
        digest.update(self.images.cpu().numpy().tobytes())
        digest.update(self.labels.cpu().numpy().tobytes())
        digest.update("\0".join(self.class_names).encode())
        return digest.hexdigest()[:16]

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device), self.class_names, self.names)

    def subset(self, index: torch.Tensor) -> ImageSet:
        """The images `index` picks: positions, or a boolean mask over the set."""
        index = (index.nonzero().flatten() if index.dtype == torch.bool else index).to(self.images.device)
        names = tuple(self.names[i] for i in index.tolist()) if self.names else ()
        return ImageSet(self.images[index], self.labels[index], self.class_names, names)

    def resized(self, side: int) -> torch.Tensor:
        """The images at `side` (core.images.fit_square), computed once per side: the app publishes
        a classifier at every snapshot, and Flowers' 2,040 images at 144 -> 112 px cost a second."""
        cache = self.__dict__.setdefault("_resized", {})
        if side not in cache:
            cache[side] = fit_square(self.images, side)
        return cache[side]

    @functools.cached_property
    def framing(self) -> Framing:
        """How these images frame their object (light on dark or a photo), measured once."""
        return measure_framing(self.images)


@dataclass(frozen=True, eq=False)
class DataSplits:
    name: str
    train: ImageSet
    test: ImageSet
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.train.class_names != self.test.class_names:
            raise ValueError("train and test must share class_names")
        if (self.train.channels, self.train.size) != (self.test.channels, self.test.size):
            raise ValueError("train and test images must have the same channels and size")

    @functools.cached_property  # hashed once: checkpoints ask for it at every save
    def fingerprint(self) -> str:
        # The name is left out so that a moved or renamed folder still matches its checkpoints.
        both = f"{self.train.fingerprint()}:{self.test.fingerprint()}"
        return hashlib.sha256(both.encode()).hexdigest()[:16]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names


def holdout_mask(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Seeded stratified hold-out: ~20% of each class, at least 1 test and 1 train image."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for cls in labels.unique():
        members = torch.nonzero(labels == cls).flatten()
        n_test = min(len(members) - 1, max(1, round(len(members) * TEST_FRACTION)))
        mask[members[torch.randperm(len(members), generator=generator)[:n_test]]] = True
    return mask
