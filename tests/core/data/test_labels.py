"""Few labels per class: the subsets are seeded, nested across K, per class, and the trainer uses them."""
import threading

import torch

from core import events as ev
from core.config import AugmentConfig, ModelConfig, TrainConfig
from core.data.labels import describe, labelled_index, training_index
from core.data.splits import DataSplits, ImageSet
from core.trainer.loop import Trainer


def labels_of(counts):
    return torch.cat([torch.full((n,), c, dtype=torch.long) for c, n in enumerate(counts)])


def test_each_class_keeps_k_labels_and_a_small_class_keeps_all_of_its_own():
    labels = labels_of([30, 12, 3])[torch.randperm(45, generator=torch.Generator().manual_seed(1))]
    kept = labelled_index(labels, 5, seed=0)
    assert labels[kept].bincount().tolist() == [5, 5, 3]
    assert torch.equal(kept, kept.sort().values) and len(set(kept.tolist())) == len(kept)
    assert torch.equal(labelled_index(labels, 0, seed=0), torch.arange(45))  # 0: every label


def test_subsets_are_nested_across_k_and_drawn_with_the_seed():
    labels = labels_of([50] * 4)
    five, twenty = (set(labelled_index(labels, k, seed=3).tolist()) for k in (5, 20))
    assert five < twenty
    assert torch.equal(labelled_index(labels, 5, seed=3), labelled_index(labels, 5, seed=3))
    assert not torch.equal(labelled_index(labels, 5, seed=3), labelled_index(labels, 5, seed=4))


def test_a_label_free_objective_trains_on_every_image_unless_asked_for_the_labelled_only():
    labels = labels_of([20, 20])
    config = TrainConfig(labels_per_class=3)
    assert len(training_index(config, labels, uses_labels=False)) == 40
    assert len(training_index(config, labels, uses_labels=True)) == 6
    assert len(training_index(config.with_overrides(pretrain_on="labelled"), labels, uses_labels=False)) == 6
    assert describe(config) == "3 labels per class" and describe(TrainConfig()) == ""


def _data(n_per_class=12):
    generator = torch.Generator().manual_seed(0)
    labels = labels_of([n_per_class] * 3)
    images = (torch.rand(len(labels), 1, 14, 14, generator=generator) * 60).to(torch.uint8)
    images += (labels * 90).to(torch.uint8)[:, None, None, None]  # classes differ in brightness
    names = ("a", "b", "c")
    return DataSplits("toy", ImageSet(images, labels, names), ImageSet(images.clone(), labels.clone(), names))


def _run(config, data):
    seen = []
    trainer = Trainer(config, data)
    trainer.run(seen.append, threading.Event())
    return trainer, seen


def test_the_trainer_trains_on_the_labelled_images_and_its_knn_memory_holds_them_only():
    data = _data()
    config = TrainConfig(dataset="toy", objective="supervised", epochs=1, warmup_epochs=0, batch_size=4,
                         labels_per_class=2,
                         model=ModelConfig(image_size=14, patch_size=7, dim=16, depth=1, heads=2, dim_head=8,
                                           mlp_dim=32),
                         augment=AugmentConfig(n_global=1, global_size=14, n_local=0, local_size=14),
                         snapshot_every=1, knn_k=20)
    trainer, seen = _run(config, data)
    started = next(e for e in seen if isinstance(e, ev.RunStarted))
    assert started.n_train == 6 and started.class_counts == (2, 2, 2)
    assert trainer.steps_per_epoch == 2  # 6 labelled images in batches of 4
    assert trainer.monitor.memory_labels.bincount().tolist() == [2, 2, 2]
    assert torch.equal(trainer.monitor.labelled, labelled_index(data.train.labels, 2, config.seed))
    snapshot = next(e for e in seen if isinstance(e, ev.EmbeddingSnapshot))
    assert len(snapshot.labels) == 36  # the app still sees (and projects) every training image
    pretrain, _ = _run(config.with_overrides(objective="instance"), data)
    assert pretrain.n_train == 36 and pretrain.objective.head.out_features == 36  # label-free: every image
    labelled, _ = _run(config.with_overrides(objective="instance", pretrain_on="labelled"), data)
    assert labelled.n_train == 6 and labelled.objective.head.out_features == 6
