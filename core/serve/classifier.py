"""Classify images with a published model (core/serve/model_file.py): the app's uploads one at a time with their
attention map and neighbours, and a command line's files in batches.

Training publishes a model file's record at one moment (weights, the training set's embeddings and
thumbnails); a `Classifier` built from it never touches the live model, so its answers stay consistent while
training changes its own weights, and a model file loaded later answers the same way. Turning an image into
model input is core.data.framing's job; the kNN vote is core.metrics'.
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

from core.data.augment import to_model_input
from core.data.framing import preprocess
from core.data.images import ImageError, fit_square, is_blank
from core.metrics import knn_votes
from core.model.backbone import Backbone, build_backbone
from core.serve.model_file import THUMB_SIDE, ModelFile

TOP_K = 5
N_NEIGHBOURS = 8
PIXEL_SIDE = 16  # pixels compared for the "unlike" flag: pooled to this side from the thumbnails' side
BLANK_MESSAGE = "the image is blank (one flat colour): there is nothing to classify"
HEAD, KNN = "class head", "kNN vote"  # classification methods, the preferred first
BATCH = 256  # images a batched forward pass embeds at once


@dataclass(frozen=True, eq=False)
class Answer:
    """One image classified: what a command line prints for it."""

    top: list[tuple[str, float]]  # (class name, probability), most probable first
    method: str  # HEAD or KNN
    typicality: float  # see Prediction
    unlike_share: float
    blank: bool  # one flat colour: any answer means nothing
    embedding: torch.Tensor  # (D,)

    @property
    def unlike_training(self) -> bool:
        return self.typicality < self.unlike_share


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
    unlike_share: float = 0.01

    @property
    def unlike_training(self) -> bool:
        return self.typicality < self.unlike_share


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
    """Classification against one ModelFile, by its class head (a fine-tuned or supervised run) or by a kNN
    vote over the training embeddings; immutable after __init__, shareable across threads."""

    def __init__(self, published: ModelFile):
        self.published = published
        vit = published.model.arch == "vit"
        # The attention map needs the softmax weights, which SDPA never materialises; the parameters are the
        # same in both modes, so the published weights load into the explicit one. Batches use SDPA.
        self._backbone = build_backbone(dataclasses.replace(published.model, attention="explicit") if vit
                                        else published.model, published.channels)
        self._backbone.load_state_dict(published.backbone)  # copies: later edits to the dict do not reach us
        self._backbone.eval().requires_grad_(False)
        self._fast: torch.nn.Module | None = None  # built on the first batch
        self._train = F.normalize(published.embeddings.float(), dim=1)  # (N, D), unit rows
        if self._train.shape[1] != self._backbone.dim:
            raise ValueError(f"embeddings have {self._train.shape[1]} dimensions, the model {self._backbone.dim}")
        self._labels, self._labelled = published.labels.clone(), published.labelled.clone()
        self._k = min(published.knn_k, len(self._labelled))
        # Each training image's similarity to its nearest other one, in the embedding and in pixels
        # (an instance-discrimination embedding maps a photo of anything near some garment; pixels less so).
        self._pixels = pixel_features(published.thumbnails)  # (N, C * PIXEL_SIDE²), unit rows
        self._own_nearest = (_nearest_other(self._train).sort().values, _nearest_other(self._pixels).sort().values)
        # The attention hook sits on a module every call shares: one hooked forward at a time, so a hook never
        # records another thread's image.
        self._lock = threading.Lock()
        self._head = published.head
        self.methods = (HEAD, KNN) if self._head is not None else (KNN,)
        self._describe = {HEAD: f"fine-tuned class head, softmax over {len(published.class_names)} classes",
                          KNN: f"kNN vote over {len(self._labelled):,} labelled training embeddings (k={self._k})"}
        self.method = self._describe[self.methods[0]]

    # -- one upload, with its reasons (the app) ------------------------------------------------
    def classify(self, image: Image.Image, method: str | None = None) -> Prediction:
        """Top-5 by `method` (one of `self.methods`; default the first: the class head when there is one).
        ImageError for a blank image: any model answers one confidently, and the answer means nothing."""
        method = self.resolve_method(method)
        if is_blank(image):
            raise ImageError(BLANK_MESSAGE)
        pixels = self.model_input(image)  # uint8 (C, S, S)
        with self._lock, _one_torch_thread(), torch.inference_mode():
            embedding, attention = self._forward(pixels)
            similarity = self._train @ F.normalize(embedding, dim=0)  # (N,)
            scores = self._scores(similarity[None], embedding[None], method)  # (1, n_classes)
            return Prediction(top=self._top(scores[0], TOP_K), neighbours=self._neighbours(similarity),
                              model_input=_as_numpy_image(pixels),
                              attention=attention, method=self._describe[method],
                              typicality=float(self._typicality(similarity[None], pixels[None])[0]),
                              votes=self._counts(similarity) if method == KNN else [], k=self._k,
                              unlike_share=self.published.unlike_share)

    def model_input(self, image: Image.Image) -> torch.Tensor:
        """An image as the model sees it, framed as the training images were: uint8 (C, S, S)."""
        return preprocess(image, self.published.side, self.published.channels, self.published.framing)

    def _forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """uint8 (C, S, S) -> embedding (D,) and the last layer's attention map (S, S) (zeros for a CNN)."""
        side = self.published.side
        if not isinstance(self._backbone, Backbone):
            return self._backbone(to_model_input(pixels[None]))[0], np.zeros((side, side), dtype=np.float32)
        with self._backbone.last_attention() as captured:
            embedding = self._backbone(to_model_input(pixels[None]))[0]
        return embedding, _attention_map(captured[0], self._backbone.n_prefix, side)

    # -- many images (a command line) ----------------------------------------------------------
    def answers(self, pixels: torch.Tensor, blank: list[bool], method: str | None = None,
                top: int = TOP_K) -> list[Answer]:
        """Each image's top `top` classes by `method`, its flags and its embedding, embedded in batches.
        `pixels`: uint8 (B, C, S, S), as `model_input` makes them; `blank`: whether each image was one colour."""
        method = self.resolve_method(method)
        results = []
        for start in range(0, len(pixels), BATCH):
            chunk = pixels[start:start + BATCH]
            with torch.inference_mode():
                embeddings = self._fast_backbone()(to_model_input(chunk))  # (b, D)
                similarity = F.normalize(embeddings, dim=1) @ self._train.T  # (b, N)
                scores = self._scores(similarity, embeddings, method)
                typicality = self._typicality(similarity, chunk)
            results += [Answer(self._top(scores[i], top), method, float(typicality[i]), self.published.unlike_share,
                               blank[start + i], embeddings[i].clone()) for i in range(len(chunk))]
        return results

    def _fast_backbone(self) -> torch.nn.Module:
        if self._fast is None:
            fast = build_backbone(self.published.model, self.published.channels)
            fast.load_state_dict(self.published.backbone)
            self._fast = fast.eval().requires_grad_(False)
        return self._fast

    # -- shared by both --------------------------------------------------------------------------
    def resolve_method(self, method: str | None) -> str:
        """`method`, or the default (the class head when there is one); ValueError for one the model lacks."""
        method = method or self.methods[0]
        if method not in self.methods:
            raise ValueError(f"this model cannot classify by {method!r}: it offers {', '.join(self.methods)}")
        return method

    def _scores(self, similarity: torch.Tensor, embeddings: torch.Tensor, method: str) -> torch.Tensor:
        """(B, N) cosine similarities and (B, D) embeddings -> (B, n_classes) probabilities: the class head's
        softmax, or the kNN votes of core.metrics (the monitor's own rule) normalised to sum to 1."""
        if method == HEAD:
            return F.linear(embeddings.float(), self._head["weight"], self._head["bias"]).softmax(dim=1)
        votes = knn_votes(similarity[:, self._labelled], self._labels[self._labelled],
                          len(self.published.class_names), self._k, self.published.knn_temperature)
        return votes / votes.sum(dim=1, keepdim=True)

    def _typicality(self, similarity: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """(B,) the share of training images whose own nearest neighbour is less similar than each image's nearest
        training image is to it, in the embedding and in pixels, the lower of the two shares, doubled: each of
        the two is read at half the unlike share."""
        nearest_pixels = (pixel_features(pixels) @ self._pixels.T).max(dim=1).values
        shares = [torch.searchsorted(own, value.contiguous().float()).double() / len(own)
                  for own, value in zip(self._own_nearest, (similarity.max(dim=1).values, nearest_pixels))]
        return (2 * torch.minimum(*shares)).clamp(max=1.0)

    def typicality(self, nearest: float, nearest_pixels: float = 1.0) -> float:
        """The typicality of an image whose nearest training image is `nearest` (embedding) and `nearest_pixels`
        (pixels) similar to it (see _typicality)."""
        shares = [int(torch.searchsorted(own, torch.tensor(value))) / len(own)
                  for own, value in zip(self._own_nearest, (nearest, nearest_pixels))]
        return min(1.0, 2 * min(shares))

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
        return _as_numpy_image(self.published.thumbnails[index])

    def _top(self, probability: torch.Tensor, k: int) -> list[tuple[str, float]]:
        names = self.published.class_names
        values, classes = probability.topk(min(k, len(names)))
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


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, C * PIXEL_SIDE²) unit rows of centred pixels, pooled from the thumbnails' side
    (the training images' and an upload's alike: the model's side resized as the thumbnails were)."""
    thumbs = fit_square(images, min(images.shape[-1], THUMB_SIDE))
    pooled = F.adaptive_avg_pool2d(thumbs.float(), min(PIXEL_SIDE, thumbs.shape[-1])).flatten(1)
    return F.normalize(pooled - pooled.mean(dim=1, keepdim=True), dim=1)


def _nearest_other(unit: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Each row's cosine similarity to its nearest other row, (N, D) unit rows -> (N,), in chunks of
    rows so a large set never holds N×N at once."""
    nearest = torch.empty(len(unit))
    for start in range(0, len(unit), chunk):
        block = unit[start:start + chunk] @ unit.T  # (chunk, N)
        block[torch.arange(len(block)), torch.arange(start, start + len(block))] = -math.inf
        nearest[start:start + len(block)] = block.max(dim=1).values if unit.shape[0] > 1 else 1.0
    return nearest
