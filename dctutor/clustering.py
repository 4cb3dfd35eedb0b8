"""Pseudo-labels by k-means, as in DeepCluster (Caron et al., ECCV 2018, Sec. 3.2-3.4).

Features are PCA-reduced, whitened and L2-normalised (Sec. 3.4), then clustered by k-means
(Eq. 2); only the assignments are kept, as pseudo-labels (Sec. 3.2). An empty cluster is
refilled by splitting a non-empty one (Sec. 3.3). ``backend="torch"`` is the readable Lloyd's
algorithm the chapters teach; ``backend="faiss"`` is the library the paper used, for comparison.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .device import pick_device
from .validation import check_choice, check_int, check_matrix

BACKENDS = ("torch", "faiss")
# Relative size of the split perturbation; faiss uses the same value ("a bit above float16 epsilon").
SPLIT_EPS = 1.0 / 1024


@dataclass
class Reassignment:
    """One empty cluster refilled by splitting a donor cluster (Sec. 3.3); -1 marks what is unknown."""

    iteration: int
    empty: int
    donor: int
    n_moved: int


@dataclass
class KMeansResult:
    """The outcome of :func:`kmeans`. ``labels`` are the pseudo-labels of Sec. 3.2."""

    labels: np.ndarray
    centroids: np.ndarray
    objective: list[float]
    reassignments: list[Reassignment]
    backend: str
    seconds: float

    def cluster_sizes(self) -> np.ndarray:
        """Number of points per cluster, zeros included, shape (k,)."""
        return np.bincount(self.labels, minlength=len(self.centroids))


def pca_whiten(features: np.ndarray | torch.Tensor, dim: int = 256, eps: float = 1e-5) -> np.ndarray | torch.Tensor:
    """Project on the top ``dim`` principal axes, each scaled to unit variance (Sec. 3.4).

    Each axis is divided by sqrt(eigenvalue + eps) of the covariance (divided by n), so the output
    has identity covariance on ``features`` except along axes of variance comparable to ``eps``.
    ``faiss.PCAMatrix(d, dim, eigen_power=-0.5)`` (the paper's) does not divide by n: its output is
    ours / sqrt(n) up to each axis's sign (with its ``epsilon = eps * n``), a factor the L2
    normalisation of :func:`preprocess` removes. ``dim`` is clamped to min(n_samples - 1, n_features):
    centring removes one degree of freedom, so n points span at most n - 1 directions, and whitening
    a direction of zero variance would only blow up rounding noise.

    A numpy array gives a numpy array; a torch tensor gives a tensor on its own device, so features
    extracted on a GPU are whitened there (the eigendecomposition runs in float64 either way).
    """
    x = check_matrix(features, "features")
    check_int(dim, "dim", 1, "dim=256 as in the paper")
    n, d = x.shape
    if n < 2:
        raise ValueError(f"features has n_samples={n}; PCA needs at least 2 rows (one per image)")
    kept = min(dim, n - 1, d)
    if kept < dim:
        warnings.warn(f"dim={dim} asked but min(n_samples - 1={n - 1}, n_features={d}) = {kept}; "
                      f"using dim={kept}", stacklevel=2)
    centred = x - x.mean(0, dtype=torch.float64).float()
    if n >= d:
        eigenvalues, eigenvectors = torch.linalg.eigh((centred.T @ centred).double() / n)
        top = torch.argsort(eigenvalues, descending=True)[:kept]
        projection = eigenvectors[:, top] / torch.sqrt(eigenvalues[top].clamp(min=0.0) + eps)
        out = centred @ projection.float()
    else:
        # Fewer points than features: the n x n Gram matrix X X^T / n has the covariance's non-zero
        # eigenvalues, and an eigenvector u of it gives the principal axis X^T u / sqrt(n l). The
        # projection of the data on that axis, scaled by 1 / sqrt(l + eps), is u * sqrt(n l / (l + eps)):
        # an n x n eigendecomposition instead of a d x d one.
        eigenvalues, eigenvectors = torch.linalg.eigh((centred @ centred.T).double() / n)
        top = torch.argsort(eigenvalues, descending=True)[:kept]
        variances = eigenvalues[top].clamp(min=0.0)
        out = (eigenvectors[:, top] * torch.sqrt(n * variances / (variances + eps))).float()
    return out if isinstance(features, torch.Tensor) else out.numpy()


def preprocess(features: np.ndarray | torch.Tensor, dim: int = 256, eps: float = 1e-5) -> np.ndarray | torch.Tensor:
    """PCA to ``dim``, whiten and L2-normalise every row (Sec. 3.4); float32, shape (n, dim), numpy
    for numpy input and a tensor on the input's device for a tensor.

    Whitening stops a few high-variance directions of the raw features from dominating the
    distances of Eq. 2; normalising puts every image on the unit sphere.
    """
    whitened = torch.as_tensor(pca_whiten(features, dim, eps))
    norms = torch.linalg.vector_norm(whitened, dim=1, keepdim=True)
    # A row equal to the mean whitens to zero; leave it at zero instead of dividing by zero.
    out = whitened / norms.clamp(min=torch.finfo(torch.float32).tiny)
    return out if isinstance(features, torch.Tensor) else out.numpy()


def assign_step(x: torch.Tensor, x_sq: torch.Tensor, centroids: torch.Tensor, chunk_size: int,
            previous: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """The assignment step of Lloyd's algorithm: the nearest centroid of every row of ``x`` (the
    inner min of Eq. 2; ``x_sq`` holds the rows' squared norms), and Eq. 2 for the ``previous``
    labels (nan without them), read off the same scores to spare a pass over ``x`` per iteration.
    Public so that the k-means benchmark can time this step alone."""
    k = len(centroids)
    c_sq = (centroids * centroids).sum(1)
    # Column j weighs j - k < 0, so the smallest weight among the minima is the first one.
    column_weight = torch.arange(k, dtype=torch.float32, device=x.device) - k
    labels = torch.empty(len(x), dtype=torch.long, device=x.device)
    block = torch.empty(min(chunk_size, len(x)), k, device=x.device)
    previous_sse = x_sq.sum(dtype=torch.float64) if previous is not None else torch.tensor(float("nan"))
    for start in range(0, len(x), chunk_size):
        rows = slice(start, min(start + chunk_size, len(x)))
        scores = block[: rows.stop - start]
        # ||x||^2 is the same for every centroid, so the argmin needs ||c||^2 - 2 x.c only: one
        # GEMM per chunk, written into a reused buffer so no (n, k) matrix is ever allocated.
        torch.addmm(c_sq, x[rows], centroids.T, beta=1, alpha=-2, out=scores)
        if previous is not None:
            previous_sse += scores.gather(1, previous[rows, None]).sum(dtype=torch.float64)
        # torch.min(dim=1) tracks an index per comparison and is ~3x slower on CPU than the
        # vectorised amin: take each row's minimum, then the first column equal to it.
        best = scores.amin(dim=1, keepdim=True)
        labels[rows] = scores.eq_(best).mul_(column_weight).amin(dim=1).long() + k
    return labels, float(previous_sse) / len(x)


def _mean_sq_distance(x: torch.Tensor, labels: torch.Tensor, centroids: torch.Tensor,
                      chunk_size: int) -> float:
    """Eq. 2 for ``labels``: the mean squared distance of every point to its cluster's centroid."""
    block = torch.empty(min(chunk_size, len(x)), x.shape[1], device=x.device)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, len(x), chunk_size):
        rows = slice(start, min(start + chunk_size, len(x)))
        diff = torch.index_select(centroids, 0, labels[rows], out=block[: rows.stop - start]).sub_(x[rows])
        total += torch.linalg.vector_norm(diff, dim=1).square().sum(dtype=torch.float64)
    return float(total) / len(x)


def _split(x: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor, centroids: torch.Tensor,
           empty: int, gen: torch.Generator) -> tuple[int, int]:
    """Refill cluster ``empty`` by splitting a donor (Sec. 3.3); returns the donor and points moved.

    Updates ``labels``, ``counts`` and ``centroids`` in place. The donor is drawn with probability
    proportional to (size - 1), like faiss: singletons, which cannot be split, are never drawn and
    big clusters, which cost the most, are split first.
    """
    donor = int(torch.multinomial((counts - 1).clamp(min=0).double().cpu(), 1, generator=gen))
    members = torch.nonzero(labels == donor).flatten()
    points, base = x[members], centroids[donor]
    sign = (torch.randint(0, 2, (x.shape[1],), generator=gen) * 2 - 1).to(x)
    new, old = base * (1 + SPLIT_EPS * sign), base * (1 - SPLIT_EPS * sign)
    margin = ((points - old) ** 2).sum(1) - ((points - new) ** 2).sum(1)
    to_new = margin > 0
    if to_new.all() or not to_new.any():
        # Identical points (or a zero centroid) tie exactly: move the half nearest the new centroid,
        # ties broken at random. Breaking them by position would split identical features by their
        # order in the data set, and a folder listed class by class would leak its classes into the
        # clusters (the results page shows a dead network reaching NMI 0.73 that way).
        shuffle = torch.randperm(len(points), generator=gen).to(margin.device)
        to_new = torch.zeros_like(to_new)
        to_new[shuffle[margin[shuffle].argsort(descending=True, stable=True)[: len(points) // 2]]] = True
    labels[members[to_new]] = empty
    # Recentring both halves makes the split real and can only lower Eq. 2 (each half's mean
    # is its best centroid), so the objective keeps decreasing across reassignments too.
    centroids[empty], centroids[donor] = points[to_new].mean(0), points[~to_new].mean(0)
    counts[empty], counts[donor] = int(to_new.sum()), int((~to_new).sum())
    return donor, int(counts[empty])


def _kmeans_torch(x: torch.Tensor, k: int, n_iter: int, seed: int, device: torch.device,
                  reassign_empty: bool, init: torch.Tensor | None, chunk_size: int):
    # Random choices come from one CPU generator, so CPU and GPU runs draw the same ones.
    gen = torch.Generator().manual_seed(seed)
    x = x.to(device).contiguous()
    if init is None:
        centroids = x[torch.randperm(len(x), generator=gen)[:k].to(device)].clone()
    else:
        centroids = init.to(device).clone()
    # Constant across iterations, so computed once; vector_norm is ~20x faster than (x * x).sum(1).
    x_sq = torch.linalg.vector_norm(x, dim=1).square_()
    objective: list[float] = []
    reassignments: list[Reassignment] = []
    labels = None
    for iteration in range(n_iter):
        previous = labels
        labels, previous_objective = assign_step(x, x_sq, centroids, chunk_size, previous)
        if previous is not None:
            objective.append(previous_objective)  # Eq. 2 after the previous iteration
            if torch.equal(labels, previous):
                # A fixed point: the centroids are already these labels' means, so every further
                # iteration would repeat this one. Record it once and stop, as faiss does.
                objective.append(previous_objective)
                break
        counts = torch.bincount(labels, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        filled = counts > 0
        # An empty cluster keeps its centroid; with reassign_empty=False it stays where it emptied.
        centroids = torch.where(filled[:, None], sums / counts.clamp(min=1)[:, None], centroids)
        if reassign_empty:
            for empty in torch.nonzero(~filled).flatten().tolist():
                donor, moved = _split(x, labels, counts, centroids, empty, gen)
                reassignments.append(Reassignment(iteration, empty, donor, moved))
    else:  # no fixed point: Eq. 2 after the last iteration needs a pass of its own
        objective.append(_mean_sq_distance(x, labels, centroids, chunk_size))
    return labels.cpu().numpy(), centroids.cpu().numpy(), objective, reassignments


def _import_faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError("backend='faiss' needs faiss, which is not installed: pip install 'dctutor[cpu]' "
                          "(or 'dctutor[gpu]' on a CUDA machine), or use backend='torch'") from None
    return faiss


def _kmeans_faiss(x: torch.Tensor, k: int, n_iter: int, seed: int, device: torch.device,
                  init: torch.Tensor | None):
    faiss = _import_faiss()
    data = np.ascontiguousarray(x.cpu().numpy())
    # faiss takes a 32-bit seed; the loop's per-epoch seeds have 63 bits, so fold them into range.
    km = faiss.Kmeans(data.shape[1], k, niter=n_iter, seed=seed % 2**31,
                      gpu=device.type == "cuda" and faiss.get_num_gpus() > 0,
                      # DeepCluster clusters every image; by default faiss subsamples 256 per centroid.
                      max_points_per_centroid=len(data), min_points_per_centroid=1)
    km.train(data, init_centroids=None if init is None else init.cpu().numpy())
    dist, labels = km.index.search(data, 1)
    # faiss's obj[i] is the SSE of iteration i's assignment step, i.e. of the centroids left by
    # iteration i - 1; shift by one and close with the final assignment so that objective[i]
    # is measured after iteration i, like the torch backend.
    sse = [float(s["obj"]) for s in km.iteration_stats[1:]] + [float(dist.sum(dtype=np.float64))]
    # faiss splits in C++ and reports only how many per iteration, not which clusters.
    reassignments = [Reassignment(i, -1, -1, -1) for i, s in enumerate(km.iteration_stats)
                     for _ in range(int(s.get("nsplit", 0)))]
    objective = [s / len(data) for s in sse]
    return labels[:, 0].astype(np.int64), km.centroids.astype(np.float32), objective, reassignments


def kmeans(x: np.ndarray | torch.Tensor, k: int, n_iter: int = 20, seed: int = 0, backend: str = "torch",
           device: str | torch.device | None = None, reassign_empty: bool = True,
           init: np.ndarray | torch.Tensor | None = None, chunk_size: int = 4096) -> KMeansResult:
    """Cluster the rows of ``x`` into ``k`` groups with Lloyd's k-means (Eq. 2, Sec. 3.2-3.3).

    Each iteration assigns every point to its nearest centroid, moves each centroid to the mean
    of its points and, with ``reassign_empty``, refills every empty cluster by splitting a donor
    (Sec. 3.3). ``objective[i]`` is the mean squared distance of the points to their cluster's
    centroid after iteration ``i``. Both backends stop before ``n_iter`` once the assignments stop
    changing, so ``objective`` can be shorter.

    ``backend="torch"`` starts from ``k`` distinct random points (or ``init``), records every split
    in ``reassignments`` and returns the labels of its last iteration, whose means are
    ``centroids``: no cluster is empty. On CPU a seed gives the same result bit for bit (same
    machine and thread count). ``chunk_size`` rows are scored per matrix product (memory:
    chunk_size * k floats).

    ``backend="faiss"`` runs ``faiss.Kmeans`` on every point (on GPU when ``device`` is CUDA and
    faiss has GPUs) and labels points by their nearest final centroid. faiss always splits empty
    clusters (donor drawn like ours, fixed +-eps pattern, no recentring) and reports only how many
    per iteration, so its ``Reassignment`` records carry -1 for empty, donor and n_moved. It stops
    once its objective is unchanged between two iterations, so its iteration count can differ.
    """
    data = check_matrix(x, "x")
    n, d = data.shape
    check_int(k, "k", 1, "k=100")
    if k > n:
        raise ValueError(f"k={k} but only n={n} points; lower k or use more images")
    check_int(n_iter, "n_iter", 1, "n_iter=20")
    check_int(seed, "seed", 0, "seed=0")
    check_int(chunk_size, "chunk_size", 1, "chunk_size=4096")
    check_choice(backend, "backend", BACKENDS)
    if backend == "faiss" and not reassign_empty:
        raise ValueError("reassign_empty=False needs backend='torch'; faiss always splits empty clusters")
    start_centroids = None if init is None else check_matrix(init, "init")
    if start_centroids is not None and tuple(start_centroids.shape) != (k, d):
        raise ValueError(f"init has shape {tuple(start_centroids.shape)} but k={k} centroids of dimension "
                         f"d={d} are needed; pass an array of shape ({k}, {d})")
    chosen = pick_device(device)
    start = time.perf_counter()
    if backend == "torch":
        out = _kmeans_torch(data, k, n_iter, seed, chosen, reassign_empty, start_centroids, chunk_size)
    else:
        out = _kmeans_faiss(data, k, n_iter, seed, chosen, start_centroids)
    return KMeansResult(*out, backend=backend, seconds=time.perf_counter() - start)
