"""How much do the clusters of a *random* network already agree with the labels?

DeepCluster bootstraps from the weak signal of a randomly initialised convnet (paper Sec. 3.2).
Mustapha et al. (2022) call the NMI between k-means on random-init features and the true
labels the "initial alignment" and find that it predicts how well training will go. Chapter 1
uses the same measurement to show why the Sobel layer matters: without it, the clusters follow
colour instead of shape.
"""
from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from ..clustering import kmeans, preprocess
from ..data import ImageDataset
from ..features import extract_features
from ..metrics import nmi
from ..models import alexnet, small_input_for


def hue_labels(images: torch.Tensor, bins: int = 10) -> np.ndarray:
    """A colour "label" per image: the hue of its mean colour, cut into ``bins`` equal bins.

    Crude on purpose: if clusters agree with it, they are grouping images by colour.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be a uint8 (N, 3, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
    mean_rgb = images.float().mean(dim=(2, 3)).numpy() / 255.0
    hue = np.array([colorsys.rgb_to_hsv(*rgb)[0] for rgb in mean_rgb])
    return np.minimum((hue * bins).astype(np.int64), bins - 1)


def random_init_nmi(dataset: ImageDataset, labels: Mapping[str, np.ndarray], *, sobel: bool, k: int,
                    seeds: Sequence[int], width: float = 0.5, layer: str | None = None, dim: int = 256,
                    device: str | torch.device | None = None) -> list[dict]:
    """Cluster the features of randomly initialised AlexNets and score the clusters against ``labels``.

    For every seed: a fresh ``alexnet(sobel=sobel, seed=seed)``, features of ``layer`` (default:
    the embedding DeepCluster clusters, fc7 before its ReLU), PCA-whitening to ``dim`` and L2
    (Sec. 3.4), k-means with ``k`` clusters, then NMI with each named labelling. Returns one row per seed:
    ``{"seed", "sobel", "nmi_<name>" ...}``.
    """
    if not seeds:
        raise ValueError("seeds must name at least one seed, e.g. seeds=[0, 1, 2]")
    for name, truth in labels.items():
        if len(truth) != len(dataset):
            raise ValueError(f"labels[{name!r}] has {len(truth)} entries but the dataset has {len(dataset)} images")
    rows = []
    for seed in seeds:
        model = alexnet(k, sobel=sobel, small_input=small_input_for(dataset.image_size), width=width, seed=seed)
        features = preprocess(extract_features(model, dataset, layer, device=device, progress=False), dim)
        clusters = kmeans(features, k, seed=seed, device=device).labels
        row = {"seed": seed, "sobel": sobel}
        row.update({f"nmi_{name}": nmi(truth, clusters) for name, truth in labels.items()})
        rows.append(row)
    return rows
