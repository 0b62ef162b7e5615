"""Train one stage in its folder: the one runner of a trainer on a stage folder, for the command lines, the
pipeline (and so the app and core.compare).

The stage's config is written when it starts and again when it ends (a budget fixed into epochs is the config
a resume or a fine-tune continues), and every event goes to its log (core/runs/log.py) before the caller's
listener. A failure inside training is reported as the Failed event the trainer emitted, not raised.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from core import events as ev
from core.config import TrainConfig
from core.data.splits import DataSplits
from core.runs.folder import StageFolder
from core.trainer.loop import Trainer

Emit = Callable[[ev.Event], None]


@dataclass(frozen=True, eq=False)
class Trained:
    """How a stage's start ended, and the trainer, for what its caller reads after it (the monitor's figures)."""

    outcome: ev.Finished | ev.Failed
    trainer: Trainer

    @property
    def config(self) -> TrainConfig:
        """The config the stage ended with: a budget's minutes fixed into epochs."""
        return self.trainer.config

    @property
    def finished(self) -> bool:
        """Whether the stage ended by itself (completed, or a pretraining handed over), not stopped or failed."""
        return isinstance(self.outcome, ev.Finished) and self.outcome.reason in (ev.COMPLETED, ev.HANDED_OVER)


def run_stage(config: TrainConfig, data: DataSplits, folder: StageFolder, emit: Emit, stop: threading.Event,
              resume_from: str | Path | None = None, init_backbone: dict[str, torch.Tensor] | None = None) -> Trained:
    """Train `config` on `data` into `folder` until it ends or `stop` is set. A config the trainer refuses (a
    checkpoint for other data, a recipe an objective cannot train) raises its ValueError before anything is
    written."""
    trainer = Trainer(config, data, out_dir=folder.path, resume_from=resume_from, init_backbone=init_backbone)
    if not trainer.dist.is_main:  # under torchrun only rank 0 writes the folder
        return Trained(_run(trainer, lambda event: None, stop), trainer)
    log = folder.begin(config)
    try:
        return Trained(_run(trainer, ev.fan_out(log, emit), stop), trainer)
    finally:
        log.close()
        folder.write_config(trainer.config)


def _run(trainer: Trainer, emit: Emit, stop: threading.Event) -> ev.Finished | ev.Failed:
    try:
        return trainer.run(emit, stop)
    except Exception as exc:  # already emitted as Failed by Trainer.run; the caller reads the event
        return ev.Failed(f"{exc.__class__.__name__}: {exc}", trainer.step // trainer.steps_per_epoch, trainer.step,
                         trainer.last_checkpoint)
