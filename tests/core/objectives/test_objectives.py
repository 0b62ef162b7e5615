import math

import pytest
import torch
import torch.nn.functional as F

from core.config import AugmentConfig, TrainConfig
from core.objectives import (
    OBJECTIVES,
    Contrastive,
    InstanceDiscrimination,
    Supervised,
    build_objective,
    load_class_head,
)
from core.objectives.base import class_weights, mixed_cross_entropy
from core.objectives.contrastive import nt_xent
from tests.core.conftest import TINY_MODEL


def slow_mixed_ce(logits, target, partner, lam, smoothing):
    """Explicit softmax and smoothed one-hot targets, one sample at a time."""
    total = 0.0
    n, classes = logits.shape
    for i in range(n):
        exp = [math.exp(v) for v in logits[i].tolist()]
        log_p = [math.log(e / sum(exp)) for e in exp]
        for cls, weight in ((int(target[i]), float(lam[i])), (int(partner[i]), 1 - float(lam[i]))):
            soft = [smoothing / classes + (1 - smoothing) * (c == cls) for c in range(classes)]
            total += weight * -sum(s * lp for s, lp in zip(soft, log_p))
    return total / n


def test_mixed_cross_entropy_matches_the_slow_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 9, generator=g) * 3
    target = torch.randint(0, 9, (6,), generator=g)
    partner = torch.randint(0, 9, (6,), generator=g)
    lam = torch.rand(6, generator=g)
    for smoothing in (0.0, 0.1):
        fast = mixed_cross_entropy(logits, target, partner, lam, smoothing).item()
        assert math.isclose(fast, slow_mixed_ce(logits, target, partner, lam, smoothing), rel_tol=1e-5)


def test_lam_one_is_plain_cross_entropy():
    logits = torch.randn(4, 5)
    target = torch.tensor([0, 1, 2, 3])
    loss = mixed_cross_entropy(logits, target, torch.tensor([4, 4, 4, 4]), torch.ones(4), 0.0)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(logits, target))


def test_instance_objective_targets_are_indices_and_loss_falls_when_fitting():
    torch.manual_seed(0)
    objective = InstanceDiscrimination(dim=8, n_instances=10, label_smoothing=0.1)
    assert objective.head.out_features == 10
    index = torch.tensor([3, 7])
    assert torch.equal(objective.targets(index, torch.tensor([0, 0])), index)
    features = torch.randn(10, 8)
    target = torch.arange(10)
    opt = torch.optim.SGD(objective.parameters(), lr=1.0)
    first = None
    for _ in range(50):
        loss = objective(features, target, target.roll(1), torch.full((10,), 0.8))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.7


def slow_nt_xent(z, target, temperature):
    """SimCLR's loss written out: for each anchor, -log softmax over every other row, averaged over
    the anchor's positives, with explicit loops and math on Python floats."""
    n = len(z)
    unit = [[v / math.sqrt(sum(w * w for w in row)) for v in row] for row in z.tolist()]
    total = 0.0
    for i in range(n):
        sims = {j: sum(a * b for a, b in zip(unit[i], unit[j])) / temperature for j in range(n) if j != i}
        denominator = sum(math.exp(v) for v in sims.values())
        positives = [j for j in sims if int(target[j]) == int(target[i])]
        total += -sum(math.log(math.exp(sims[j]) / denominator) for j in positives) / len(positives)
    return total / n


@pytest.mark.parametrize("views", [2, 3])
def test_nt_xent_matches_the_slow_reference_in_value_and_gradient(views):
    g = torch.Generator().manual_seed(views)
    batch = 5
    z = torch.randn(views * batch, 6, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.arange(batch).repeat(views)  # view-major, as the trainer lays groups out
    fast = nt_xent(z, target, 0.3)
    assert math.isclose(fast.item(), slow_nt_xent(z.detach(), target, 0.3), rel_tol=1e-9)
    (grad,) = torch.autograd.grad(fast, z)

    def reference(x):  # the same loss through autograd on an explicit (non-vectorised) formula
        rows = []
        for i in range(len(x)):
            others = [j for j in range(len(x)) if j != i]
            sims = torch.stack([F.cosine_similarity(x[i], x[j], dim=0) / 0.3 for j in others])
            log_p = sims - sims.logsumexp(0)
            rows.append(-torch.stack([log_p[k] for k, j in enumerate(others) if target[j] == target[i]]).mean())
        return torch.stack(rows).mean()

    (slow_grad,) = torch.autograd.grad(reference(z), z)
    assert torch.allclose(grad, slow_grad, rtol=1e-7, atol=1e-10)


def test_nt_xent_is_low_when_views_agree_and_high_when_they_do_not():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 16, generator=g)
    target = torch.arange(4).repeat(2)
    aligned = torch.cat([z[:4], z[:4]])  # each image's two views identical
    assert nt_xent(aligned, target, 0.1) < nt_xent(z, target, 0.1) - 1.0


def test_contrastive_learns_to_pull_views_together():
    torch.manual_seed(0)
    objective = Contrastive(dim=8, projection_dim=4, temperature=0.5)
    base = torch.randn(6, 8)
    views = torch.cat([base + 0.3 * torch.randn(6, 8), base + 0.3 * torch.randn(6, 8)])
    target = torch.arange(6).repeat(2)
    ones = torch.ones(12)
    first = objective(views, target, target, ones).item()
    opt = torch.optim.SGD(objective.parameters(), lr=0.5)
    for _ in range(60):
        loss = objective(views, target, target, ones)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first * 0.8


def test_supervised_targets_are_labels_and_it_predicts_classes():
    torch.manual_seed(0)
    objective = Supervised(dim=8, n_classes=3, label_smoothing=0.0)
    labels = torch.tensor([2, 0, 1, 2])
    assert torch.equal(objective.targets(torch.tensor([9, 8, 7, 6]), labels), labels)
    features = torch.randn(4, 8) * 3
    opt = torch.optim.SGD(objective.parameters(), lr=0.5)
    for _ in range(100):
        loss = objective(features, labels, labels, torch.ones(4))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(objective.class_logits(features).argmax(dim=1), labels)


def test_registry_builds_each_objective_by_name_from_a_config():
    assert set(OBJECTIVES) == {"instance", "contrastive", "supervised"}
    config = TrainConfig(model=TINY_MODEL, augment=AugmentConfig(n_global=2, global_size=14, n_local=0,
                                                                 local_size=14, cutmix_alpha=0.0))
    built = {name: build_objective(config.with_overrides(objective=name), n_instances=7, n_classes=3)
             for name in OBJECTIVES}
    assert isinstance(built["instance"], InstanceDiscrimination) and built["instance"].head.out_features == 7
    assert isinstance(built["supervised"], Supervised) and built["supervised"].head.out_features == 3
    assert isinstance(built["contrastive"], Contrastive)
    with pytest.raises(ValueError, match="unknown objective"):
        build_objective(config.with_overrides(objective="magic"), n_instances=7, n_classes=3)


def test_objectives_declare_what_they_can_predict_and_need():
    assert [name for name, cls in sorted(OBJECTIVES.items()) if cls.predicts_classes] == ["supervised"]
    assert OBJECTIVES["contrastive"].min_views == 2 and not OBJECTIVES["contrastive"].mixes
    instance = InstanceDiscrimination(dim=8, n_instances=4)
    with pytest.raises(TypeError, match="does not predict classes"):
        instance.class_logits(torch.zeros(2, 8))


def test_a_class_head_loads_from_its_state_frozen():
    config = TrainConfig(objective="supervised", model=TINY_MODEL,
                         augment=AugmentConfig(global_size=14, local_size=14))
    trained = build_objective(config, n_instances=0, n_classes=3)
    head = load_class_head(config, 3, trained.state_dict())
    features = torch.randn(5, TINY_MODEL.dim)
    assert torch.equal(head.class_logits(features), trained.class_logits(features))
    assert not head.training and not any(p.requires_grad for p in head.parameters())
    with pytest.raises(ValueError, match="no class head"):
        load_class_head(config.with_overrides(objective="instance"), 3, {})


@pytest.mark.parametrize("augment, problem", [
    ({"n_global": 1}, "at least 2 views"),
    ({"n_local": 1}, "at least 2 views"),
    ({"cutmix_alpha": 0.5}, "unmixed"),
    ({"mixup_alpha": 0.5}, "unmixed"),
])
def test_contrastive_refuses_views_it_cannot_learn_from(augment, problem):
    base = {"n_global": 2, "global_size": 14, "n_local": 0, "local_size": 7, "cutmix_alpha": 0.0}
    config = TrainConfig(objective="contrastive", model=TINY_MODEL, augment=AugmentConfig(**{**base, **augment}))
    with pytest.raises(ValueError, match=problem):
        build_objective(config, n_instances=7, n_classes=3)


def test_classes_are_weighed_only_when_they_are_unequal():
    assert class_weights(torch.tensor([10, 10, 14])) is None  # 1.4x: within the 1.5x the rule allows
    weights = class_weights(torch.tensor([30, 10, 20]))
    assert torch.allclose(weights, torch.tensor([60 / 90, 60 / 30, 60 / 60]))  # N / (C * n_c)
    assert (weights * torch.tensor([30, 10, 20])).unique().numel() == 1  # each class the same total weight
    assert class_weights(torch.tensor([30, 10]), "off") is None
    assert torch.equal(class_weights(torch.tensor([10, 10]), "on"), torch.ones(2))
    assert class_weights(torch.tensor([5, 0, 20]))[1] == 0  # a class with no images weighs nothing
    with pytest.raises(ValueError, match="balance_classes"):
        class_weights(torch.tensor([1, 2]), "sometimes")


def test_weighted_mixed_cross_entropy_is_the_weighted_mean_of_both_targets():
    g = torch.Generator().manual_seed(0)
    logits, target, partner = torch.randn(6, 3, generator=g), torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(6) % 3
    lam = torch.rand(6, generator=g)
    weights = torch.tensor([0.5, 2.0, 1.0])
    # Unmixed (lam = 1) and unsmoothed, it is exactly F.cross_entropy's weighted mean.
    assert torch.allclose(mixed_cross_entropy(logits, target, partner, torch.ones(6), 0.0, weights),
                          F.cross_entropy(logits, target, weight=weights))
    equal = mixed_cross_entropy(logits, target, partner, lam, 0.1, torch.ones(3))
    assert torch.allclose(equal, mixed_cross_entropy(logits, target, partner, lam, 0.1))


def test_a_supervised_run_on_unequal_classes_weighs_them_and_reports_balanced_accuracy():
    from core import events as ev
    from core.data.sources import DataSplits
    from core.trainer.loop import Trainer
    from tests.core.conftest import Recorder, make_splits
    toy = make_splits(n_train=60, n_test=30, classes=3)
    keep = torch.nonzero((toy.train.labels != 2) | (torch.arange(60) < 15)).flatten()  # class 2: 5 of 20 images
    data = DataSplits("toy", toy.train.subset(keep), toy.test)
    config = TrainConfig(dataset="toy", objective="supervised", model=TINY_MODEL, epochs=1, batch_size=16,
                         warmup_epochs=0, knn_k=5, augment=AugmentConfig(n_global=1, global_size=14, n_local=0,
                                                                         local_size=14))
    rec = Recorder()
    trainer = Trainer(config, data)
    trainer.run(rec)
    started, epoch = rec.of(ev.RunStarted)[0], rec.of(ev.EpochMetrics)[-1]
    assert started.class_counts == (20, 20, 5) and started.class_weights and trainer.objective.weighs_classes
    assert 0 <= epoch.knn_balanced <= 1 and 0 <= epoch.test_balanced <= 1
    assert "class_weights" not in trainer.objective.state_dict()  # derived from the data, not saved
    balanced = Trainer(config.with_overrides(balance_classes="off"), data)
    assert not balanced.objective.weighs_classes
