"""The cluster centres as the classifier: the top layer of DeepCluster-v2 (Caron et al., NeurIPS 2020,
the SwAV paper's appendix).

DeepCluster (v1) throws its top layer away after every clustering, because cluster ids mean nothing
from one clustering to the next, and learns a new one from N(0, 0.01) within the epoch. DeepCluster-v2
keeps no learned top layer at all: the scores are cosine similarities between an image's normalised
features and the normalised cluster centres (the *prototypes*), divided by a temperature, and the
prototypes are fixed while the network trains on them. Nothing has to be re-learned after a
clustering, so the very first steps of an epoch already send useful gradients to the features.

Two helpers go with it: :func:`prototypes_from_labels` makes the prototypes from the features the
head sees, and :func:`match_labels` renames a new clustering's ids after the previous one's, so
that "cluster 7" stays the same group of images from epoch to epoch wherever it can.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from .validation import check_float, check_int


class PrototypeHead(nn.Module):
    """``scores = normalise(h) @ prototypes.T / temperature``, the prototypes fixed (a buffer, so no
    optimiser moves them and checkpoints store them). SwAV and DeepCluster-v2 use ``temperature=0.1``.
    """

    def __init__(self, prototypes: torch.Tensor, temperature: float = 0.1):
        super().__init__()
        check_float(temperature, "temperature", 0, "temperature=0.1 (DeepCluster-v2's)", strict_low=True)
        if not isinstance(prototypes, torch.Tensor) or prototypes.dim() != 2:
            raise ValueError("prototypes must be a (k, feature_dim) tensor, one row per cluster")
        self.register_buffer("weight", nn.functional.normalize(prototypes.float(), dim=1))
        self.register_buffer("temperature", torch.tensor(float(temperature)))

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(h, dim=1) @ self.weight.T / self.temperature


def prototypes_from_labels(features: torch.Tensor, labels: np.ndarray, k: int) -> torch.Tensor:
    """One prototype per cluster: the mean of its members' L2-normalised ``features``, normalised.

    That is the centroid spherical k-means would keep for these labels, whichever labeller made them;
    a cluster without members (possible only when empty clusters are not refilled) gets a zero row,
    which scores 0 against every image.
    """
    check_int(k, "k", 1, "k=100")
    if len(labels) != len(features):
        raise ValueError(f"labels has {len(labels)} entries but features {len(features)} rows")
    unit = nn.functional.normalize(features.float(), dim=1)
    index = torch.as_tensor(labels, dtype=torch.long, device=unit.device)
    sums = torch.zeros(k, unit.shape[1], device=unit.device).index_add_(0, index, unit)
    return nn.functional.normalize(sums, dim=1)


def match_labels(previous: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``labels`` with its ids renamed to agree with ``previous`` on as many images as possible.

    The clustering is unchanged, only its names: the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``) finds the one-to-one renaming that maximises the
    number of images whose id stays the same. After it, the share of images whose id changed is a
    real measure of how much the clustering moved, where without it almost every id changes (k-means
    numbers its clusters in whatever order its start drew).
    """
    if len(previous) != len(labels):
        raise ValueError(f"previous has {len(previous)} labels but labels {len(labels)}")
    overlap = np.zeros((k, k), np.int64)
    np.add.at(overlap, (labels, previous), 1)
    rows, cols = linear_sum_assignment(overlap, maximize=True)
    rename = np.empty(k, np.int64)
    rename[rows] = cols
    return rename[labels]
