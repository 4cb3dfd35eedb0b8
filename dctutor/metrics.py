"""The numbers the book reports, each defined once: NMI, cluster-size statistics, AP and mAP.

* :func:`nmi` is the paper's normalised mutual information (Sec. 4.1), used against the true
  labels (Fig. 2a) and between consecutive epochs (Fig. 2b).
* :func:`cluster_stats` says how evenly pseudo-labels fill their k clusters (Sec. 3.3's
  trivial solutions show up here first).
* :func:`correlation` is Pearson's r with a Fisher-z confidence interval, for the few-seed
  scatter plots of chapter 6 (initial alignment against accuracy);
* :func:`average_precisions` and :func:`mean_average_precision` score VOC 2007 classification
  (Sec. 4.4, Table 2): scikit-learn's AP, the one both reference implementations use, or the VOC
  2007 devkit's 11-point AP for comparison.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from sklearn.metrics import average_precision_score, normalized_mutual_info_score

from .validation import check_choice, check_float, check_int, check_labels


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """The paper's NMI (Sec. 4.1): I(A;B) / sqrt(H(A) H(B)), scikit-learn's ``average_method="geometric"``.

    0 for independent labellings, 1 for identical ones up to a renaming of the ids.
    """
    a, b = check_labels(a, "a"), check_labels(b, "b")
    if len(a) != len(b):
        raise ValueError(f"the two labellings have {len(a)} and {len(b)} entries; pass one label per image in both")
    return float(normalized_mutual_info_score(a, b, average_method="geometric"))


def cluster_stats(labels: np.ndarray, k: int) -> dict:
    """How ``labels`` fill ``k`` clusters.

    ``n_empty``; ``size_min``/``size_max``; ``largest``: the fraction of the images in the biggest
    cluster; ``n_effective``: exp of the entropy of the size distribution, k when all clusters are
    equal and 1 when one holds everything; ``sizes``: the k sizes, as a list.
    """
    labels = check_labels(labels)
    check_int(k, "k", 1, "k=100")
    sizes = np.bincount(labels, minlength=k)
    if len(sizes) != k:
        raise ValueError(f"labels go up to {len(sizes) - 1} but k={k}; pass the k the labels came from")
    p = sizes[sizes > 0] / sizes.sum()
    return {"n_empty": int((sizes == 0).sum()), "size_min": int(sizes.min()), "size_max": int(sizes.max()),
            "largest": float(sizes.max() / sizes.sum()), "n_effective": float(np.exp(-(p * np.log(p)).sum())),
            "sizes": sizes.tolist()}


def correlation(x: np.ndarray, y: np.ndarray, level: float = 0.95) -> dict:
    """Pearson's r between ``x`` and ``y`` with its confidence interval at ``level`` (Fisher's z).

    atanh(r) is close to normal with standard error 1 / sqrt(n - 3) for bivariate normal data, so
    the interval is tanh(atanh(r) -+ z / sqrt(n - 3)). With a handful of points it is wide, which
    is the point of printing it. Returns ``{"r", "low", "high", "n"}``; the bounds are NaN below
    n = 4, and r is NaN when either variable is constant.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x {x.shape} and y {y.shape} must be two 1-d arrays of the same length")
    check_int(len(x), "len(x)", 2, "two values per variable at least")
    check_float(level, "level", 0, "level=0.95", high=1, strict_low=True, strict_high=True)
    if x.std() == 0 or y.std() == 0:
        return {"r": float("nan"), "low": float("nan"), "high": float("nan"), "n": len(x)}
    r = float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))
    if len(x) < 4 or abs(r) == 1.0:
        low = high = float("nan") if len(x) < 4 else r
    else:
        half = NormalDist().inv_cdf(0.5 + level / 2) / math.sqrt(len(x) - 3)
        low, high = math.tanh(math.atanh(r) - half), math.tanh(math.atanh(r) + half)
    return {"r": r, "low": low, "high": high, "n": len(x)}


def voc07_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """The VOC2007 devkit's 11-point interpolated AP of one class.

    Precision is interpolated (the best precision at any recall >= r) and averaged over the 11
    recall levels r = 0, 0.1, ..., 1. ``labels`` are 0/1; the entries to ignore must already be
    removed. NaN when there is no positive.
    """
    scores, labels = np.asarray(scores, float), np.asarray(labels) > 0
    if labels.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    recall = tp / labels.sum()
    precision = tp / np.arange(1, len(scores) + 1)
    points = [precision[recall >= r].max() if (recall >= r).any() else 0.0 for r in np.linspace(0, 1, 11)]
    return float(np.mean(points))


def average_precisions(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None, *,
                       method: str = "sklearn") -> np.ndarray:
    """Per-class AP (C,) of ``scores`` (N, C) against 0/1 ``targets`` (N, C), skipping entries where
    ``mask`` is 0. ``method="sklearn"`` is scikit-learn's ``average_precision_score`` (no
    interpolation); ``"voc07"`` is :func:`voc07_ap`. A class with no positive left gets NaN."""
    scores, targets = np.asarray(scores, float), np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must be the same (N, C) shape")
    mask = np.ones_like(targets) if mask is None else np.asarray(mask)
    if mask.shape != targets.shape:
        raise ValueError(f"mask {mask.shape} must have the shape of targets {targets.shape}")
    check_choice(method, "method", ("sklearn", "voc07"))
    aps = np.full(targets.shape[1], np.nan)
    for c in range(targets.shape[1]):
        keep = mask[:, c] > 0
        y, s = targets[keep, c] > 0, scores[keep, c]
        if y.sum() == 0:
            continue
        aps[c] = average_precision_score(y, s) if method == "sklearn" else voc07_ap(s, y)
    return aps


def mean_average_precision(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None, *,
                           method: str = "sklearn") -> float:
    """mAP: the mean of :func:`average_precisions` over the classes that have a positive."""
    aps = average_precisions(scores, targets, mask, method=method)
    if np.isnan(aps).all():
        raise ValueError("no class has a positive example among the unmasked entries; mAP is undefined")
    return float(np.nanmean(aps))
