"""Classify one uploaded image with a published copy of the backbone.

Training publishes a `PublishedModel` (weights, training-set embeddings and images, all copied at
one moment); a `Classifier` built from it never touches the live model, so predictions stay
consistent while training keeps changing its own weights.
"""
from __future__ import annotations

import dataclasses
import io
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from core.augment import to_model_input
from core.config import TrainConfig
from core.data import WIDE_GRAY_MODES, _flatten_alpha
from core.model import Backbone

TOP_K = 5
N_NEIGHBOURS = 8
HEAD, KNN = "class head", "kNN vote"  # classification methods, the preferred first
WORK_SIDE = 512  # light-on-dark uploads are analysed at most this large: a 28 px model needs no more
MIN_CONTRAST = 16  # below this the "object" is noise: no cropping or stretching
OBJECT_FRACTION = 0.1  # a pixel brighter than this share of the peak (above background) is object
OBJECT_THRESHOLD = 32  # a training pixel above this is object (white-on-black images)


class ImageError(ValueError):
    """An upload that cannot be classified; the message says why."""


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
    light_on_dark: bool  # white object on black: uploads are inverted when their background is light
    head: dict[str, torch.Tensor] | None = None  # a fine-tuned run's class head ("head.weight", "head.bias")

    def __post_init__(self) -> None:
        n = len(self.train_labels)
        if self.train_images.dim() != 4 or self.train_images.shape[1] != self.channels:
            raise ValueError(f"train_images must be (N, {self.channels}, H, W), got {tuple(self.train_images.shape)}")
        if n == 0 or len(self.train_images) != n or len(self.train_embeddings) != n:
            raise ValueError(f"need as many (> 0) train images, labels and embeddings, got "
                             f"{len(self.train_images)}, {n}, {len(self.train_embeddings)}")
        if self.train_labels.min() < 0 or self.train_labels.max() >= len(self.class_names):
            raise ValueError(f"train_labels must lie in [0, {len(self.class_names)})")


@dataclass(frozen=True, eq=False)
class Prediction:
    """One classified upload, in plain Python and numpy for any front end."""

    top: list[tuple[str, float]]  # top-5 (class name, probability: class-head softmax or normalised kNN votes)
    neighbours: list[tuple[int, str, float]]  # 8 nearest training images: (index, class name, cosine)
    model_input: np.ndarray  # uint8 H×W (gray) or H×W×3: what the model saw
    attention: np.ndarray  # float32 H×W in [0, 1]: last layer's CLS attention to the patches, head mean
    method: str


def load_upload(source: str | Path | bytes | Image.Image, max_pixels: int = 40_000_000) -> Image.Image:
    """Open an upload as an 'L' or 'RGB' image with its EXIF orientation applied.

    Image.open reads only the header, so the pixel count is checked before any pixel is decoded:
    a decompression bomb is refused before it can allocate memory.
    """
    image = source if isinstance(source, Image.Image) else _open(source)
    try:
        width, height = image.size
        if width * height == 0:
            raise ImageError("the image has no pixels")
        if width * height > max_pixels:
            raise ImageError(f"the image is {width}×{height} = {width * height:,} pixels, over the limit "
                             f"of {max_pixels:,} (decompression-bomb guard); scale it down and retry")
        try:
            upright = ImageOps.exif_transpose(image)  # decodes the pixels; always a new image
        # Pillow's decoders raise many exception types on malformed data (OSError on truncation,
        # SyntaxError, ValueError, struct.error...); to the user they all mean the same thing.
        except Exception as exc:  # noqa: BLE001
            raise ImageError(f"the image data is corrupt or truncated ({exc})") from exc
    finally:
        if image is not source:
            image.close()
    return _normalise_mode(upright)


def _open(source: str | Path | bytes) -> Image.Image:
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("the upload is empty (0 bytes)")
        stream, name = io.BytesIO(source), "the upload"
    else:
        stream = Path(source)
        name = stream.name  # only the file's name: in the app the rest is a server temp path
        if not stream.is_file():
            raise ImageError(f"{name} is not a readable file")
        if stream.stat().st_size == 0:
            raise ImageError(f"{name} is empty (0 bytes)")
    try:
        return Image.open(stream)
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name} is far too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} is not an image format Pillow can read") from exc
    except OSError as exc:
        raise ImageError(f"cannot read {name}: {exc}") from exc


def _normalise_mode(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L' or 'RGB'; transparency is composited on white, as for training folders."""
    if image.mode in ("L", "RGB"):
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode in WIDE_GRAY_MODES:
        # 16-bit data (0..65535) is rescaled rather than clipped to white; mode I/F carries no bit
        # depth, so values above 255 are taken to be 16-bit too (as core.data does).
        wide = np.nan_to_num(np.asarray(image, dtype=np.float64))
        if image.mode.startswith("I;16") or wide.max() > 255:
            wide = wide / 257.0
        return Image.fromarray(np.clip(np.rint(wide), 0, 255).astype(np.uint8))
    try:
        return _flatten_alpha(image)
    except (ValueError, OSError) as exc:
        raise ImageError(f"unsupported image mode {image.mode}") from exc


@dataclass(frozen=True)
class Framing:
    """Where white-on-black training images put their object; uploads are framed the same way."""

    fill: float = 1.0  # share of the frame the object's longer side spans
    by_mass: bool = False  # centred on its centre of mass (MNIST) rather than its bounding box


def preprocess(image: Image.Image, size: int, channels: int, light_on_dark: bool, *,
               framing: Framing = Framing()) -> torch.Tensor:
    """An image -> uint8 (channels, size, size), framed the way the training images were.

    light_on_dark (Fashion-MNIST, MNIST): grayscale, cropped to the object, fitted with its aspect
    ratio kept, turned white-on-black and stretched to 0..255. Otherwise the shorter side is resized
    to `size` and the centre cropped, as core.data loads photos.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = _normalise_mode(image)
    if light_on_dark:
        square = _light_on_dark_square(image.convert("L"), size, framing)
    else:
        square = _centre_square(image, size)
    pixels = torch.from_numpy(np.array(square.convert("L" if channels == 1 else "RGB")))  # (S, S) or (S, S, 3)
    return pixels[None] if channels == 1 else pixels.permute(2, 0, 1).contiguous()


def _centre_square(image: Image.Image, size: int) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    # reducing_gap: a fast integer reduction first, with results Pillow documents as indistinguishable.
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side),
                        reducing_gap=3.0)


def _light_on_dark_square(gray: Image.Image, size: int, framing: Framing) -> Image.Image:
    gray = _shrink(gray, max(WORK_SIDE, 4 * size))
    pixels = np.asarray(gray, dtype=np.float32)  # (H, W)
    ring = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = float(np.median(ring))
    if background > 127:  # dark on light (product shot, pen on paper): flip to the datasets' polarity
        pixels, background = 255.0 - pixels, 255.0 - background
    framed = _frame(_crop_to_object(pixels, background), size, framing, background)  # (S, S)
    return Image.fromarray(_stretch(framed, background))


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    """Box-downscale so the longer side is at most max_side: later steps then cost the same for any upload."""
    width, height = image.size
    scale = max_side / max(width, height)
    if scale >= 1:
        return image
    return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BOX)


def _crop_to_object(pixels: np.ndarray, background: float) -> np.ndarray:
    """The bounding box of what stands out above the background (the datasets' objects are trimmed)."""
    above = pixels - background
    peak = float(above.max())
    if peak < MIN_CONTRAST:
        return pixels
    mask = above > peak * OBJECT_FRACTION
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return pixels[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _frame(pixels: np.ndarray, size: int, framing: Framing, background: float) -> np.ndarray:
    """Fit (h, w) so its longer side spans size*fill, on a background canvas: float32 (size, size)."""
    height, width = pixels.shape
    scale = max(1, round(size * framing.fill)) / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    # Float mode "F" keeps sub-level precision until the contrast stretch; a box filter shrinks
    # without ringing, bilinear enlarges without blocks.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    resized = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), resample))
    top, left = _placement(resized - background, size, framing.by_mass)
    canvas = np.full((size, size), background, dtype=np.float32)
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas


def _placement(above: np.ndarray, size: int, by_mass: bool) -> tuple[int, int]:
    """Top-left corner for an (h, w) object in the frame: box-centred, or mass-centred but kept inside."""
    height, width = above.shape
    weight = np.clip(above, 0, None)
    total = float(weight.sum())
    if not by_mass or total <= 0:
        # An odd leftover puts the extra pixel above/left of the object, as Fashion-MNIST does.
        return (size - height + 1) // 2, (size - width + 1) // 2
    # Pixel-index centre of mass to index size/2: MNIST puts it at (14, 14) in a 28 px frame.
    mass_y = float(weight.sum(axis=1) @ np.arange(height)) / total
    mass_x = float(weight.sum(axis=0) @ np.arange(width)) / total
    top = min(max(round(size / 2 - mass_y), 0), size - height)
    left = min(max(round(size / 2 - mass_x), 0), size - width)
    return top, left


def _stretch(pixels: np.ndarray, background: float) -> np.ndarray:
    """Background -> 0 and the brightest object pixel -> 255, as in Fashion-MNIST and MNIST."""
    peak = float(pixels.max())
    if peak - background >= MIN_CONTRAST:
        pixels = (pixels - background) * (255.0 / (peak - background))
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def framing_of(images: torch.Tensor) -> Framing:
    """Measure how white-on-black uint8 (N, C, H, W) training images frame their object.

    Fashion-MNIST's objects fill the frame, centred by extent; MNIST's digits sit in a 20 px box,
    centred on their mass. Measuring covers both (and user data) without naming datasets.
    """
    weight = images.amax(dim=1).float()  # (N, H, W)
    mask = weight > OBJECT_THRESHOLD
    keep = mask.flatten(1).any(dim=1)
    if not keep.any():
        return Framing()
    weight, mask = weight[keep], mask[keep]
    index = torch.arange(images.shape[-1], dtype=torch.float32)
    extents, box_spread, mass_spread = [], 0.0, 0.0
    for across in (2, 1):  # reduce across columns -> per-row profiles (n, H), then across rows (n, W)
        first, last = _bounds(mask.any(dim=across))
        profile = weight.sum(dim=across)
        extents.append(last - first + 1)
        # Whichever centre the dataset aligned stays (nearly) put from image to image.
        box_spread += float(((first + last) / 2).std())
        mass_spread += float((profile @ index / profile.sum(dim=1)).std())
    fill = float((torch.maximum(*extents) / images.shape[-1]).median())
    return Framing(fill=fill, by_mass=mass_spread < box_spread)


def _bounds(present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, L) bool -> first and last True index per row, (N,) float each."""
    index = torch.arange(present.shape[1])
    first = torch.where(present, index, present.shape[1]).amin(dim=1)
    last = torch.where(present, index, -1).amax(dim=1)
    return first.float(), last.float()


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
        self._framing = framing_of(published.train_images) if published.light_on_dark else Framing()
        self._k = min(published.config.knn_k, len(self._labels))
        # The attention hook sits on a module every call shares: one hooked forward at a time, so
        # a hook never records another thread's image.
        self._lock = threading.Lock()
        self._head = None
        if published.head is not None:
            self._head = torch.nn.Linear(self._backbone.dim, len(published.class_names))
            self._head.load_state_dict({"weight": published.head["head.weight"], "bias": published.head["head.bias"]})
            self._head.eval().requires_grad_(False)
        self.methods = (HEAD, KNN) if self._head is not None else (KNN,)
        self._describe = {HEAD: f"fine-tuned class head, softmax over {len(published.class_names)} classes",
                          KNN: f"kNN vote over {len(self._labels):,} training embeddings (k={self._k})"}
        self.method = self._describe[self.methods[0]]

    def classify(self, image: Image.Image, method: str | None = None) -> Prediction:
        """Top-5 by `method` (one of `self.methods`; default the first: the class head when there is one)."""
        method = method or self.methods[0]
        if method not in self.methods:
            raise ValueError(f"this model cannot classify by {method!r}: it offers {', '.join(self.methods)}")
        size = self.published.config.model.image_size
        pixels = preprocess(image, size, self.published.channels, self.published.light_on_dark,
                            framing=self._framing)  # uint8 (C, S, S)
        with self._lock, _one_torch_thread(), torch.inference_mode():
            embedding, attention = self._forward(pixels)
            similarity = self._train @ F.normalize(embedding, dim=0)  # (N,)
            top = self._head_top(embedding) if method == HEAD else self._vote(similarity)
            return Prediction(top=top, neighbours=self._neighbours(similarity),
                              model_input=_as_numpy_image(pixels),
                              attention=_attention_map(attention, self._backbone.n_prefix, size),
                              method=self._describe[method])

    def thumbnail(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self._labels):
            raise IndexError(f"training image {index} out of range [0, {len(self._labels)})")
        return _as_numpy_image(self.published.train_images[index])

    def _forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (C, S, S) -> embedding (D,) and the last layer's attention (1, heads, n, n)."""
        captured = []
        attend = self._backbone.vit.transformer.layers[-1][0].attend
        handle = attend.register_forward_hook(lambda _module, _args, output: captured.append(output))
        try:
            embedding = self._backbone(to_model_input(pixels[None]))[0]
        finally:
            handle.remove()
        return embedding, captured[0]

    def _vote(self, similarity: torch.Tensor) -> list[tuple[str, float]]:
        """Votes exp(sim / T) from the k nearest, as core.evaluate.knn_predict, normalised to sum to 1."""
        names = self.published.class_names
        nearest, index = similarity.topk(self._k)
        # Shifting by the largest similarity keeps exp() finite and cancels in the normalisation.
        weights = ((nearest - nearest[0]) / self.published.config.knn_temperature).exp()
        votes = torch.zeros(len(names)).scatter_add_(0, self._labels[index], weights)
        probability, classes = (votes / votes.sum()).topk(min(TOP_K, len(names)))
        return [(names[c], p) for c, p in zip(classes.tolist(), probability.tolist())]

    def _head_top(self, embedding: torch.Tensor) -> list[tuple[str, float]]:
        names = self.published.class_names
        probability, classes = self._head(embedding).softmax(dim=0).topk(min(TOP_K, len(names)))
        return [(names[c], p) for c, p in zip(classes.tolist(), probability.tolist())]

    def _neighbours(self, similarity: torch.Tensor) -> list[tuple[int, str, float]]:
        nearest, index = similarity.topk(min(N_NEIGHBOURS, len(similarity)))
        names = self.published.class_names
        return [(i, names[int(self._labels[i])], s) for i, s in zip(index.tolist(), nearest.tolist())]
