"""Chapter 7's measurements: the two labellers on the same features, and how cluster ids move
between epochs under each head."""
from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..clustering import kmeans
from ..metrics import cluster_stats, nmi
from ..prototypes import match_labels
from ..sinkhorn import equal_partition

SEAMS = {"v1: kmeans + reinit": {"labeller": "kmeans", "head": "reinit"},
         "kmeans + prototypes (v2)": {"labeller": "kmeans", "head": "prototypes"},
         "sinkhorn + reinit": {"labeller": "sinkhorn", "head": "reinit"},
         "sinkhorn + prototypes": {"labeller": "sinkhorn", "head": "prototypes"}}


def compare_labellers(x: np.ndarray, k: int, seeds: Sequence[int], *, n_iter: int = 20, epsilon: float = 0.05,
                      sinkhorn_iters: int = 10, device: str = "auto") -> list[dict]:
    """k-means and the Sinkhorn labeller on the same whitened features ``x``, once per seed: rows
    ``labeller``, ``seed``, ``seconds``, the sorted cluster ``sizes`` and the size statistics of
    :func:`dctutor.metrics.cluster_stats` (``largest``, ``n_effective``, ``n_empty``, ...)."""
    rows = []
    for seed in seeds:
        for name, label in (("kmeans", lambda: kmeans(x, k, n_iter=n_iter, seed=seed, device=device)),
                            ("sinkhorn", lambda: equal_partition(x, k, n_iter=n_iter, seed=seed, epsilon=epsilon,
                                                                 sinkhorn_iters=sinkhorn_iters, device=device))):
            start = time.perf_counter()
            labels = label().labels
            seconds = time.perf_counter() - start
            stats = cluster_stats(labels, k)
            rows.append(stats | {"labeller": name, "seed": seed, "seconds": seconds,
                                 "sizes": np.sort(stats["sizes"])[::-1]})
    return rows


def id_changes(labels_per_epoch: Sequence[np.ndarray], k: int) -> list[dict]:
    """For each pair of consecutive clusterings: ``changed``, the share of images whose id differs;
    ``moved``, the same after renaming the later ids to agree best with the earlier ones
    (:func:`dctutor.prototypes.match_labels`), the share that really changed cluster; and
    ``nmi_prev``, NMI between the two, which ignores names altogether."""
    rows = []
    for epoch, (before, after) in enumerate(zip(labels_per_epoch, labels_per_epoch[1:]), start=1):
        rows.append({"epoch": epoch, "changed": float((before != after).mean()),
                     "moved": float((match_labels(before, after, k) != before).mean()),
                     "nmi_prev": nmi(before, after)})
    return rows


def seam_settings(*, sinkhorn_epsilon: float, sinkhorn_iters: int, temperature: float) -> dict[str, dict]:
    """:data:`SEAMS` with each combination's own options filled in: the Sinkhorn ones where the
    labeller is Sinkhorn, the temperature where the head is the prototypes. A run never carries an
    option its seams would ignore (the config refuses those)."""
    out = {}
    for name, fields in SEAMS.items():
        extra = {}
        if fields["labeller"] == "sinkhorn":
            extra |= {"sinkhorn_epsilon": sinkhorn_epsilon, "sinkhorn_iters": sinkhorn_iters}
        if fields["head"] == "prototypes":
            extra["temperature"] = temperature
        out[name] = fields | extra
    return out
