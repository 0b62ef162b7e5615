"""`python -m core.train`: pretrain from the command line (or under torchrun for DDP); also resumes any run."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from core import events as ev
from core.config import PRESETS, TrainConfig, preset
from core.data.sources import load_dataset
from core.data.splits import DataSplits
from core.objectives import OBJECTIVES
from core.plan import auto as auto_recipe
from core.plan import payoff
from core.plan.recipe import recipe
from core.runs import folder as runs
from core.runs.log import JsonlLog, ProgressBar, fan_out
from core.trainer import watchdog
from core.trainer.checkpoint import Checkpoint
from core.trainer.distributed import resolve_device
from core.trainer.loop import Trainer

STOPPED = 130  # the exit status of a run stopped by Ctrl-C or SIGTERM (128 + SIGINT, as a shell reports it)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.train", description=__doc__)
    parser.add_argument("--preset", choices=sorted([*PRESETS, auto_recipe.NAME]),
                        help="default: cpu-quick for fashion (tuned on it), auto for any other dataset; "
                             "ignored with --resume")
    parser.add_argument("--dataset", help="fashion | digits | flowers102 | folder:PATH (default: the preset's, "
                                          "fashion)")
    parser.add_argument("--objective", choices=sorted(OBJECTIVES))
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoint last.pt, metrics.jsonl")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int)
    length.add_argument("--minutes", type=float,
                        help="a time budget: the run times its first steps, then fixes its epochs to end on time")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--labels-per-class", type=int,
                        help="only this many training images per class keep their label (drawn with the seed; "
                             "default: all): a supervised run trains on them, and the kNN votes with them")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step (GPU runs)")
    parser.add_argument("--data-root", type=Path, help="folder holding the dataset's files")
    parser.add_argument("--download", action="store_true", help="download the dataset if it is not on disk")
    parser.add_argument("--resume", type=Path,
                        help="checkpoint to continue from; its config is used (--epochs may extend it)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe for the preset and --objective with the flags given applied; with --resume, the
    checkpoint's own config (only --epochs and the bookkeeping flags may change a resumed run)."""
    overrides = _overrides(args)
    if args.resume:
        saved = Checkpoint.load(args.resume).config
        changes = {**overrides, **({"objective": args.objective} if args.objective else {}),
                   **({"epochs": args.epochs} if args.epochs else {})}
        return saved.with_overrides(**changes)  # a changed recipe is refused by Checkpoint.check_resumable
    return recipe(preset(args.preset or "cpu-quick"), args.objective, epochs=args.epochs, **overrides)


def _overrides(args: argparse.Namespace) -> dict:
    overrides = {name: getattr(args, name) for name in ("dataset", "batch_size", "lr", "seed", "device", "minutes",
                                                        "labels_per_class") if getattr(args, name) is not None}
    return {**overrides, **({"compile": True} if args.compile else {})}


def wants_auto(args: argparse.Namespace) -> bool:
    """The auto recipe when asked for, or by default for a dataset no preset was tuned on."""
    if args.resume:
        return False
    return args.preset == auto_recipe.NAME or (args.preset is None and args.dataset not in (None, "fashion"))


def auto_from_args(args: argparse.Namespace) -> tuple[TrainConfig, DataSplits]:
    """The auto recipe for --dataset on this machine and budget (core.auto_recipe), the flags applied, and
    the splits it loaded to measure them."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("the auto recipe times this machine to pick its resolution, which ranks would do "
                         "differently: under torchrun, choose a preset")
    dataset, seed = args.dataset or "fashion", args.seed or 0
    device = resolve_device(args.device or "auto").type

    def load(size: int) -> DataSplits:
        return load_dataset(dataset, root=args.data_root, download=args.download, size=size, seed=seed)

    plan = auto_recipe.plan(dataset, device, args.minutes or 0.0, load)
    print(auto_recipe.describe(plan.config))
    config = recipe(plan.config, args.objective, epochs=args.epochs, **_overrides(args))
    if payoff.applies(config):
        expected = payoff.for_run(config, plan.data)
        print(f"expected: {expected.reason}; python -m core.pipeline follows it")
    return config, plan.data if config.data_size == plan.config.data_size else None


def run_with_interrupt(trainer: Trainer, emit) -> ev.Finished | ev.Failed:
    """Train in a worker thread; Ctrl-C or SIGTERM asks it to stop, which saves a checkpoint.

    Explicit handlers rather than KeyboardInterrupt: an interrupted Thread.join() can return early,
    and a shell's background job starts with SIGINT ignored. A second Ctrl-C quits at once.
    """
    stop, finished, outcome = threading.Event(), threading.Event(), []

    def record(event: ev.Event) -> None:
        emit(event)
        if isinstance(event, (ev.Finished, ev.Failed)):
            outcome.append(event)
            finished.set()

    def on_signal(signum, frame) -> None:
        print("\ninterrupted: saving a checkpoint and stopping (Ctrl-C again quits at once)...", file=sys.stderr)
        stop.set()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        thread = trainer.start(record, stop)
        while not finished.wait(0.2) and thread.is_alive():
            pass
        thread.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return outcome[-1] if outcome else ev.Failed("the training thread ended without a result", 0, trainer.step,
                                                 trainer.last_checkpoint)


def execute(config: TrainConfig, *, out: Path, data_root: Path | None = None, download: bool = False,
            resume: Path | None = None, data: DataSplits | None = None, resume_with: str | None = None) -> int:
    """Load the data (unless given), train with a progress bar and a JSONL log, report; the exit code of
    the CLIs. `resume_with`: the command that continues a stopped run (default: core.train's, this run only)."""
    try:
        data = data or load_dataset(config.dataset, root=data_root, download=download, size=config.data_size,
                                    seed=config.seed)
        trainer = Trainer(config, data, out_dir=out, resume_from=resume)
    except (ValueError, RuntimeError, OSError) as exc:  # DatasetError and CheckpointError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in data.skipped:
        print(f"skipped unreadable file: {name}", file=sys.stderr)
    if trainer.dist.is_main:
        runs.begin(out, config, data.class_names)
        log = JsonlLog(out / runs.METRICS)
        outcome = run_with_interrupt(trainer, fan_out(log, ProgressBar()))
        log.close()
    else:
        outcome = run_with_interrupt(trainer, lambda event: None)
    if isinstance(outcome, ev.Failed):
        print(f"training failed: {outcome.message}", file=sys.stderr)
        return 1
    where = f"; checkpoint {outcome.checkpoint}" if outcome.checkpoint else ""
    knn = f", kNN top-1 {outcome.knn_top1:.4f}" if outcome.knn_top1 is not None else ""
    top1 = f", test top-1 {outcome.test_top1:.4f}" if outcome.test_top1 is not None else ""
    print(f"{outcome.reason} at epoch {outcome.epoch}, step {outcome.step}{knn}{top1}{where}")
    monitor = trainer.monitor
    if monitor.judged_knn is not None and monitor.yardstick:
        judged = monitor.yardstick
        print(watchdog.ending(monitor.judged_knn, judged.raw_pixels, judged.random_init, judged.metric))
    if outcome.reason == "stopped" and outcome.checkpoint:
        print(f"resume with: {resume_with or f'python -m core.train --out {out} --resume {outcome.checkpoint}'}")
    return STOPPED if outcome.reason == "stopped" else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    auto = wants_auto(args)
    try:
        config, data = auto_from_args(args) if auto else (config_from_args(args), None)
    except (ValueError, RuntimeError, OSError) as exc:  # CheckpointError and DatasetError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not auto:  # the auto recipe has said what it chose; a preset or a resumed run says it here
        print(auto_recipe.describe(config, "resumed" if args.resume else args.preset or "cpu-quick"))
    return execute(config, out=args.out, data_root=args.data_root, download=args.download, resume=args.resume,
                   data=data)


if __name__ == "__main__":
    sys.exit(main())
