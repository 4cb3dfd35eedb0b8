"""Initial alignment: how far the k-means clusters of a *random* network already follow the labels.

DeepCluster starts from a randomly initialised network and bootstraps on the weak signal its
convolutional structure carries (paper Sec. 3.2). Mustapha, Khreich and Masri (2022, Sec. 4.1.1)
name the NMI between the true labels and k-means on such a network's features the *initial
alignment* IA(theta, k): it depends on the random weights theta (the seed) and on k, and across
seeds it tracks the accuracy the trained network reaches (their Sec. 4.1.2, Fig. 3); its
distribution over seeds can rank values of k before any training (their Sec. 4.3).
:func:`initial_alignment` measures it: one forward pass and one k-means per seed, the same
preprocessing as the loop (PCA-whitening and L2, Sec. 3.4).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from .clustering import kmeans, preprocess
from .data import ImageDataset
from .features import extract_features
from .metrics import nmi
from .models import Backbone, check_backbone
from .validation import check_int


def initial_alignment(factory: Callable[[int], Backbone], dataset: ImageDataset, k: int, seeds: Sequence[int], *,
                      labels: Mapping[str, np.ndarray] | None = None, layer: str | None = None, dim: int = 256,
                      kmeans_iters: int = 20, batch_size: int = 256,
                      device: str | torch.device | None = None) -> list[dict]:
    """IA(theta, k) of Mustapha et al. (2022, Sec. 4.1.1) for every seed in ``seeds``.

    For each seed: ``factory(seed)`` builds a randomly initialised network (e.g.
    ``lambda s: build(arch, k, seed=s)``), its features of ``layer`` (default: the ``embedding``
    DeepCluster clusters) are PCA-whitened to ``dim`` and L2-normalised, k-means with ``k``
    clusters (``kmeans_iters`` iterations, seeded with the same seed) groups them, and the clusters
    are scored with NMI (:func:`dctutor.metrics.nmi`).

    Returns one row per seed: ``seed``, ``k``, ``ia`` (NMI with ``dataset.targets``; NaN when the
    data set has unlabelled images), ``nmi_<name>`` for each extra labelling in ``labels`` (e.g. a
    colour label, to see what else the clusters follow) and ``seconds`` (forward pass + k-means).
    """
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be a dctutor ImageDataset (load_dataset), got {type(dataset).__name__}")
    if not callable(factory):
        raise TypeError(f"factory must build a network from a seed, e.g. lambda seed: build(arch, k, seed=seed); "
                        f"got {type(factory).__name__}")
    check_int(k, "k", 2, "k=100", high=len(dataset) - 1)
    check_int(kmeans_iters, "kmeans_iters", 1, "kmeans_iters=20")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. seeds=[0, 1, 2]")
    for seed in seeds:
        check_int(seed, "seed", 0, "seeds=[0, 1, 2]")
    labels = dict(labels or {})
    for name, truth in labels.items():
        if len(truth) != len(dataset):
            raise ValueError(f"labels[{name!r}] has {len(truth)} entries but the dataset has {len(dataset)} images")
    targets = dataset.targets.cpu().numpy()
    labelled = bool((targets >= 0).all())
    if not labelled and not labels:
        raise ValueError(f"{dataset.name} has unlabelled images (targets -1); IA needs labels: pass a labelled "
                         f"split or labels={{'name': array}}")
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        model = check_backbone(factory(seed))
        features = extract_features(model, dataset, layer, batch_size=batch_size, device=device, progress=False)
        clusters = kmeans(preprocess(features, dim), k, n_iter=kmeans_iters, seed=seed, device=device).labels
        row = {"seed": int(seed), "k": k, "ia": nmi(targets, clusters) if labelled else float("nan")}
        row.update({f"nmi_{name}": nmi(truth, clusters) for name, truth in labels.items()})
        rows.append(row | {"seconds": time.perf_counter() - start})
    return rows
