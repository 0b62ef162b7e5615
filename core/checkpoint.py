"""Checkpoints: written atomically, read with `weights_only=True`, validated before use.

A checkpoint is a plain dict of tensors, numbers and strings (the config as JSON), so loading it
never executes code; anything else (a pickled object) is refused by torch's safe unpickler.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from core.config import TrainConfig, from_json

FORMAT = "vit2040-checkpoint-v1"
REQUIRED = ("format", "config", "backbone", "step", "epoch", "data_fingerprint", "class_names")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with a message saying why."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write `payload` to `path` via a temp file in the same folder and an atomic rename.

    A crash mid-write leaves the previous file at `path` untouched (and its temp file, which the
    next successful save removes).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT, **payload}, handle)
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and sanity-check a checkpoint; raises CheckpointError with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"{path} is not a readable checkpoint (not a torch archive; empty or truncated?)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's first line advises retrying with weights_only=False, exactly what must not happen;
        # the line naming the refused global says what the file carries.
        lines = str(exc).splitlines() or [""]
        detail = next((line for line in lines if "GLOBAL" in line), lines[0])
        raise CheckpointError(f"{path} is not a plain-data checkpoint and was refused unexecuted "
                              f"(it carries pickled objects): {detail}") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'truncated'})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vit2040 checkpoint (format {FORMAT} expected)")
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    try:
        payload["config"] = from_json(payload["config"])
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path} holds an invalid config: {exc}") from exc
    return payload


def check_matches(payload: dict[str, Any], fingerprint: str, class_names: tuple[str, ...]) -> None:
    """Refuse a checkpoint trained on other data than the data at hand."""
    trained_on = payload["config"].dataset
    if payload["data_fingerprint"] != fingerprint:
        raise CheckpointError(f"checkpoint was trained on other data ({trained_on!r}, fingerprint "
                              f"{payload['data_fingerprint']}) than the dataset loaded now (fingerprint "
                              f"{fingerprint}); load it with the dataset it was trained on")
    if tuple(payload["class_names"]) != tuple(class_names):
        raise CheckpointError("checkpoint's class names differ from the dataset's")


def check_resumable(payload: dict[str, Any], config: TrainConfig) -> None:
    """Resuming needs the same run: only `epochs` and bookkeeping intervals may change."""
    saved = payload["config"]
    free = {"epochs", "eval_every", "snapshot_every", "checkpoint_every", "sync_every", "compile", "device"}
    differing = [name for name in TrainConfig.__dataclass_fields__
                 if name not in free and getattr(saved, name) != getattr(config, name)]
    if differing:
        raise CheckpointError(f"checkpoint's config differs in {', '.join(differing)}; it cannot be resumed "
                              "with this config")
    if "optimizer" not in payload:
        raise CheckpointError("checkpoint has no optimizer state (weights only); it cannot be resumed")


# Model fields a pretrained backbone may differ in: the resolution (positions are interpolated), and
# settings that leave the weights' meaning unchanged.
_FINETUNE_FREE = {"image_size", "attention", "dropout"}


def check_pretrained(payload: dict[str, Any], config: TrainConfig, fingerprint: str,
                     class_names: tuple[str, ...]) -> None:
    """Refuse a pretrained checkpoint that cannot start `config` (stage 2) on the data at hand."""
    saved = payload["config"]
    if saved.dataset != config.dataset:
        raise CheckpointError(f"checkpoint was pretrained on {saved.dataset!r}, not on {config.dataset!r}")
    if tuple(payload["class_names"]) != tuple(class_names):
        raise CheckpointError("checkpoint's class names differ from the dataset's")
    # Stored at another size, the same images hash differently; at the same size they must match.
    if saved.data_size == config.data_size and payload["data_fingerprint"] != fingerprint:
        raise CheckpointError(f"checkpoint was pretrained on other data (fingerprint {payload['data_fingerprint']}) "
                              f"than the dataset loaded now ({fingerprint})")
    differing = [name for name in type(config.model).__dataclass_fields__
                 if name not in _FINETUNE_FREE and getattr(saved.model, name, None) != getattr(config.model, name)]
    if differing:
        raise CheckpointError(f"checkpoint's backbone differs in model.{', model.'.join(differing)}; "
                              "fine-tuning keeps the architecture (only the resolution may change)")
