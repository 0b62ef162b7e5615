"""What a run measures and how it is judged: the kNN monitor, its two baselines, the watchdog's words
and the held-out hand-over.

The trainer trains; a Monitor reads the same backbone and objective modules (the trainer updates them
in place) when an epoch ends. The kNN votes with the labelled training images only (few labels:
core/labels.py) for the images of the test split, which is used to report and to warn, never to
choose. Judging a pretraining run on held-out training images, and keeping its best backbone there,
is core/handover.py's, asked for by `stop_when_not_helping`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core import events as ev
from core import watchdog
from core.config import TrainConfig
from core.handover import HandOver
from core.images import fit_square
from core.labels import labelled_index
from core.metrics import accuracy, balanced_accuracy, confusion_matrix, knn_predict, pixel_features
from core.model import embed
from core.splits import DataSplits


@dataclass(frozen=True, eq=False)
class Evaluation:
    knn: float  # kNN top-1 on the test split
    knn_balanced: float  # the same votes' balanced accuracy (mean recall over classes)
    train_embeddings: torch.Tensor  # (N, D), what the kNN used: a snapshot reuses them
    confusion: torch.Tensor | None  # the class head's test confusion (n_classes, n_classes), if it has one


class Monitor:
    def __init__(self, config: TrainConfig, data: DataSplits, backbone: nn.Module, objective: nn.Module,
                 train_images: torch.Tensor):
        """`train_images`: every training image (N, C, H, W) on the run's device, in dataset order."""
        self.config, self.data = config, data
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

    def measure_baselines(self, random_init: Evaluation, random_init_state: dict[str, torch.Tensor]) -> ev.Baselines:
        """Raw pixels' kNN and the random-init encoder's (`random_init`, measured with `random_init_state`
        loaded), in top-1 and balanced accuracy; the hand-over starts from the same encoder."""
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
        self.judged_knn = yardstick.read(measured.knn, measured.knn_balanced) if yardstick else measured.knn
        said = [self._watchdog.observe(epoch, self.judged_knn)]
        if self.handover is not None:
            self.held_out = self.handover.figure(measured.train_embeddings)
            said.append(self.handover.observe(epoch, self.held_out, self.backbone, self.objective))
        return [words for words in said if words is not None]

    @property
    def handed_over(self) -> bool:
        return self.handover is not None and self.handover.words is not None
