"""What a run measures and how it is judged: the kNN monitor, its two baselines, the watchdog's words
and the held-out hand-over.

The trainer trains; a Monitor reads the same backbone and objective modules (the trainer updates them
in place) when an epoch ends. The kNN votes with the labelled training images only (few labels:
core/labels.py) for the images of the test split, which is used to report and to warn, never to
choose. Judging a pretraining run on held-out training images, and keeping its best backbone there,
is core/handover.py's, asked for by `stop_when_not_helping`.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core import events as ev
from core.config import TrainConfig
from core.data.images import fit_square
from core.data.labels import labelled_index
from core.data.splits import DataSplits
from core.metrics import accuracy, balanced_accuracy, confusion_accuracy, confusion_matrix, knn_predict, pixel_features
from core.model.backbone import cpu_state, embed
from core.trainer import watchdog
from core.trainer.handover import HandOver


@dataclass(frozen=True, eq=False)
class Evaluation:
    knn: float  # kNN top-1 on the test split
    knn_balanced: float  # the same votes' balanced accuracy (mean recall over classes)
    train_embeddings: torch.Tensor  # (N, D), what the kNN used: a snapshot reuses them
    confusion: torch.Tensor | None  # the class head's test confusion (n_classes, n_classes), if it has one


class Monitor:
    def __init__(self, config: TrainConfig, data: DataSplits, backbone: nn.Module, objective: nn.Module,
                 train_images: torch.Tensor, clock: Callable[[], float] = time.perf_counter):
        """`train_images`: every training image (N, C, H, W) on the run's device, in dataset order; `clock`
        times the evaluations (a time budget counts them)."""
        self.config, self.data, self.clock = config, data, clock
        self.eval_s: float | None = None  # what the latest timed evaluation took
        self.backbone, self.objective = backbone, objective
        device, size = train_images.device, config.model.image_size
        self.labelled = labelled_index(data.train.labels, config.labels_per_class, config.seed)
        self.memory_labels = data.train.labels[self.labelled]
        self.eval_train = fit_square(train_images, size)  # every training image: snapshots show them all
        self.eval_test = fit_square(data.test.images.to(device), size)
        self.n_classes = len(data.class_names)
        self.baselines: ev.Baselines | None = None
        self.judged_knn: float | None = None  # the latest evaluation in the yardstick's figure
        self.held_out: float | None = None  # the latest hand-over figure (held-out training images)
        self._watchdog: watchdog.Watchdog | None = None  # reads the kNN curve of a pretraining run
        judged_by_head = objective.predicts_classes  # then the hand-over has nothing to read
        self.handover = (HandOver(self.labelled, self.memory_labels, self.n_classes, config.knn_k,
                                  config.knn_temperature) if config.stop_when_not_helping and not judged_by_head
                         else None)

    def evaluate(self) -> Evaluation:
        """The kNN monitor (and the class head, when the objective has one) on the test split."""
        train, test = embed(self.backbone, self.eval_train), embed(self.backbone, self.eval_test)
        labels = self.data.test.labels
        votes = knn_predict(train[self.labelled.to(train.device)], self.memory_labels, test, self.n_classes,
                            self.config.knn_k, self.config.knn_temperature)
        knn_confusion = confusion_matrix(votes.argmax(dim=1), labels, self.n_classes)
        confusion = None
        if self.objective.predicts_classes:
            with torch.no_grad():
                predicted = self.objective.class_logits(test).argmax(dim=1)
            confusion = confusion_matrix(predicted, labels, self.n_classes)
        return Evaluation(accuracy(votes.argmax(dim=1), labels), balanced_accuracy(knn_confusion), train, confusion)

    def timed(self) -> Evaluation:
        """The evaluation, timed (`eval_s`: what a time budget's next fit counts)."""
        before = self.clock()
        measured = self.evaluate()
        self.eval_s = self.clock() - before
        return measured

    def measure_baselines(self, random_init_state: dict[str, torch.Tensor] | None = None) -> ev.Baselines:
        """Raw pixels' kNN and the random-init encoder's, in top-1 and balanced accuracy; the hand-over starts
        from the same encoder. The random init is the backbone as it is, or `random_init_state` (a fine-tuning
        run's seeded encoder, loaded for the evaluation only)."""
        if random_init_state is None:
            random_init, random_init_state = self.timed(), self.backbone.state_dict()
        else:
            trained = {k: v.clone() for k, v in self.backbone.state_dict().items()}
            self.backbone.load_state_dict(random_init_state)
            try:
                random_init = self.timed()
            finally:
                self.backbone.load_state_dict(trained)
        cfg, labels = self.config, self.data.test.labels
        memory = pixel_features(self.eval_train)[self.labelled.to(self.eval_train.device)]
        votes = knn_predict(memory, self.memory_labels, pixel_features(self.eval_test),
                            self.n_classes, cfg.knn_k, cfg.knn_temperature).argmax(dim=1)
        if self.handover is not None:
            self.handover.start(self.handover.figure(random_init.train_embeddings), random_init_state, self.objective)
        self.baselines = ev.Baselines(accuracy(votes, labels), random_init.knn,
                                      balanced_accuracy(confusion_matrix(votes, labels, self.n_classes)),
                                      random_init.knn_balanced)
        return self.baselines

    def reads_early(self, epoch: int, eval_every: int) -> bool:
        """Whether a hand-over run makes its early read (core/handover.py) at the end of `epoch`."""
        early = self.handover.early_epoch(eval_every) if self.handover is not None else None
        return early is not None and epoch >= early

    def epoch_end(self, epoch: int, step: int, loss: float, started: float, evaluate: bool,
                  snapshot: bool, read: bool = False) -> list[ev.Event]:
        """What an epoch's end measures, as events: its metrics (the evaluation when `evaluate`, else the
        hand-over's early read when `read`; the time since `started`), the judging's words, and the
        embedding snapshot when `snapshot`, in that order."""
        knn = knn_balanced = confusion = top1 = top1_balanced = features = measured = None
        said: list[str] = []
        if evaluate:
            measured = self.timed()
            said = self.watch(epoch, measured)  # before the metrics: they carry the held-out figure
        elif read:
            said = self._read_early(epoch)
            if self.handed_over:  # the run ends here: its backbone is evaluated, as a run's last epoch is
                measured = self.timed()
                self._judge(measured)
        if measured is not None:
            knn, knn_balanced, features, confusion = (measured.knn, measured.knn_balanced,
                                                      measured.train_embeddings, measured.confusion)
        if confusion is not None:
            top1, top1_balanced = confusion_accuracy(confusion), balanced_accuracy(confusion)
        if snapshot and features is None:  # a snapshot needs only the training embeddings
            features = embed(self.backbone, self.eval_train)
        events: list[ev.Event] = [ev.EpochMetrics(
            epoch, step, loss, knn, self.clock() - started, top1,
            None if confusion is None else tuple(map(tuple, confusion.tolist())), knn_balanced, top1_balanced,
            self.held_out if evaluate or read else None)]
        events += [ev.Advice(epoch, words) for words in said]
        if snapshot:
            events.append(ev.EmbeddingSnapshot(
                epoch, features.cpu().half().numpy(), self.data.train.labels.numpy(), cpu_state(self.backbone),
                cpu_state(self.objective) if self.objective.predicts_classes else None))
        return events

    @property
    def yardstick(self) -> watchdog.Yardstick | None:
        """The kNN figure this run is judged by (balanced when the classes are unequal), with its baselines."""
        if self.baselines is None:
            return None
        return watchdog.Yardstick.of(self.baselines, self.memory_labels.bincount(minlength=self.n_classes))

    def watch(self, epoch: int, measured: Evaluation) -> list[str]:
        """What a pretraining run's evaluation says to the person, once each sign starts to apply (supervised
        and fine-tuning runs are judged by their class head): the watchdog's words on the test-split kNN,
        and the hand-over's on the held-out training images, which end the run (`handed_over`)."""
        if self.objective.predicts_classes:
            return []
        yardstick = self.yardstick
        if self._watchdog is None:
            self._watchdog = (watchdog.Watchdog(yardstick.random_init, yardstick.metric) if yardstick
                              else watchdog.Watchdog(None))
        said = [self._watchdog.observe(epoch, self._judge(measured))]
        if self.handover is not None:
            self.held_out = self.handover.figure(measured.train_embeddings)
            said.append(self.handover.observe(epoch, self.held_out, self.backbone, self.objective))
        return [words for words in said if words is not None]

    def _judge(self, measured: Evaluation) -> float:
        """The evaluation in the yardstick's figure (balanced when the classes are unequal), kept as judged_knn."""
        yardstick = self.yardstick
        self.judged_knn = yardstick.read(measured.knn, measured.knn_balanced) if yardstick else measured.knn
        return self.judged_knn

    def _read_early(self, epoch: int) -> list[str]:
        """The hand-over's early read (core/handover.py): the held-out figure of the training images only."""
        self.held_out = self.handover.figure(embed(self.backbone, self.eval_train))
        words = self.handover.read(epoch, self.held_out, self.backbone, self.objective)
        return [words] if words else []

    @property
    def handed_over(self) -> bool:
        return self.handover is not None and self.handover.words is not None
