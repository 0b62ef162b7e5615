"""2-D UMAP projections of embedding snapshots that evolve smoothly during training.

Speed: umap-learn's default fit of 2,040 points spends most of its 5-18 s (depending on how
busy the cores are) computing pairwise distances for its neighbour graph in Python. We
compute the exact cosine kNN with one torch matmul instead and hand it to umap as
`precomputed_knn`, warm-start each refresh from the previous layout with few epochs, and
Procrustes-align the result so successive pictures do not rotate, flip or jump.
"""
from __future__ import annotations

import csv
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# Epochs of SGD, which is ~70% of a refresh's time. A fresh fit must unfold a spectral
# initialisation; a refresh starts from a layout that is already close. On 2,040 clustered
# points 40 warm epochs kept cluster separation and frame-to-frame jitter the same as 50-80
# while costing ~0.25 s of CPU (50: ~0.32 s), leaving margin under the 0.5 s bar on shared cores.
_FRESH_EPOCHS = 200
_WARM_EPOCHS = 40

# Rows of the similarity matrix per matmul, so memory stays ~64 MiB whatever N is.
_KNN_BLOCK_ELEMENTS = 1 << 24

# umap warns on every fit with a precomputed kNN that `transform` is unavailable without an
# NNDescent index; we never call `transform`. A narrow global filter rather than
# `catch_warnings`, because the latter is not thread-safe and we run in a worker thread.
warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)

_WARM_LOCK = threading.Lock()
_WARMED = threading.Event()


def _unit_rows(embeddings: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, D) array or tensor -> finite, L2-normalised float32 (N, D) tensor.

    Tensors on an accelerator stay there for the kNN matmul.
    """
    if isinstance(embeddings, torch.Tensor) and embeddings.device.type != "cpu":
        x = embeddings.detach().to(torch.float32)
        _check_rows(x.shape, bool(torch.isfinite(x).all()))
        return F.normalize(x, dim=1)
    # CPU data is prepared in numpy: with 2 cores shared with other jobs, torch's two-thread
    # OpenMP elementwise kernels measured ~100x slower here (70 ms vs 0.7 ms to check finiteness).
    if isinstance(embeddings, torch.Tensor):
        embeddings = embeddings.detach().to(torch.float32).numpy()
    x = np.asarray(embeddings, dtype=np.float32)
    _check_rows(x.shape, bool(np.isfinite(x).all()))
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
    return torch.from_numpy(x / np.maximum(norms, 1e-12))


def _check_rows(shape: tuple[int, ...], finite: bool) -> None:
    if len(shape) != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {tuple(shape)}")
    if not finite:
        raise ValueError("embeddings contain NaN or inf")


@torch.no_grad()
def exact_knn(embeddings: np.ndarray | torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by cosine distance, each point its own first neighbour.

    Returns (indices int64 (N, k), distances float32 (N, k)), ascending distance, which is
    the layout umap-learn expects for `precomputed_knn`.
    """
    x = _unit_rows(embeddings)
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    block = max(1, _KNN_BLOCK_ELEMENTS // n)
    indices, distances = [], []
    for start in range(0, n, block):
        sims = x[start:start + block] @ x.T  # (B, N)
        rows = torch.arange(sims.shape[0], device=sims.device)
        # Above any real cosine similarity, so self wins even against exact duplicates.
        sims[rows, rows + start] = 2.0
        top_sims, top_idx = sims.topk(k, dim=1)  # (B, k), descending similarity
        indices.append(top_idx)
        distances.append((1.0 - top_sims).clamp_(min=0.0))  # self: 1 - 2 clamps to 0
    return (torch.cat(indices).cpu().numpy().astype(np.int64),
            torch.cat(distances).cpu().numpy().astype(np.float32))


def procrustes_align(layout: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Map `layout` (N, 2) onto `reference` (N, 2) by rotation/reflection, uniform scale and shift.

    Orthogonal Procrustes via SVD; reflections are allowed because UMAP is free to mirror a
    layout between fits. Returns the aligned float64 (N, 2).
    """
    x = np.asarray(layout, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"layout {x.shape} and reference {y.shape} must be the same (N, d)")
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    norm_sq = float((xc ** 2).sum())
    if norm_sq == 0.0:  # all points coincide: nothing to rotate or scale
        return np.broadcast_to(y_mean, x.shape).copy()
    u, s, vt = np.linalg.svd(xc.T @ yc)  # (d, d) cross-covariance
    rotation = u @ vt
    scale = s.sum() / norm_sq  # least-squares optimal given the rotation
    return scale * xc @ rotation + y_mean


def _standardise(layout: np.ndarray) -> np.ndarray:
    """Centre (N, 2) at the origin with unit variance per coordinate, aspect ratio kept."""
    centred = layout - layout.mean(axis=0)
    rms = float(np.sqrt((centred ** 2).mean()))
    return centred / rms if rms > 0 else centred


def _umap_class():
    # Deferred: importing umap-learn (numba, pynndescent) takes seconds, which would otherwise
    # be paid by whoever imports this module, e.g. the UI thread at start-up.
    from umap import UMAP
    return UMAP


def _fit_umap(unit: np.ndarray, n_neighbors: int, min_dist: float, seed: int,
              init: str | np.ndarray, n_epochs: int) -> np.ndarray:
    """One umap-learn fit of L2-normalised (N, D) rows on our exact kNN -> float32 (N, 2)."""
    knn_indices, knn_dists = exact_knn(unit, n_neighbors)
    reducer = _umap_class()(
        n_neighbors=n_neighbors, min_dist=min_dist, n_epochs=n_epochs, init=init,
        # umap uses its metric besides the kNN graph (placing disconnected clusters in the
        # spectral init, the default disconnection distance), so it must be the cosine our
        # kNN distances are in; euclidean on unit rows would rank neighbours identically but
        # on a different distance scale.
        metric="cosine", precomputed_knn=(knn_indices, knn_dists, None),
        # Never cut a kNN edge: a point left without edges is placed at NaN.
        disconnection_distance=np.inf,
        # A seed forces umap single-threaded. On 2 shared cores that measured faster than
        # its parallel kernel (refresh 0.30 s vs 0.54 s), and it is deterministic.
        random_state=seed, n_jobs=1,
    )
    return reducer.fit_transform(unit)


class Projector:
    """Turns successive (N, D) embedding snapshots into 2-D layouts that evolve smoothly.

    Stateful (remembers the last layout), so use one instance from one thread at a time.
    """

    def __init__(self, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0):
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.seed = seed
        self._layout: np.ndarray | None = None  # (N, 2) float32, the last layout returned

    def project(self, embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, D) embeddings -> (N, 2) float32 layout, centred with unit variance per axis.

        Warm-starts from the previous layout when N is unchanged and aligns to it; a new N
        (or the first call) gets a fresh fit.
        """
        unit = _unit_rows(embeddings).cpu().numpy()  # (N, D) float32
        n = unit.shape[0]
        if n <= self.n_neighbors:
            raise ValueError(f"need more than n_neighbors={self.n_neighbors} points, got {n}")
        if self._layout is not None and len(self._layout) != n:
            self.reset()
        previous = self._layout
        init = "spectral" if previous is None else previous
        epochs = _FRESH_EPOCHS if previous is None else _WARM_EPOCHS
        raw = _fit_umap(unit, self.n_neighbors, self.min_dist, self.seed, init, epochs)
        layout = _standardise(raw.astype(np.float64))
        if previous is not None:
            # Re-standardise: Procrustes' least-squares scale is < 1 whenever the fit is
            # imperfect, which would shrink the picture refresh after refresh.
            layout = _standardise(procrustes_align(layout, previous))
        self._layout = layout.astype(np.float32)
        return self._layout.copy()

    def reset(self) -> None:
        """Forget the previous layout; the next projection is a fresh fit."""
        self._layout = None

    @staticmethod
    def warm_up() -> float:
        """Compile umap's numba kernels once per process; returns the seconds this call took.

        Thread-safe and idempotent: later (or concurrent) calls wait for the first to finish
        and then return without fitting.
        """
        start = time.perf_counter()
        with _WARM_LOCK:
            if not _WARMED.is_set():
                _warm_up_fits()
                _WARMED.set()
        return time.perf_counter() - start


def _warm_up_fits() -> None:
    """A fresh and a warm-started fit on 300 points, through the same code path as real use."""
    rng = np.random.default_rng(0)
    # Separated clusters give a disconnected kNN graph, so umap also compiles the
    # multi-component spectral initialisation that real class-structured snapshots reach.
    centres = rng.normal(size=(3, 16)) * 10.0
    points = centres.repeat(100, axis=0) + rng.normal(size=(300, 16))  # (300, 16)
    projector = Projector()
    projector.project(points)
    projector.project(points)


def write_layout_csv(path: str | Path, xy: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                     names: Sequence[str] = ()) -> Path:
    """A layout as CSV, a row per training image: x, y, label (its class's name), index, and its file where the
    source has files (empty otherwise): what a person needs to find duplicates or label by cluster."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(("x", "y", "label", "index", "file"))
        for index, ((x, y), label) in enumerate(zip(np.asarray(xy).tolist(), np.asarray(labels).tolist())):
            name = class_names[label] if 0 <= label < len(class_names) else f"class {label}"
            writer.writerow((f"{x:.6g}", f"{y:.6g}", name, index, names[index] if names else ""))
    return path
