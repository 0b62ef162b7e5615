import threading

import numpy as np
import pytest
import torch

from core.serve import projection
from core.serve.projection import Projector, exact_knn, procrustes_align

# core.projection silences this umap warning process-wide, but pytest restores the warning filters
# around every test.
pytestmark = pytest.mark.filterwarnings("ignore:precomputed_knn\\[2\\]:UserWarning")


def clustered(n_per=200, centres=3, dim=32, noise=1.0, seed=0):
    """Well-separated Gaussian clusters: (centres * n_per, dim) float32 and their labels."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, dim)) * 4.0
    labels = np.repeat(np.arange(centres), n_per)
    points = means[labels] + rng.normal(size=(len(labels), dim)) * noise
    return points.astype(np.float32), labels


def label_agreement_2d(layout, labels, k=10):
    """Mean fraction of each point's k nearest 2-D neighbours sharing its label."""
    d = ((layout[:, None, :] - layout[None, :, :]) ** 2).sum(-1)  # (N, N)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    return (labels[nearest] == labels[:, None]).mean()


@pytest.fixture(scope="module")
def warm_up_seconds():
    """Compile umap's kernels once for this module, from a worker thread as the app does."""
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("s", Projector.warm_up()))
    worker.start()
    worker.join()
    return result["s"]


@pytest.fixture(scope="module")
def blobs():
    return clustered()


@pytest.mark.parametrize("as_tensor", [False, True])
def test_exact_knn_matches_brute_force(as_tensor):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 24)).astype(np.float32)
    k = 7
    indices, distances = exact_knn(torch.from_numpy(x) if as_tensor else x, k)

    unit = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    full = 1.0 - unit @ unit.T  # (N, N) cosine distance
    expected_idx = np.argsort(full, axis=1, kind="stable")[:, :k]
    expected_dist = np.take_along_axis(full, expected_idx, axis=1)

    assert indices.shape == distances.shape == (300, k)
    assert indices.dtype == np.int64 and distances.dtype == np.float32
    assert (indices[:, 0] == np.arange(300)).all()
    assert all(set(a) == set(b) for a, b in zip(indices, expected_idx))
    np.testing.assert_allclose(distances, expected_dist, atol=1e-5)
    assert (np.diff(distances, axis=1) >= 0).all()


def test_exact_knn_puts_self_first_among_duplicates():
    x = np.ones((5, 3), dtype=np.float32)
    indices, distances = exact_knn(x, 3)
    assert (indices[:, 0] == np.arange(5)).all()
    np.testing.assert_allclose(distances, 0.0, atol=1e-6)


def test_exact_knn_rejects_bad_input():
    with pytest.raises(ValueError):
        exact_knn(np.zeros((4, 3)), 5)
    with pytest.raises(ValueError):
        exact_knn(np.array([[1.0, np.nan], [0.0, 1.0]]), 1)


@pytest.mark.parametrize("reflect", [False, True])
def test_procrustes_recovers_similarity_transform(reflect):
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(50, 2))
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if reflect:
        rotation = rotation @ np.diag([1.0, -1.0])
    layout = 3.5 * reference @ rotation + np.array([4.0, -2.0])

    np.testing.assert_allclose(procrustes_align(layout, reference), reference, atol=1e-10)


@pytest.mark.slow
def test_projector_separates_clusters_and_stays_aligned(warm_up_seconds, blobs):
    points, labels = blobs
    projector = Projector()
    first = projector.project(points)
    assert first.shape == (600, 2) and first.dtype == np.float32
    assert np.isfinite(first).all()
    assert label_agreement_2d(first, labels) > 0.95

    nudged = points + np.random.default_rng(3).normal(size=points.shape).astype(np.float32) * 0.05
    second = projector.project(nudged)
    spread = np.sqrt((first ** 2).sum(1).mean())  # RMS radius; ~sqrt(2) for unit variance
    # Points reshuffle inside an isotropic cluster from fit to fit (~0.17 * spread), but the
    # clusters must stay put; an unaligned refit moves them by ~0.25-0.45 * spread.
    centroid_shift = [np.linalg.norm(second[labels == c].mean(0) - first[labels == c].mean(0))
                      for c in np.unique(labels)]
    assert max(centroid_shift) < 0.2 * spread
    assert np.linalg.norm(second - first, axis=1).mean() < 0.25 * spread


@pytest.mark.slow
def test_projector_refits_when_n_changes(warm_up_seconds, blobs):
    points, labels = blobs
    projector = Projector()
    projector.project(points)
    subset = projector.project(points[::2])
    assert subset.shape == (300, 2) and np.isfinite(subset).all()
    assert label_agreement_2d(subset, labels[::2]) > 0.95


@pytest.mark.slow
def test_projector_is_deterministic_after_reset(warm_up_seconds, blobs):
    points, _ = blobs
    projector = Projector(seed=4)
    first = projector.project(points)
    projector.project(points[:-1])
    projector.reset()
    np.testing.assert_array_equal(projector.project(points), first)


def test_projector_warm_starts_and_aligns_each_refresh(monkeypatch):
    # Stand-in fits: the second layout is the first mirrored, scaled and shifted, as a refit may be.
    base = np.random.default_rng(5).normal(size=(40, 2))
    fits = iter([base, -3.0 * base[:, ::-1] + 7.0])
    calls = []

    def fake_fit(unit, n_neighbors, min_dist, seed, init, n_epochs):
        calls.append((init, n_epochs))
        return next(fits).astype(np.float32)

    monkeypatch.setattr(projection, "_fit_umap", fake_fit)
    projector = Projector(n_neighbors=5)
    points = np.random.default_rng(6).normal(size=(40, 8))
    first = projector.project(points)
    second = projector.project(points)

    np.testing.assert_allclose(first.mean(0), 0.0, atol=1e-6)
    np.testing.assert_allclose((first ** 2).mean(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(second, first, atol=1e-5)
    assert isinstance(calls[0][0], str)
    np.testing.assert_array_equal(calls[1][0], first)
    assert calls[1][1] < calls[0][1]


def test_projector_rejects_too_few_points():
    with pytest.raises(ValueError):
        Projector(n_neighbors=15).project(np.random.default_rng(0).normal(size=(10, 4)))


@pytest.mark.slow
def test_warm_up_is_idempotent(warm_up_seconds, monkeypatch):
    assert projection._WARMED.is_set()  # the fixture's call compiled the kernels
    fits = []
    monkeypatch.setattr(projection, "_warm_up_fits", lambda: fits.append("fit"))
    Projector.warm_up()
    Projector.warm_up()
    assert fits == []  # warmed once per process: later calls return without fitting
