"""The model file: everything classification needs, and nothing of the training state, in one portable file.

A checkpoint resumes training and needs its dataset to classify (the kNN bank, the neighbours and the
"unlike the training images" flag are computed from the training images); a model file carries them. It
holds the backbone's and the class head's weights, the class names, the model's input recipe (side,
channels, framing; normalisation is the fixed map of core.data.augment.to_model_input), the kNN bank
(training embeddings, labels, which of them vote), small thumbnails of the training images for the
neighbours, their file names where the source had files, and the threshold of the "unlike" flag. The app's
live classifier is built from the very same record, so a loaded file answers exactly as the live app did.

Saved as a plain-data torch archive (loading never executes code) with a format key; `load` validates every
field and refuses a foreign or damaged file with one sentence.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.config import ModelConfig, TrainConfig, from_json, to_json
from core.data.framing import Framing
from core.data.images import fit_square
from core.data.labels import labelled_index
from core.data.splits import ImageSet
from core.model.backbone import embed
from core.trainer.checkpoint import Checkpoint, CheckpointError, read_archive, save_archive

FORMAT = "vit2040-model-v1"
THUMB_SIDE = 32  # thumbnails are at most this large: what a neighbour gallery shows, ~6 MB for 2,040 RGB images
# An image is "unlike the training images" when its nearest training image is less similar than this share of
# the training images are to their own nearest neighbour, in the embedding or in pixels (core/serve/classifier.py).
UNLIKE_SHARE = 0.01


class ModelFileError(ValueError):
    """A model file that cannot be used, with a message saying why."""


@dataclass(frozen=True, eq=False)  # eq=False: field-wise == on tensors is ambiguous
class ModelFile:
    model: ModelConfig  # the backbone's architecture; its image_size is the input side
    channels: int
    framing: Framing  # how the training images frame their object: an image to classify is framed alike
    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] | None  # the class head's Linear {"weight": (C, D), "bias": (C,)}, if any
    class_names: tuple[str, ...]
    embeddings: torch.Tensor  # float32 (N, D): the training images' embeddings, the kNN bank and the neighbours
    labels: torch.Tensor  # int64 (N,)
    labelled: torch.Tensor  # int64 (M,): the rows whose labels vote (a run that saw few labels a class)
    knn_k: int
    knn_temperature: float
    thumbnails: torch.Tensor  # uint8 (N, C, t, t), t = min(side, THUMB_SIDE)
    names: tuple[str, ...]  # each training image's file relative to its dataset folder, or () without files
    epoch: int
    trained_with: TrainConfig  # how it was trained: what a person reads, never what classifying reads
    unlike_share: float = UNLIKE_SHARE

    def __post_init__(self) -> None:
        n, problems = len(self.labels), []
        if self.channels not in (1, 3):
            problems.append(f"channels {self.channels} (1 or 3)")
        if n == 0 or len(self.embeddings) != n or len(self.thumbnails) != n or (self.names and len(self.names) != n):
            problems.append(f"a bank of {n} labels but {len(self.embeddings)} embeddings and "
                            f"{len(self.thumbnails)} thumbnails")
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            problems.append(f"labels outside its {len(self.class_names)} classes")
        if len(self.labelled) == 0 or (n and int(self.labelled.max()) >= n):
            problems.append("no labelled rows in its bank")
        if self.thumbnails.dtype != torch.uint8 or self.thumbnails.dim() != 4 or \
                self.thumbnails.shape[1] != self.channels:
            problems.append("thumbnails that are not uint8 (N, C, t, t)")
        if self.head is not None and tuple(self.head["weight"].shape) != (len(self.class_names), self.model.dim):
            problems.append("a class head of another shape than its classes and embedding")
        if problems:
            raise ModelFileError(f"a model file with {'; '.join(problems)}")

    @property
    def side(self) -> int:
        return self.model.image_size

    # -- made from training ------------------------------------------------------------------
    @classmethod
    def build(cls, config: TrainConfig, train: ImageSet, backbone: dict[str, torch.Tensor],
              embeddings: torch.Tensor, epoch: int, head: dict[str, torch.Tensor] | None = None) -> ModelFile:
        """The model of `config`'s weights over its training set `train` (embedded as `embeddings`, (N, D));
        `head`: the supervised objective's state ("head.weight", "head.bias"), when it has one."""
        side = config.model.image_size
        linear = None if head is None else {"weight": head["head.weight"].cpu(), "bias": head["head.bias"].cpu()}
        return cls(model=config.model, channels=train.channels, framing=train.framing,
                   backbone={k: v.detach().cpu() for k, v in backbone.items()}, head=linear,
                   class_names=train.class_names, embeddings=embeddings.float().cpu(), labels=train.labels.cpu(),
                   labelled=labelled_index(train.labels, config.labels_per_class, config.seed),
                   knn_k=config.knn_k, knn_temperature=config.knn_temperature,
                   thumbnails=fit_square(train.resized(side), min(side, THUMB_SIDE)).cpu(), names=train.names,
                   epoch=epoch, trained_with=config)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, train: ImageSet) -> ModelFile:
        """A checkpoint's model over its training set (one batched forward pass embeds the set); the caller has
        checked that `train` is the data it was trained on (Checkpoint.check_matches)."""
        backbone = checkpoint.build_backbone()
        embeddings = embed(backbone, train.resized(checkpoint.config.model.image_size))
        return cls.build(checkpoint.config, train, checkpoint.backbone, embeddings, checkpoint.epoch,
                         checkpoint.objective if checkpoint.predicts_classes else None)

    # -- on disk -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        payload = {"format": FORMAT, "model": dataclasses.asdict(self.model),
                   "framing": dataclasses.asdict(self.framing), "trained_with": to_json(self.trained_with),
                   "class_names": list(self.class_names), "names": list(self.names)}
        payload.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in payload})
        return save_archive(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> ModelFile:
        """Read and validate a model file; ModelFileError says, in one sentence, why it cannot be used."""
        path = Path(path)
        try:
            payload = read_archive(path, "model file")
        except CheckpointError as exc:
            raise ModelFileError(str(exc)) from None
        return cls._parse(path, payload)

    @classmethod
    def _parse(cls, path: Path, payload: Any) -> ModelFile:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            kind = "a training checkpoint" if isinstance(payload, dict) and "data_fingerprint" in payload else "not one"
            raise ModelFileError(f"{path.name} is not a vit2040 model file ({kind}; python -m core.export makes "
                                 "one from a run or a checkpoint)")
        try:
            return cls._from_payload(payload)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            detail = exc.args[0] if exc.args else exc.__class__.__name__
            raise ModelFileError(f"{path.name} is a damaged vit2040 model file ({detail})") from None

    @classmethod
    def _from_payload(cls, payload: dict[str, Any]) -> ModelFile:
        fields = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(fields - set(payload) - {"unlike_share"})
        if missing:
            raise KeyError(f"it lacks {', '.join(missing)}")
        values = {name: payload[name] for name in fields if name in payload}
        for name in ("backbone", "embeddings", "labels", "labelled", "thumbnails"):
            _check_tensors(name, values[name])
        if values["head"] is not None:
            _check_tensors("head", values["head"])
        values.update(model=ModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                                           for k, v in payload["model"].items()}),
                      framing=Framing(**payload["framing"]), trained_with=from_json(payload["trained_with"]),
                      class_names=tuple(str(n) for n in payload["class_names"]),
                      names=tuple(str(n) for n in payload["names"]))
        return cls(**values)


def _check_tensors(name: str, value: Any) -> None:
    ok = isinstance(value, torch.Tensor) or (isinstance(value, dict) and value and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()))
    if not ok:
        raise TypeError(f"its {name} is not tensors")


def read(path: str | Path) -> ModelFile | Checkpoint:
    """A model file, or a training checkpoint (which needs its dataset to classify), told apart by its format;
    ModelFileError or CheckpointError (both ValueErrors) says why it is neither."""
    path = Path(path)
    payload = read_archive(path, "model file or checkpoint")
    if isinstance(payload, dict) and payload.get("format") != FORMAT and "data_fingerprint" in payload:
        return Checkpoint.load(path)
    return ModelFile._parse(path, payload)


def describe(model: ModelFile) -> str:
    """'garments · instance → supervised, epoch 12, 5 classes, 64 px': which model answers, in a few words."""
    config = model.trained_with
    dataset = config.dataset.removeprefix("folder:").rstrip("/").rsplit("/", 1)[-1]
    return (f"{dataset} · {config.objective}, epoch {model.epoch}, {len(model.class_names)} classes, "
            f"{model.side} px")

