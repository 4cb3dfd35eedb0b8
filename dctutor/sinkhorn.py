"""Pseudo-labels of equal size by optimal transport: the labeller of SeLa (Asano et al., ICLR 2020).

k-means lets clusters grow and shrink freely, so DeepCluster needs two defences against a
degenerate partition (empty-cluster reassignment and uniform sampling, Sec. 3.3 of the paper).
SeLa removes the cause instead: it asks for the labelling that agrees best with the scores while
putting exactly n / k images in every cluster. Relaxed to soft assignments ``Q`` with an entropy
term, that is an optimal-transport problem,

    max_Q  <Q, S> + epsilon * H(Q)   with rows summing to 1 / n and columns to 1 / k,

whose solution is ``Q = diag(u) exp(S / epsilon) diag(v)``; Sinkhorn-Knopp finds ``u`` and ``v`` by
scaling rows and columns in turn (:func:`sinkhorn`). Small ``epsilon`` gives nearly hard labels.

SeLa scores images with the network's own classifier; here the scores are cosine similarities
between the features and centroids that are re-estimated from the plan, so that this labeller is a
drop-in replacement for :func:`dctutor.clustering.kmeans`, features in and labels out (the book's
protocol page lists this departure). Without the size constraint the same iteration is spherical
k-means.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from .clustering import KMeansResult
from .device import pick_device
from .validation import check_float, check_int, check_matrix


def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, n_iter: int = 3) -> torch.Tensor:
    """The entropic optimal-transport plan for ``scores`` (n, k) with uniform marginals: an (n, k)
    tensor whose rows each sum to 1 (one image's soft label) and whose columns each hold n / k
    images, up to the convergence that ``n_iter`` row-and-column scalings reach.

    Computed in log space, so ``epsilon`` may be small without overflow (the scores are divided by
    it). SwAV uses ``epsilon=0.05`` and 3 iterations, enough for the soft targets it trains on;
    SeLa runs to convergence. Hard labels (each row's largest entry) need the columns nearly
    balanced, which takes more: :func:`equal_partition` uses 10 by default.
    """
    check_float(epsilon, "epsilon", 0, "epsilon=0.05", strict_low=True)
    check_int(n_iter, "n_iter", 1, "n_iter=3")
    n, k = scores.shape
    log_q = scores.double() / epsilon
    for _ in range(n_iter):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - np.log(k)  # each column: 1 / k
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - np.log(n)  # each row: 1 / n
    return (log_q + np.log(n)).exp().float()


def equal_partition(x: np.ndarray | torch.Tensor, k: int, n_iter: int = 20, seed: int = 0, *,
                    epsilon: float = 0.05, sinkhorn_iters: int = 10,
                    device: str | torch.device | None = None) -> KMeansResult:
    """Split the rows of ``x`` (L2-normalised features, e.g. :func:`dctutor.clustering.preprocess`)
    into ``k`` clusters of about equal size.

    Starts from ``k`` distinct random rows as centroids; each of the ``n_iter`` iterations scores
    every row against every centroid (cosine similarity), balances the scores into a transport
    plan with :func:`sinkhorn` and moves each centroid to the plan-weighted mean of the rows,
    normalised. The labels are each row's largest entry of the last plan, so the sizes are equal
    up to that rounding. ``objective`` holds the mean cosine similarity of the rows to their
    cluster's centroid after each iteration (higher is better); ``reassignments`` is empty, because
    no cluster can empty out.
    """
    data = check_matrix(x, "x")
    n, _ = data.shape
    check_int(k, "k", 2, "k=100")
    if k > n:
        raise ValueError(f"k={k} but only n={n} points; lower k or use more images")
    check_int(n_iter, "n_iter", 1, "n_iter=20")
    check_int(seed, "seed", 0, "seed=0")
    start = time.perf_counter()
    points = torch.as_tensor(data, dtype=torch.float32).to(pick_device(device))
    generator = torch.Generator().manual_seed(seed)
    centroids = points[torch.randperm(n, generator=generator)[:k].to(points.device)]
    objective = []
    for _ in range(n_iter):
        plan = sinkhorn(points @ centroids.T, epsilon, sinkhorn_iters)
        labels = plan.argmax(1)
        centroids = torch.nn.functional.normalize(plan.T @ points, dim=1)
        objective.append(float((points * centroids[labels]).sum(1).mean()))
    return KMeansResult(labels.cpu().numpy().astype(np.int64), centroids.cpu().numpy(), objective, [],
                        backend="sinkhorn", seconds=time.perf_counter() - start)
