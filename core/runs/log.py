"""Command-line listeners for trainer events: a tqdm progress bar and a JSONL metrics log."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from core import events as ev
from core.metrics import imbalance, unequal


class JsonlLog:
    """One JSON object per event in `path` (embedding arrays are summarised, not written)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = self.path.open("a", encoding="utf-8")

    def __call__(self, event: ev.Event) -> None:
        record = {"event": type(event).__name__}
        if isinstance(event, ev.EmbeddingSnapshot):
            record.update(epoch=event.epoch, shape=list(event.embeddings.shape))  # arrays stay out of the log
        else:
            record.update(dataclasses.asdict(event))
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class ProgressBar:
    """A tqdm bar over training steps showing loss, kNN top-1 and images/s."""

    def __init__(self, **tqdm_kwargs):
        self._kwargs = tqdm_kwargs
        self._bar: tqdm | None = None
        self._postfix: dict[str, str] = {}
        self._imbalanced = False

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self._bar = tqdm(total=event.total_steps, initial=event.start_step, unit="step",
                             dynamic_ncols=True, **self._kwargs)
            self._bar.write(f"device {event.device}, {event.parameters / 1e6:.2f} M parameters, "
                            f"{event.n_train} train / {event.n_test} test images")
            self._imbalanced = unequal(event.class_counts)
            if self._imbalanced:
                weighs = "; the loss weighs classes" if event.class_weights else ""
                self._bar.write(f"classes unequal: {', '.join(map(str, event.class_counts))} training images "
                                f"(largest {imbalance(event.class_counts):.1f}x the smallest); balanced accuracy "
                                f"(mean recall over classes) is reported beside top-1{weighs}")
        elif self._bar is None:
            return
        elif isinstance(event, ev.BudgetFitted):
            self._bar.total = event.total_steps
            self._bar.refresh()
            self._bar.write(event.message)
        elif isinstance(event, ev.Baselines):
            balanced = (f" (balanced {event.raw_pixels_balanced:.4f} and {event.random_init_balanced:.4f})"
                        if self._imbalanced and event.random_init_balanced is not None else "")
            self._bar.write(f"baselines (kNN top-1 on test): raw pixels {event.raw_pixels:.4f}, "
                            f"random-init encoder {event.random_init:.4f}{balanced}")
        elif isinstance(event, ev.StepMetrics):
            self._postfix.update(loss=f"{event.loss:.3f}", img_s=f"{event.images_per_s:.0f}")
            self._bar.update(event.step - self._bar.n)
            self._bar.set_postfix(self._postfix, refresh=False)
        elif isinstance(event, ev.EpochMetrics) and event.knn_top1 is not None:
            self._postfix["knn"] = f"{event.knn_top1:.4f}"
            top1 = f", test top-1 {event.test_top1:.4f}" if event.test_top1 is not None else ""
            if self._imbalanced:
                top1 = f" (balanced {event.knn_balanced:.4f}){top1}"
                if event.test_balanced is not None:
                    top1 += f" (balanced {event.test_balanced:.4f})"
            self._bar.write(f"epoch {event.epoch}: loss {event.loss:.4f}, kNN top-1 {event.knn_top1:.4f}{top1}, "
                            f"{event.elapsed_s:.0f} s")
        elif isinstance(event, ev.Advice):
            self._bar.write(f"epoch {event.epoch}: {event.message}")
        elif isinstance(event, (ev.Finished, ev.Failed)):
            self._bar.close()


def fan_out(*listeners: Callable[[ev.Event], None]) -> Callable[[ev.Event], None]:
    def emit(event: ev.Event) -> None:
        for listener in listeners:
            listener(event)
    return emit
