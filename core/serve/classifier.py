"""Classify one uploaded image with a published copy of the backbone.

Training publishes a `PublishedModel` (weights, training-set embeddings and images, all copied at
one moment); a `Classifier` built from it never touches the live model, so predictions stay
consistent while training keeps changing its own weights. Turning the upload into model input is
core.framing's job; the kNN vote is core.metrics'; the class head is the run's own objective.
"""
from __future__ import annotations

import dataclasses
import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.config import TrainConfig
from core.data.augment import to_model_input
from core.data.framing import Framing, preprocess
from core.data.images import ImageError, is_blank
from core.data.labels import labelled_index
from core.data.splits import ImageSet
from core.metrics import knn_votes
from core.model.backbone import Backbone, embed
from core.objectives import load_class_head
from core.trainer.checkpoint import Checkpoint

TOP_K = 5
N_NEIGHBOURS = 8
# An upload is "unlike the training images" when its nearest training image is less similar than this
# share of the training images are to their own nearest neighbour, in the embedding or in pixels (the
# model's input, pooled to PIXEL_SIDE): either alone flags at most half of it, so both at most all of it.
UNLIKE_SHARE = 0.01
PIXEL_SIDE = 16
BLANK_MESSAGE = "the image is blank (one flat colour): there is nothing to classify"
HEAD, KNN = "class head", "kNN vote"  # classification methods, the preferred first


@dataclass(frozen=True, eq=False)  # eq=False: field-wise == on tensors is ambiguous
class PublishedModel:
    """Everything classification needs, copied out of training at one moment (never the live model)."""

    config: TrainConfig
    weights: dict[str, torch.Tensor]  # backbone state_dict (CPU)
    channels: int
    class_names: tuple[str, ...]
    train_images: torch.Tensor  # uint8 (N, C, H, W) CPU, for the nearest-neighbour thumbnails
    train_labels: torch.Tensor  # int64 (N,)
    train_embeddings: torch.Tensor  # float32 (N, D)
    epoch: int
    framing: Framing  # how the training images frame their object; uploads are framed alike
    head: dict[str, torch.Tensor] | None = None  # the objective's state when it predicts classes, else None

    def __post_init__(self) -> None:
        n = len(self.train_labels)
        if self.train_images.dim() != 4 or self.train_images.shape[1] != self.channels:
            raise ValueError(f"train_images must be (N, {self.channels}, H, W), got {tuple(self.train_images.shape)}")
        if n == 0 or len(self.train_images) != n or len(self.train_embeddings) != n:
            raise ValueError(f"need as many (> 0) train images, labels and embeddings, got "
                             f"{len(self.train_images)}, {n}, {len(self.train_embeddings)}")
        if self.train_labels.min() < 0 or self.train_labels.max() >= len(self.class_names):
            raise ValueError(f"train_labels must lie in [0, {len(self.class_names)})")

    @classmethod
    def build(cls, config: TrainConfig, train: ImageSet, weights: dict[str, torch.Tensor],
              embeddings: torch.Tensor, epoch: int, head: dict[str, torch.Tensor] | None = None) -> PublishedModel:
        """A published model of `config`'s weights over the training set `train`, whose images are
        resized to the model's side and whose framing is measured once per set (ImageSet caches both)."""
        return cls(config=config, weights=weights, channels=train.channels, class_names=train.class_names,
                   train_images=train.resized(config.model.image_size), train_labels=train.labels.cpu(),
                   train_embeddings=embeddings.float().cpu(), epoch=epoch, framing=train.framing, head=head)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, train: ImageSet) -> PublishedModel:
        """A checkpoint's model over its training set (one batched forward pass embeds the set); the
        caller has checked that `train` is the data it was trained on (Checkpoint.check_matches)."""
        if checkpoint.config.model.arch != "vit":
            raise ValueError(f"this checkpoint holds core.compare's reference CNN ({checkpoint.config.model.arch}); "
                             "the app classifies, and shows the attention of, its ViTs only")
        backbone = checkpoint.build_backbone()
        embeddings = embed(backbone, train.resized(checkpoint.config.model.image_size))
        return cls.build(checkpoint.config, train, checkpoint.backbone, embeddings, checkpoint.epoch,
                         checkpoint.objective if checkpoint.predicts_classes else None)


@dataclass(frozen=True, eq=False)
class Prediction:
    """One classified upload, in plain Python and numpy for any front end."""

    top: list[tuple[str, float]]  # top-5 (class name, probability: class-head softmax or normalised kNN votes)
    neighbours: list[tuple[int, str, float]]  # 8 nearest training images: (index, class name, cosine)
    model_input: np.ndarray  # uint8 H×W (gray) or H×W×3: what the model saw
    attention: np.ndarray  # float32 H×W in [0, 1]: last layer's CLS attention to the patches, head mean
    method: str
    # The share of training images whose own nearest neighbour is less similar than this upload's nearest
    # training image: near 0 for an image unlike anything trained on, about uniform for images like them.
    typicality: float = 1.0
    votes: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # kNN: (class, neighbours of k)
    k: int = 0  # the neighbours a kNN vote counts

    @property
    def unlike_training(self) -> bool:
        return self.typicality < UNLIKE_SHARE



@contextmanager
def _one_torch_thread():
    """Run the calling thread's torch ops on one thread, then restore its setting.

    A 17-token forward gains nothing from intra-op threads, and when training (or anything else)
    keeps the cores busy, OpenMP's barriers make a 2-thread forward ~10x slower than 1 thread.
    torch's thread count is per OS thread once set, so other threads keep theirs.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _as_numpy_image(pixels: torch.Tensor) -> np.ndarray:
    """uint8 (C, H, W) -> a new H×W or H×W×3 array (a copy, so callers cannot alter our tensors)."""
    return pixels[0].numpy().copy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy().copy()


def _attention_map(attn: torch.Tensor, n_prefix: int, size: int) -> np.ndarray:
    """Softmax output (1, heads, n, n) -> float32 (size, size) in [0, 1]."""
    attn = attn[0].mean(dim=0)  # (n, n), mean over heads
    # CLS pooling: what the CLS token (the embedding) reads from each patch. Mean pooling has no CLS
    # token, so use the attention each patch receives, averaged over all queries.
    patches = attn[0, n_prefix:] if n_prefix else attn.mean(dim=0)  # (g*g,)
    grid = int(round(len(patches) ** 0.5))
    low, high = patches.min(), patches.max()
    patches = (patches - low) / (high - low).clamp_min(1e-12)  # uniform attention -> all zeros
    upsampled = F.interpolate(patches.reshape(1, 1, grid, grid), size=(size, size), mode="bilinear",
                              align_corners=False)  # convex weights: stays in [0, 1]
    return upsampled[0, 0].numpy().astype(np.float32)


class Classifier:
    """Classification against one PublishedModel, by its class head (a fine-tuned run) or by a kNN
    vote over the training embeddings; immutable after __init__, shareable across threads."""

    def __init__(self, published: PublishedModel):
        self.published = published
        # The attention map needs the softmax weights, which SDPA never materialises; the parameters
        # are the same in both modes, so the published weights load into the explicit one.
        self._backbone = Backbone(dataclasses.replace(published.config.model, attention="explicit"),
                                  published.channels)
        self._backbone.load_state_dict(published.weights)  # copies: later edits to the dict do not reach us
        self._backbone.eval().requires_grad_(False)
        self._train = F.normalize(published.train_embeddings.float(), dim=1)  # (N, D), unit rows
        if self._train.shape[1] != self._backbone.dim:
            raise ValueError(f"train_embeddings have {self._train.shape[1]} dimensions, the model {self._backbone.dim}")
        self._labels = published.train_labels.clone()
        # A run that saw few labels (config.labels_per_class) votes with its labelled images only.
        self._labelled = labelled_index(self._labels, published.config.labels_per_class, published.config.seed)
        self._k = min(published.config.knn_k, len(self._labelled))
        # Each training image's similarity to its nearest other one, in the embedding and in pixels
        # (an instance-discrimination embedding maps a photo of anything near some garment; pixels less so).
        self._pixels = _pixel_features(published.train_images)  # (N, C * PIXEL_SIDE²), unit rows
        self._own_nearest = (_nearest_other(self._train).sort().values, _nearest_other(self._pixels).sort().values)
        # The attention hook sits on a module every call shares: one hooked forward at a time, so
        # a hook never records another thread's image.
        self._lock = threading.Lock()
        self._head = (None if published.head is None
                      else load_class_head(published.config, len(published.class_names), published.head))
        self.methods = (HEAD, KNN) if self._head is not None else (KNN,)
        self._describe = {HEAD: f"fine-tuned class head, softmax over {len(published.class_names)} classes",
                          KNN: f"kNN vote over {len(self._labelled):,} labelled training embeddings (k={self._k})"}
        self.method = self._describe[self.methods[0]]

    def classify(self, image: Image.Image, method: str | None = None) -> Prediction:
        """Top-5 by `method` (one of `self.methods`; default the first: the class head when there is one).
        ImageError for a blank image: any model answers one confidently, and the answer means nothing."""
        method = method or self.methods[0]
        if method not in self.methods:
            raise ValueError(f"this model cannot classify by {method!r}: it offers {', '.join(self.methods)}")
        if is_blank(image):
            raise ImageError(BLANK_MESSAGE)
        size = self.published.config.model.image_size
        pixels = preprocess(image, size, self.published.channels, self.published.framing)  # uint8 (C, S, S)
        with self._lock, _one_torch_thread(), torch.inference_mode():
            embedding, attention = self._forward(pixels)
            similarity = self._train @ F.normalize(embedding, dim=0)  # (N,)
            scores = (self._head.class_logits(embedding[None]).softmax(dim=1) if method == HEAD
                      else self._vote(similarity))  # (1, n_classes), sums to 1
            top = self._top(scores[0])
            return Prediction(top=top, neighbours=self._neighbours(similarity),
                              model_input=_as_numpy_image(pixels),
                              attention=_attention_map(attention, self._backbone.n_prefix, size),
                              method=self._describe[method],
                              typicality=self.typicality(float(similarity.max()), self._nearest_pixels(pixels)),
                              votes=self._counts(similarity) if method == KNN else [], k=self._k)

    def typicality(self, nearest: float, nearest_pixels: float = 1.0) -> float:
        """The share of training images whose own nearest neighbour is less similar than an image's nearest
        training image is to it (`nearest` in the embedding, `nearest_pixels` in pixels), the lower of the two
        shares, doubled: each of the two is read at UNLIKE_SHARE / 2."""
        shares = [int(torch.searchsorted(own, torch.tensor(value))) / len(own)
                  for own, value in zip(self._own_nearest, (nearest, nearest_pixels))]
        return min(1.0, 2 * min(shares))

    def _nearest_pixels(self, pixels: torch.Tensor) -> float:
        return float((self._pixels @ _pixel_features(pixels[None])[0]).max())

    def neighbours_of(self, index: int) -> list[tuple[int, str, float]]:
        """The training images nearest training image `index` in embedding space, itself left out."""
        if not 0 <= index < len(self._labels):
            raise IndexError(f"training image {index} out of range [0, {len(self._labels)})")
        similarity = self._train @ self._train[index]
        similarity[index] = -math.inf
        return self._neighbours(similarity)

    def thumbnail(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self._labels):
            raise IndexError(f"training image {index} out of range [0, {len(self._labels)})")
        return _as_numpy_image(self.published.train_images[index])

    def _forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (C, S, S) -> embedding (D,) and the last layer's attention (1, heads, n, n)."""
        with self._backbone.last_attention() as captured:
            embedding = self._backbone(to_model_input(pixels[None]))[0]
        return embedding, captured[0]

    def _vote(self, similarity: torch.Tensor) -> torch.Tensor:
        """The kNN votes of core.metrics (the monitor's own rule), normalised to sum to 1: (1, n_classes)."""
        votes = knn_votes(similarity[None, self._labelled], self._labels[self._labelled],
                          len(self.published.class_names), self._k, self.published.config.knn_temperature)
        return votes / votes.sum()

    def _top(self, probability: torch.Tensor) -> list[tuple[str, float]]:
        names = self.published.class_names
        values, classes = probability.topk(min(TOP_K, len(names)))
        return [(names[c], p) for c, p in zip(classes.tolist(), values.tolist())]

    def _counts(self, similarity: torch.Tensor) -> list[tuple[str, int]]:
        """How many of the k nearest training images each class has, most first."""
        nearest = self._labels[self._labelled][similarity[self._labelled].topk(self._k).indices]
        counts = nearest.bincount(minlength=len(self.published.class_names))
        order = counts.argsort(descending=True)
        return [(self.published.class_names[c], int(counts[c])) for c in order.tolist() if counts[c] > 0]

    def _neighbours(self, similarity: torch.Tensor) -> list[tuple[int, str, float]]:
        nearest, index = similarity.topk(min(N_NEIGHBOURS, len(similarity)))
        names = self.published.class_names
        return [(i, names[int(self._labels[i])], s) for i, s in zip(index.tolist(), nearest.tolist())]


def _nearest_other(unit: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Each row's cosine similarity to its nearest other row, (N, D) unit rows -> (N,), in chunks of
    rows so a large set never holds N×N at once."""
    nearest = torch.empty(len(unit))
    for start in range(0, len(unit), chunk):
        block = unit[start:start + chunk] @ unit.T  # (chunk, N)
        block[torch.arange(len(block)), torch.arange(start, start + len(block))] = -math.inf
        nearest[start:start + len(block)] = block.max(dim=1).values if unit.shape[0] > 1 else 1.0
    return nearest


def _pixel_features(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C * PIXEL_SIDE²) unit rows of mean-pooled, centred pixels."""
    pooled = F.adaptive_avg_pool2d(images.float(), min(PIXEL_SIDE, images.shape[-1])).flatten(1)
    return F.normalize(pooled - pooled.mean(dim=1, keepdim=True), dim=1)
