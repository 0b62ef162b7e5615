"""`python -m bench.held_out_curve FOLDER`: a pretraining run's hand-over figure, read every epoch, unjudged.

The pipeline's pretraining hands over when its held-out figure (a leave-one-out kNN over the labelled
training images, core/trainer/handover.py) reads below the random-init encoder's, or has stopped improving, at
its evaluations (about eight a run). This bench reads that figure after every `--every` epochs of the same
pretraining (the auto recipe's for a budget of `--minutes`, its schedule as long as the recipe expects),
for its first `--epochs` epochs and without a hand-over, beside the test split's kNN: the curve a denser
reading would have judged. It answers whether the hand-over could read earlier. Prints a markdown table;
asserts nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
from pathlib import Path

from core import events as ev
from core.config import TrainConfig
from core.data.cache import DatasetCache
from core.model.backbone import embed
from core.plan.presets import AUTO
from core.plan.request import Request, plan_first
from core.trainer.handover import HandOver
from core.trainer.loop import Trainer


def curve(folder: Path, epochs: int, every: int, minutes: float, seed: int) -> tuple[str, str, list[tuple]]:
    """The recipe in words, the held-out figure's metric, and rows (epoch, held-out, test kNN, test kNN
    balanced), epoch 0 the random init."""
    dataset = f"folder:{folder}"
    # The pipeline's own pretraining stage, at the length its recipe expects of the budget, so the warmup and
    # cosine are the real run's; stopped early.
    datasets = DatasetCache()
    first = plan_first(Request(TrainConfig(dataset=dataset, seed=seed, device="cpu"), AUTO, "always", minutes),
                       datasets.get)
    config = dataclasses.replace(first.stage, minutes=0.0, eval_every=every, snapshot_every=every,
                                 checkpoint_every=0, stop_when_not_helping=False)
    trainer = Trainer(config, datasets.get(config))
    monitor = trainer.monitor
    judge = HandOver(monitor.labelled, monitor.memory_labels, monitor.n_classes, config.knn_k, config.knn_temperature)
    rows, knn = [], {}

    def read(epoch: int, train_embeddings) -> None:
        rows.append((epoch, judge.figure(train_embeddings), *knn.get(epoch, (None, None))))

    def listen(event: ev.Event) -> None:
        if isinstance(event, ev.Baselines):
            knn[0] = (event.random_init, event.random_init_balanced)
        elif isinstance(event, ev.EpochMetrics) and event.knn_top1 is not None:
            knn[event.epoch] = (event.knn_top1, event.knn_balanced)
        elif isinstance(event, ev.EmbeddingSnapshot):  # emitted in the run's thread: the backbone is that epoch's
            read(event.epoch, embed(trainer.backbone, monitor.eval_train))
            if event.epoch >= epochs:
                stop.set()

    random_init = embed(trainer.backbone, monitor.eval_train)
    stop = threading.Event()
    trainer.run(listen, stop)
    read(0, random_init)
    return first.words[0], judge.metric, sorted(rows)


def table(name: str, rows: list[tuple], metric: str) -> str:
    lines = [f"| {name}: epoch | held-out ({metric}) | test kNN top-1 (balanced) |", "|---|---|---|"]
    for epoch, held_out, top1, balanced in rows:
        knn = "" if top1 is None else f"{top1:.1%} ({balanced:.1%})"
        lines.append(f"| {epoch or 'random init'} | {held_out:.1%} | {knn} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.held_out_curve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--epochs", type=int, default=14)
    parser.add_argument("--every", type=int, default=1, help="read after every this many epochs")
    parser.add_argument("--minutes", type=float, default=5.0, help="the budget the auto recipe is fitted for")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    described, metric, rows = curve(args.folder, args.epochs, args.every, args.minutes, args.seed)
    print(described)
    print(table(f"{args.folder.name} (seed {args.seed})", rows, metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())
