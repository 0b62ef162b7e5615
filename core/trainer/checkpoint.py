"""The checkpoint: one typed record, the only code that knows its keys on disk.

`Checkpoint.save` writes atomically; `Checkpoint.load` reads with `weights_only=True` (a plain dict of
tensors, numbers and strings, so loading never executes code; a pickled object is refused by torch's
safe unpickler) and validates every key: a missing, foreign or ill-typed one is a CheckpointError that
names it. The `check_*` methods refuse a checkpoint for other data or another run, with the reason.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from core.config import TrainConfig, from_json, to_json
from core.model.backbone import build_backbone
from core.objectives import Objective, load_class_head, objective_class

if TYPE_CHECKING:
    from core.data.sources import DataSplits

FORMAT = "vit2040-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a message saying why."""


@dataclass(frozen=True, eq=False)  # eq=False: field-wise == on tensors is ambiguous
class ResumeState:
    """What continuing a run needs beyond its weights: the optimizer, RNG streams and epoch order."""

    optimizer: dict[str, Any]
    generator: torch.Tensor  # the views' generator state (rank 0's)
    order_generator: torch.Tensor
    torch_rng: torch.Tensor
    epoch_order: torch.Tensor  # the sample order of epoch `order_epoch`; empty before the first epoch
    order_epoch: int
    handover: dict[str, Any] | None = None  # a hand-over run's figures and best backbone (HandOver.state)


@dataclass(frozen=True, eq=False)
class Checkpoint:
    config: TrainConfig
    backbone: dict[str, torch.Tensor]
    objective: dict[str, torch.Tensor]  # the objective's state (its head), e.g. "head.weight"
    step: int
    epoch: int
    data_fingerprint: str
    class_names: tuple[str, ...]
    channels: int
    # kNN of (raw pixels, random-init encoder), then their balanced accuracy (older checkpoints: a pair)
    baselines: tuple[float, ...] | None = None
    resume: ResumeState | None = None  # None: weights only, cannot be resumed

    # -- on disk -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write to `path` atomically (save_archive): a crash mid-write leaves the previous file untouched."""
        return save_archive(self._payload(), path)

    def _payload(self) -> dict[str, Any]:
        payload = {"format": FORMAT, "config": to_json(self.config), "backbone": self.backbone,
                   "objective": self.objective, "step": self.step, "epoch": self.epoch,
                   "data_fingerprint": self.data_fingerprint, "class_names": list(self.class_names),
                   "channels": self.channels, "baselines": list(self.baselines or ())}
        if self.resume is not None:
            payload.update(dataclasses.asdict(self.resume))
        return payload

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        """Read and validate a checkpoint; CheckpointError with the reason."""
        path = Path(path)
        payload = read_archive(path, "checkpoint", map_location)
        try:
            return cls._from_payload(payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: {exc.args[0] if exc.args else exc}") from exc

    @classmethod
    def _from_payload(cls, payload: Any) -> Checkpoint:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"not a vit2040 checkpoint (format {FORMAT} expected)")
        fields = [f.name for f in dataclasses.fields(cls) if f.name != "resume"]
        resume_fields = [f.name for f in dataclasses.fields(ResumeState)]
        needed = [f.name for f in dataclasses.fields(ResumeState) if f.default is dataclasses.MISSING]
        missing = [key for key in fields if key not in payload]
        if missing:
            raise ValueError(f"lacks {', '.join(missing)}")
        foreign = sorted(set(payload) - {"format", *fields, *resume_fields})
        if foreign:
            raise ValueError(f"holds keys no vit2040 checkpoint has: {', '.join(foreign)}")
        present = [key for key in needed if key in payload]
        if present and len(present) != len(needed):
            lacking = sorted(set(needed) - set(present))
            raise ValueError(f"has a partial resume state: lacks {', '.join(lacking)}")
        try:
            config = from_json(payload["config"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"holds an invalid config: {exc}") from exc
        record = cls(config=config, backbone=_tensors(payload, "backbone"), objective=_tensors(payload, "objective"),
                     step=_int(payload, "step"), epoch=_int(payload, "epoch"),
                     data_fingerprint=_typed(payload, "data_fingerprint", str),
                     class_names=tuple(_typed(payload, "class_names", list)), channels=_int(payload, "channels"),
                     baselines=_baselines(payload["baselines"]),
                     resume=ResumeState(**{key: payload[key] for key in resume_fields if key in payload})
                     if present else None)
        if record.channels not in (1, 3) or not all(isinstance(n, str) for n in record.class_names):
            raise ValueError("has invalid channels or class names")
        return record

    # -- checks ------------------------------------------------------------------------------
    def check_matches(self, data: DataSplits) -> None:
        """Refuse a checkpoint trained on other data than the data at hand."""
        if self.data_fingerprint != data.fingerprint:
            raise CheckpointError(f"checkpoint was trained on other data ({self.config.dataset!r}, fingerprint "
                                  f"{self.data_fingerprint}) than the dataset loaded now (fingerprint "
                                  f"{data.fingerprint}); load it with the dataset it was trained on")
        self._check_classes(data)

    def _check_classes(self, data: DataSplits) -> None:
        if self.class_names != tuple(data.class_names):
            raise CheckpointError("checkpoint's class names differ from the dataset's")

    def check_resumable(self, config: TrainConfig) -> None:
        """Resuming needs the same run: only its length (`epochs`, `minutes`) and bookkeeping may change."""
        free = {"epochs", "minutes", "eval_every", "snapshot_every", "checkpoint_every", "sync_every", "compile",
                "device"}
        differing = [f.name for f in dataclasses.fields(TrainConfig)
                     if f.name not in free and getattr(self.config, f.name) != getattr(config, f.name)]
        if differing:
            raise CheckpointError(f"checkpoint's config differs in {', '.join(differing)}; it cannot be resumed "
                                  "with this config")
        if self.resume is None:
            raise CheckpointError("checkpoint has no optimizer state (weights only); it cannot be resumed")

    def check_pretrained(self, config: TrainConfig, data: DataSplits) -> None:
        """Refuse a pretrained checkpoint that cannot start `config` (stage 2) on the data at hand."""
        saved = self.config
        if saved.dataset != config.dataset:
            raise CheckpointError(f"checkpoint was pretrained on {saved.dataset!r}, not on {config.dataset!r}")
        self._check_classes(data)
        # Stored at another size, the same images hash differently; at the same size they must match.
        if saved.data_size == config.data_size and self.data_fingerprint != data.fingerprint:
            raise CheckpointError(f"checkpoint was pretrained on other data (fingerprint {self.data_fingerprint}) "
                                  f"than the dataset loaded now ({data.fingerprint})")
        differing = [f.name for f in dataclasses.fields(config.model)
                     if f.name not in _FINETUNE_FREE and getattr(saved.model, f.name) != getattr(config.model, f.name)]
        if differing:
            raise CheckpointError(f"checkpoint's backbone differs in model.{', model.'.join(differing)}; "
                                  "fine-tuning keeps the architecture (only the resolution may change)")

    # -- modules -----------------------------------------------------------------------------
    def build_backbone(self, device: str | torch.device = "cpu") -> nn.Module:
        backbone = build_backbone(self.config.model, self.channels)
        backbone.load_state_dict(self.backbone)
        return backbone.to(device).eval()

    def pretrained_weights(self, config: TrainConfig, data: DataSplits) -> dict[str, torch.Tensor]:
        """Stage 2's start: this pretrained backbone's weights, checked to start `config` on `data` (the
        trainer's backbone takes them at any side: `load_pretrained`); its head, if any, is dropped."""
        self.check_pretrained(config, data)
        return self.backbone

    @property
    def predicts_classes(self) -> bool:
        return objective_class(self.config.objective).predicts_classes

    def class_head(self, device: str | torch.device = "cpu") -> Objective | None:
        """The trained class-predicting objective (a fine-tuned or supervised run), else None."""
        if not self.predicts_classes:
            return None
        return load_class_head(self.config, len(self.class_names), self.objective).to(device)


# Model fields a pretrained backbone may differ in: the resolution (positions are interpolated), and
# settings that leave the weights' meaning unchanged.
_FINETUNE_FREE = {"image_size", "attention", "dropout"}


def save_archive(payload: dict[str, Any], path: str | Path) -> Path:
    """torch.save `payload` to `path` via a temp file in the same folder and an atomic rename.

    A crash mid-write leaves the previous file at `path` untouched (and its temp file, which the next
    successful save removes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # A writer killed mid-write (kill -9, power loss) could not remove its temp file; one run writes
    # to one path at a time, so any other temp file of this path is such a leftover.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    return path


def read_archive(path: Path, kind: str, map_location: str | torch.device = "cpu") -> Any:
    """A plain-data torch archive (`kind`: what the file should be, for the messages), read with
    weights_only=True so that loading never executes code; CheckpointError says why it cannot be read."""
    if not path.is_file():
        raise CheckpointError(f"{kind} not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"{path} is not a readable {kind} (not a torch archive; empty or truncated?)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's first line advises retrying with weights_only=False, exactly what must not happen;
        # the line naming the refused global says what the file carries.
        lines = str(exc).splitlines() or [""]
        detail = next((line for line in lines if "GLOBAL" in line), lines[0])
        raise CheckpointError(f"{path} is not a plain-data {kind} and was refused unexecuted "
                              f"(it carries pickled objects): {detail}") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable {kind} ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'truncated'})") from exc


def _typed(payload: dict, key: str, kind: type) -> Any:
    value = payload[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"holds {key} of type {type(value).__name__}, not {kind.__name__}")
    return value


def _int(payload: dict, key: str) -> int:
    return _typed(payload, key, int)


def _tensors(payload: dict, key: str) -> dict[str, torch.Tensor]:
    state = _typed(payload, key, dict)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise TypeError(f"holds a {key} state that is not a dict of tensors")
    return state


def _baselines(value: Any) -> tuple[float, ...] | None:
    if not isinstance(value, (list, tuple)) or len(value) not in (0, 2, 4):
        raise TypeError("holds baselines that are not two or four numbers")
    return tuple(float(v) for v in value) if value else None
