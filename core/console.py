"""What the command lines share, and nothing in the library imports: their flags' types and help (one meaning per
flag name, every default shown, a bad value refused in one line before any work), the console's listener (a
progress bar and a line per event), Ctrl-C and SIGTERM as a stop that saves, one stage trained into a folder,
and the exit statuses."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from core import events as ev
from core.config import DEVICES, TrainConfig
from core.data.cache import DatasetCache
from core.data.sources import DATASETS
from core.metrics import imbalance, unequal
from core.plan.stage import run_stage
from core.runs.folder import LOG, RECORD, RunFolder, StageFolder
from core.serve.model_file import ModelFile
from core.trainer.checkpoint import Checkpoint
from core.trainer.handover import HELD_OUT
from core.trainer.watchdog import Yardstick

OK, TRAINING_FAILED, REFUSED, STOPPED = 0, 1, 2, 130  # 130: 128 + SIGINT, as a shell reports a Ctrl-C
T = TypeVar("T")


def error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return REFUSED


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The module's docstring as written, and every flag's default after its help (a help that says its default
    in words keeps them; a switch or a flag with no default has none to say)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or not action.option_strings or unset:
            return text
        return f"{text} (default: %(default)s)"


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=f"python -m {prog}", description=description, formatter_class=HelpFormatter)


def at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value
    return parse


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


def labels_per_class(text: str) -> int:
    """'all' (0 inside: every label) or a positive count."""
    if text.strip() == "all":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: labels per class are a positive count or 'all'")
    return value


def dataset(text: str) -> str:
    if text in DATASETS or (text.startswith("folder:") and len(text) > len("folder:")):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: choose {', '.join(DATASETS)} or folder:PATH")


DATASET_HELP = f"{' | '.join(DATASETS)} | folder:PATH (one subfolder of images per class)"
LABELS_HELP = "labelled images a class the run may use (drawn with the seed), or all"


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, help="folder holding a named dataset's files (default: "
                                                       "$VIT2040_DATA, then the Debian package's)")
    parser.add_argument("--download", action="store_true", help="download a named dataset that is not on disk")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: a GPU when there is one")


def clause(words: str) -> str:
    """The first clause of a run's long words (up to its first colon): what a console line has room for."""
    return words.split(": ", 1)[0]


class Console:
    """A tqdm bar over each stage's steps (loss, kNN, images/s) and a short line for each event a person reads;
    the long explanations stay in the run's log and record, which the lines name (`where`: the run folder)."""

    def __init__(self, where: str | Path | None = None, **tqdm_kwargs):
        self._where = Path(where) if where is not None else None
        self._kwargs = tqdm_kwargs
        self._bar: tqdm | None = None
        self._postfix: dict[str, str] = {}
        self._started: ev.RunStarted | None = None
        self._log = self._where / LOG if self._where is not None else None  # the stage's log: its long words
        self._baselines: ev.Baselines | None = None
        self._last: ev.EpochMetrics | None = None

    def write(self, line: str) -> None:
        (self._bar.write if self._bar is not None else print)(line)

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, f"_{type(event).__name__}", None)
        if handler is not None:
            handler(event)

    def _Planned(self, event: ev.Planned) -> None:
        self.write(event.recipe)
        if event.expected:
            why = f" (why: {self._where / RECORD})" if self._where is not None else ""
            self.write(f"expected: {clause(event.expected)}{why}")
        self.write(f"pipeline: {event.stages}")

    def _StageStarted(self, event: ev.StageStarted) -> None:
        self._log = Path(event.folder) / LOG
        if event.words:
            self.write(f"pipeline: {clause(event.words)}")

    def _RunStarted(self, event: ev.RunStarted) -> None:
        self._started, self._baselines, self._last = event, None, None
        self._bar = tqdm(total=event.total_steps, initial=event.start_step, unit="step", dynamic_ncols=True,
                         **self._kwargs)
        self.write(f"device {event.device}, {event.parameters / 1e6:.2f} M parameters, "
                   f"{event.n_train} train / {event.n_test} test images")
        if unequal(event.class_counts):
            weighs = "; the loss weighs classes" if event.class_weights else ""
            self.write(f"classes unequal (largest {imbalance(event.class_counts):.1f}x the smallest): balanced "
                       f"accuracy beside top-1{weighs}")

    def _BudgetFitted(self, event: ev.BudgetFitted) -> None:
        if self._bar is not None:
            self._bar.total = event.total_steps
            self._bar.refresh()
        self.write(event.message)

    def _Baselines(self, event: ev.Baselines) -> None:
        self._baselines = event
        balanced = (f" (balanced {event.raw_pixels_balanced:.4f} and {event.random_init_balanced:.4f})"
                    if self._imbalanced and event.random_init_balanced is not None else "")
        self.write(f"baselines (kNN top-1 on test): raw pixels {event.raw_pixels:.4f}, "
                   f"random-init encoder {event.random_init:.4f}{balanced}")

    @property
    def _imbalanced(self) -> bool:
        return self._started is not None and unequal(self._started.class_counts)

    def _StepMetrics(self, event: ev.StepMetrics) -> None:
        if self._bar is not None:
            self._postfix.update(loss=f"{event.loss:.3f}", img_s=f"{event.images_per_s:.0f}")
            self._bar.update(event.step - self._bar.n)
            self._bar.set_postfix(self._postfix, refresh=False)

    def _EpochMetrics(self, event: ev.EpochMetrics) -> None:
        if event.knn_top1 is None:
            return
        self._last = event
        self._postfix["knn"] = f"{event.knn_top1:.4f}"
        top1 = f", test top-1 {event.test_top1:.4f}" if event.test_top1 is not None else ""
        if self._imbalanced:
            top1 = f" (balanced {event.knn_balanced:.4f}){top1}"
            if event.test_balanced is not None:
                top1 += f" (balanced {event.test_balanced:.4f})"
        self.write(f"epoch {event.epoch}: loss {event.loss:.4f}, kNN top-1 {event.knn_top1:.4f}{top1}, "
                   f"{event.elapsed_s:.0f} s")

    def _Advice(self, event: ev.Advice) -> None:
        why = f" (why: {self._log})" if self._log is not None else ""
        self.write(f"epoch {event.epoch}: {clause(event.message.removeprefix(HELD_OUT))}{why}")

    def _Finished(self, event: ev.Finished) -> None:
        self._close()
        where = f"; checkpoint {event.checkpoint}" if event.checkpoint else ""
        knn = f", kNN top-1 {event.knn_top1:.4f}" if event.knn_top1 is not None else ""
        top1 = f", test top-1 {event.test_top1:.4f}" if event.test_top1 is not None else ""
        self.write(f"{event.reason} at epoch {event.epoch}, step {event.step}{knn}{top1}{where}")
        judged = self._started is not None and not self._started.predicts_classes
        if judged and self._baselines is not None and self._last is not None:
            stick = Yardstick.of(self._baselines, self._started.class_counts)
            knn = stick.read(self._last.knn_top1, self._last.knn_balanced)
            above = knn > max(stick.raw_pixels, stick.random_init)
            self.write(f"backbone {stick.metric} {knn:.1%}: {'above' if above else 'NOT above'} the baselines (raw "
                       f"pixels {stick.raw_pixels:.1%}, random init {stick.random_init:.1%})")

    def _Failed(self, event: ev.Failed) -> None:
        self._close()
        print(f"{'training failed' if self._started is not None else 'error'}: {event.message}", file=sys.stderr)

    def _PipelineEnded(self, event: ev.PipelineEnded) -> None:
        self.write(f"pipeline: {event.minutes:.1f} min; model {event.model or 'none (a stage did not finish)'}")

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def interruptible(work: Callable[[threading.Event], T]) -> T:
    """Run `work(stop)` in a worker thread; Ctrl-C or SIGTERM sets `stop`, which saves a checkpoint and ends.

    Explicit handlers rather than KeyboardInterrupt: an interrupted Thread.join() can return early, and a
    shell's background job starts with SIGINT ignored. A second Ctrl-C quits at once.
    """
    stop, result, failure = threading.Event(), [], []

    def target() -> None:
        try:
            result.append(work(stop))
        except BaseException as exc:  # re-raised in the calling thread, with its traceback
            failure.append(exc)

    def on_signal(signum, frame) -> None:
        print("\ninterrupted: saving a checkpoint and stopping (Ctrl-C again quits at once)...", file=sys.stderr)
        stop.set()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        thread = threading.Thread(target=target, name="vit2040-work", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        raise failure[0]
    return result[0]


def train_one(config: TrainConfig, out: Path, datasets: DatasetCache, resume: Path | None = None,
              resume_with: str | None = None) -> int:
    """One stage trained into the run folder `out` with the console's bar and lines (core.train, core.finetune);
    the exit status. `resume_with`: the command that continues a stopped run (default: core.train's)."""
    try:
        data = datasets.get(config)
    except (ValueError, OSError) as exc:  # a DatasetError is a ValueError
        return error(str(exc))
    for name in data.skipped:
        print(f"skipped unreadable file: {name}", file=sys.stderr)
    RunFolder(out).name(None, data.class_names)
    try:
        trained = interruptible(lambda stop: run_stage(config, data, StageFolder(out), Console(out), stop,
                                                       resume_from=resume))
    except (ValueError, RuntimeError, OSError) as exc:  # a checkpoint or config the trainer refused
        return error(str(exc))
    outcome = trained.outcome
    if isinstance(outcome, ev.Failed):
        return TRAINING_FAILED
    if outcome.reason == ev.COMPLETED and trained.trainer.dist.is_main:
        run = RunFolder(out)
        ModelFile.from_checkpoint(Checkpoint.load(outcome.checkpoint), data.train).save(run.model_path)
        print(f"model file {run.model_path} (python -m core.classify {run.model_path} PHOTOS...)")
    if outcome.reason == ev.STOPPED and outcome.checkpoint:
        print(f"resume with: {resume_with or f'python -m core.train --out {out} --resume {outcome.checkpoint}'}")
    return STOPPED if outcome.reason == ev.STOPPED else OK
