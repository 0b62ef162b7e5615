import math

import torch

from core.objectives import OBJECTIVES, InstanceDiscrimination, build_objective, mixed_cross_entropy


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


def test_registry_builds_by_name():
    assert "instance" in OBJECTIVES
    objective = build_objective("instance", dim=4, n_instances=7, n_classes=3, label_smoothing=0.0)
    assert isinstance(objective, InstanceDiscrimination) and objective.head.out_features == 7
