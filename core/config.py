"""Frozen run configuration, its validation, its JSON round trip, and the named model sizes.

A config is never mutated: overrides go through `dataclasses.replace` (or `with_overrides`),
which re-runs validation. Every checkpoint stores `to_json(config)`.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

DEVICES = ("auto", "cpu", "cuda", "mps")
POOLS = ("cls", "mean")
ATTENTIONS = ("sdpa", "explicit")
ARCHS = ("vit", "resnet18")
RESNET18_DIM = 512  # ResNet-18's pooled features: the embedding a resnet18 backbone gives
BALANCE_MODES = ("auto", "on", "off")
PRETRAIN_ON = ("all", "labelled")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_range(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    a, b = pair
    _check(low <= a <= b <= high, f"{name} must satisfy {low} <= min <= max <= {high}, got {pair}")


@dataclass(frozen=True)
class ModelConfig:
    """vit-pytorch ViT backbone. `image_size` is the resolution the position embedding is built for.

    `arch="resnet18"` is core.compare's reference CNN (core/cnn.py) instead: it reads `image_size`
    and `dim` (which must be ResNet-18's 512) and ignores the ViT's other fields."""

    arch: str = "vit"
    image_size: int = 28
    patch_size: int = 7
    dim: int = 128
    depth: int = 4
    heads: int = 4
    dim_head: int = 32
    mlp_dim: int = 256
    pool: str = "cls"
    dropout: float = 0.0
    # vit-pytorch normalises each flattened patch before embedding it, which erases the patch's mean
    # brightness (a flat white and a flat black patch become identical). DeiT, the paper's model,
    # has no such norm, so it is off unless asked for.
    patch_norm: bool = False
    # How attention is computed; the parameters are the same, so a checkpoint loads in either mode.
    # "sdpa": torch's fused scaled_dot_product_attention; "explicit": vit-pytorch's own softmax(QK^T)V,
    # which materialises the attention weights (classification shows them).
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        _check(self.image_size > 0 and self.patch_size > 0, "image_size and patch_size must be positive")
        _check(self.image_size % self.patch_size == 0,
               f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for name in ("dim", "depth", "heads", "dim_head", "mlp_dim"):
            _check(getattr(self, name) > 0, f"model.{name} must be positive")
        _check(self.pool in POOLS, f"model.pool must be one of {POOLS}, got {self.pool!r}")
        _check(0.0 <= self.dropout < 1.0, "model.dropout must be in [0, 1)")
        _check(self.arch in ARCHS, f"model.arch must be one of {ARCHS}, got {self.arch!r}")
        _check(self.arch != "resnet18" or self.dim == RESNET18_DIM,
               f"a resnet18 backbone embeds in {RESNET18_DIM} dimensions: set model.dim to {RESNET18_DIM}")
        _check(self.attention in ATTENTIONS,
               f"model.attention must be one of {ATTENTIONS}, got {self.attention!r}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


# The named model sizes, defined once: the defaults above are cpu-quick's 0.8 M-parameter ViT for 28 px data on
# a CPU; DeiT-Tiny is the paper's (../shared/PAPER.md). A recipe takes one and sets its side and patch.
MODEL_SIZES = {
    "cpu": ModelConfig(),
    "deit-tiny": ModelConfig(image_size=112, patch_size=16, dim=192, depth=12, heads=3, dim_head=64, mlp_dim=768),
}


@dataclass(frozen=True)
class AugmentConfig:
    """Batched view generation. Jitter strengths follow torchvision's ColorJitter convention."""

    n_global: int = 2
    global_size: int = 28
    global_scale: tuple[float, float] = (0.14, 1.0)
    n_local: int = 4
    local_size: int = 28
    local_scale: tuple[float, float] = (0.05, 0.4)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    cutmix_alpha: float = 0.5  # 0 disables CutMix
    mixup_alpha: float = 0.0  # 0 disables Mixup; with CutMix also on, they alternate by epoch

    def __post_init__(self) -> None:
        _check(self.n_global >= 1, "augment.n_global must be at least 1")
        _check(self.n_local >= 0, "augment.n_local must be >= 0")
        _check(self.global_size > 0 and self.local_size > 0, "crop sizes must be positive")
        _check_range("augment.global_scale", self.global_scale, 1e-3, 1.0)
        _check_range("augment.local_scale", self.local_scale, 1e-3, 1.0)
        _check_range("augment.blur_sigma", self.blur_sigma, 1e-3, 100.0)
        for name in ("flip_p", "jitter_p", "gray_p", "blur_p"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"augment.{name} must be a probability")
        b, c, s, h = self.jitter
        _check(min(b, c, s) >= 0 and 0 <= h <= 0.5, f"augment.jitter out of range: {self.jitter}")
        _check(self.cutmix_alpha >= 0 and self.mixup_alpha >= 0,
               "augment.cutmix_alpha and augment.mixup_alpha must be >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """One training run: data, model, views, objective and optimisation."""

    dataset: str = "fashion"
    data_size: int = 0  # side images are stored at; 0 = the source's default (28 fixed, 64 variable)
    objective: str = "instance"
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 30
    # A time budget: > 0 makes the run time its first steps and then fix `epochs` so that it ends in
    # this many minutes (core/budget.py); the fixed config (minutes 0, those epochs) is what its
    # checkpoints hold. 0: `epochs` decides.
    minutes: float = 0.0
    batch_size: int = 256
    lr: float = 5e-4
    min_lr: float = 1e-6
    weight_decay: float = 1e-3
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    # Supervised runs weigh classes by inverse frequency: "auto" when the largest class holds more
    # than 1.5x the smallest's images, "on", or "off" (core.objectives.class_weights).
    balance_classes: str = "auto"
    contrastive_temperature: float = 0.2  # NT-Xent's softmax temperature
    projection_dim: int = 128  # contrastive projection head's output (0 = none: the loss sees the embedding)
    init_from: str = ""  # a pretrained checkpoint whose backbone starts this run (stage 2: fine-tuning)
    # Only this many training images per class keep their label (0: all; core/labels.py draws them with
    # the seed, nested across values): a supervised run trains on them, and every kNN votes with them.
    labels_per_class: int = 0
    # The images a label-free objective trains on when labels are few: "all" training images, or only
    # the "labelled" ones (the paper's situation: the same few images for both stages).
    pretrain_on: str = "all"
    # A pretraining run ends early (reason HANDED_OVER) when its kNN on held-out training images stops
    # helping, and keeps its best backbone there (core/handover.py), so a pipeline gives the rest of its
    # minutes to the next stage. A run that trains on the labels is judged by its class head: not read.
    stop_when_not_helping: bool = False
    seed: int = 0
    knn_k: int = 20
    knn_temperature: float = 0.07
    eval_every: int = 1  # epochs between kNN evaluations (0 = only at the end)
    snapshot_every: int = 1  # epochs between embedding snapshots (0 = never)
    checkpoint_every: int = 5  # epochs between checkpoints (the last epoch always saves)
    # Steps between reading the loss back to the host: each read waits for the device, so a GPU
    # run reads in windows (0 = auto: every step on the CPU, every 16 on an accelerator).
    sync_every: int = 0
    compile: bool = False  # torch.compile the training step (worth it on a GPU for long runs)
    device: str = "auto"

    def __post_init__(self) -> None:
        _check(bool(self.dataset), "dataset must be named")
        _check(self.data_size >= 0, "data_size must be >= 0")
        _check(self.epochs >= 1, "epochs must be at least 1")
        _check(self.minutes >= 0, "minutes must be >= 0 (0: the epochs decide)")
        _check(self.batch_size >= 2, "batch_size must be at least 2")
        _check(self.lr > 0 and 0 <= self.min_lr <= self.lr, "need lr > 0 and 0 <= min_lr <= lr")
        _check(self.weight_decay >= 0, "weight_decay must be >= 0")
        _check(0 <= self.warmup_epochs <= self.epochs, "warmup_epochs must be within [0, epochs]")
        _check(0.0 <= self.label_smoothing < 1.0, "label_smoothing must be in [0, 1)")
        _check(self.balance_classes in BALANCE_MODES,
               f"balance_classes must be one of {BALANCE_MODES}, got {self.balance_classes!r}")
        _check(self.labels_per_class >= 0, "labels_per_class must be >= 0 (0: every label)")
        _check(self.pretrain_on in PRETRAIN_ON, f"pretrain_on must be one of {PRETRAIN_ON}, got {self.pretrain_on!r}")
        _check(self.contrastive_temperature > 0 and self.projection_dim >= 0,
               "need contrastive_temperature > 0 and projection_dim >= 0")
        _check(self.knn_k >= 1 and self.knn_temperature > 0, "knn_k >= 1 and knn_temperature > 0")
        for name in ("eval_every", "snapshot_every", "checkpoint_every", "sync_every"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0")
        _check(self.device in DEVICES, f"device must be one of {DEVICES}, got {self.device!r}")
        for size in (self.augment.global_size, self.augment.local_size):
            _check(size % self.model.patch_size == 0,
                   f"crop size {size} is not a multiple of patch_size {self.model.patch_size}")

    def with_overrides(self, **changes: Any) -> TrainConfig:
        """A new validated config; keys `model` and `augment` take dicts of their own fields."""
        for key in ("model", "augment"):
            if isinstance(changes.get(key), dict):
                changes[key] = dataclasses.replace(getattr(self, key), **changes[key])
        return dataclasses.replace(self, **changes)


def to_json(config: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(config), sort_keys=True)


def from_json(text: str) -> TrainConfig:
    raw = json.loads(text)
    augment = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.pop("augment").items()}
    return TrainConfig(model=ModelConfig(**raw.pop("model")), augment=AugmentConfig(**augment), **raw)
