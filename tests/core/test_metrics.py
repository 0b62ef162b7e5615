import math

import pytest
import torch
import torch.nn.functional as F

from core.metrics import (
    balanced_accuracy,
    chance,
    confusion_accuracy,
    confusion_matrix,
    knn_accuracy,
    knn_predict,
    knn_votes,
    linear_probe,
    per_class_recall,
)


def slow_knn(train, train_labels, query, n_classes, k, temperature):
    scores = []
    for q in query:
        sims = [(F.cosine_similarity(q, t, dim=0).item(), int(label)) for t, label in zip(train, train_labels)]
        sims.sort(key=lambda pair: -pair[0])
        votes = [0.0] * n_classes
        for sim, label in sims[:k]:
            votes[label] += math.exp(sim / temperature)
        scores.append(votes)
    return torch.tensor(scores)


def test_knn_matches_the_slow_reference_and_is_chunk_invariant():
    g = torch.Generator().manual_seed(0)
    train, query = torch.randn(50, 6, generator=g), torch.randn(17, 6, generator=g)
    labels = torch.randint(0, 3, (50,), generator=g)
    fast = knn_predict(train, labels, query, 3, k=7, temperature=0.5)
    slow = slow_knn(train, labels, query, 3, 7, 0.5)
    # Votes are defined up to one factor per query (each row is shifted by its best similarity).
    assert torch.allclose(fast / fast.sum(1, keepdim=True), slow / slow.sum(1, keepdim=True), rtol=1e-4)
    assert torch.equal(fast.argmax(1), slow.argmax(1))
    assert torch.allclose(fast, knn_predict(train, labels, query, 3, k=7, temperature=0.5, chunk=4))


def test_knn_votes_stay_finite_at_a_temperature_where_exp_would_overflow():
    similarity = torch.tensor([[1.0, 0.99, -0.5]])
    votes = knn_votes(similarity, torch.tensor([0, 1, 1]), 2, k=3, temperature=0.005)
    assert torch.isfinite(votes).all() and votes.argmax().item() == 0
    assert torch.allclose(votes / votes.sum(), torch.tensor([[1 / (1 + math.exp(-2.0)), 1 - 1 / (1 + math.exp(-2.0))]]))


def test_knn_accuracy_on_separable_and_on_shuffled_labels():
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(4, 16, generator=g) * 5
    labels = torch.arange(200) % 4
    feats = centers[labels] + torch.randn(200, 16, generator=g)
    assert knn_accuracy(feats[:100], labels[:100], feats[100:], labels[100:], 4, k=5) == 1.0
    shuffled = labels[:100][torch.randperm(100, generator=g)]
    assert knn_accuracy(feats[:100], shuffled, feats[100:], labels[100:], 4, k=5) < 0.6


def test_linear_probe_separates_separable_classes_and_fails_on_noise():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 3
    labels = torch.arange(300) % 3
    features = centres[labels] + torch.randn(300, 16, generator=g)
    assert linear_probe(features[:200], labels[:200], features[200:], labels[200:], 3) > 0.95
    shuffled = labels[torch.randperm(300, generator=g)]  # labels unrelated to the features
    assert linear_probe(features[:200], shuffled[:200], features[200:], shuffled[200:], 3) < 0.55


def test_linear_probe_agrees_with_sklearns_logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(4, 8, generator=g)
    labels = torch.arange(400) % 4
    features = centres[labels] + 1.2 * torch.randn(400, 8, generator=g)  # overlapping classes
    ours = linear_probe(features[:300], labels[:300], features[300:], labels[300:], 4)
    scaler = StandardScaler().fit(features[:300].numpy())
    reference = LogisticRegression(max_iter=2000).fit(scaler.transform(features[:300].numpy()), labels[:300].numpy())
    theirs = reference.score(scaler.transform(features[300:].numpy()), labels[300:].numpy())
    assert abs(ours - theirs) <= 0.03


def test_confusion_matrix_and_per_class_recall():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    predicted = torch.tensor([0, 1, 1, 1, 0, 2])
    confusion = confusion_matrix(predicted, labels, 4)
    assert confusion.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    recall = per_class_recall(confusion)
    assert recall[:3].tolist() == [0.5, 2 / 3, 1.0] and torch.isnan(recall[3])
    assert confusion_accuracy(confusion) == pytest.approx(4 / 6)
    # Balanced accuracy weighs each present class once (the absent fourth is left out).
    assert abs(balanced_accuracy(confusion) - (0.5 + 2 / 3 + 1.0) / 3) < 1e-12


def test_balanced_accuracy_sees_a_minority_class_traded_away():
    labels = torch.tensor([0] * 90 + [1] * 10)
    always_majority = torch.zeros(100, dtype=torch.long)
    confusion = confusion_matrix(always_majority, labels, 2)
    assert confusion_accuracy(confusion) == pytest.approx(0.9) and balanced_accuracy(confusion) == 0.5


@pytest.mark.parametrize("counts", [(25, 25, 25, 25), (320, 226, 160, 113, 80), (7, 0, 30)])
def test_chance_is_what_guessing_scores_in_balanced_accuracy_and_its_spread(counts):
    """A guesser's balanced accuracy, drawn many times: its mean is 1/C (classes present) and its standard
    deviation the standard error `chance` gives, within the draws' own noise."""
    level, error = chance(counts)
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    present = torch.tensor([c for c, n in enumerate(counts) if n])  # a guesser names one of these at random
    generator = torch.Generator().manual_seed(0)

    def guessed() -> float:
        guesses = present[torch.randint(0, len(present), (len(labels),), generator=generator)]
        return balanced_accuracy(confusion_matrix(guesses, labels, len(counts)))

    scores = torch.tensor([guessed() for _ in range(4000)], dtype=torch.float64)
    assert level == pytest.approx(1 / len(present))
    assert scores.mean().item() == pytest.approx(level, abs=4 * error / math.sqrt(4000))
    assert scores.std().item() == pytest.approx(error, rel=0.06)
