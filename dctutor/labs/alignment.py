"""How much do the clusters of a *random* network already agree with the labels?

DeepCluster bootstraps from the weak signal of a randomly initialised convnet (paper Sec. 3.2).
Mustapha et al. (2022) call the NMI between k-means on random-init features and the true
labels the "initial alignment" (:mod:`dctutor.alignment`, chapter 6). Chapter 1
uses the same measurement to show why the Sobel layer matters: without it, the clusters follow
colour instead of shape. Chapter 6 picks seeds across the IA distribution (:func:`spread_seeds`)
and trains and probes each (:func:`train_and_probe`).
"""
from __future__ import annotations

import colorsys
import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch
from ..alignment import initial_alignment
from ..data import ImageDataset
from ..deepcluster import DeepClusterConfig, train_deepcluster
from ..evaluate import linear_probe
from ..models import Backbone, alexnet, small_input_for


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

    :func:`dctutor.alignment.initial_alignment` for ``alexnet(sobel=sobel, seed=seed)``: features of
    ``layer`` (default: the embedding DeepCluster clusters, fc7 before its ReLU), PCA-whitening to
    ``dim`` and L2 (Sec. 3.4), k-means with ``k`` clusters, then NMI with each named labelling.
    Returns one row per seed: ``{"seed", "sobel", "nmi_<name>" ...}``.
    """
    small = small_input_for(dataset.image_size)
    rows = initial_alignment(lambda seed: alexnet(k, sobel=sobel, small_input=small, width=width, seed=seed),
                             dataset, k, seeds, labels=labels, layer=layer, dim=dim, device=device)
    return [{"seed": row["seed"], "sobel": sobel, **{f"nmi_{name}": row[f"nmi_{name}"] for name in labels}}
            for row in rows]


def spread_seeds(rows: Sequence[dict], n: int, key: str = "ia") -> list[int]:
    """``n`` seeds of ``rows`` (from :func:`dctutor.alignment.initial_alignment`) whose ``key`` spans
    the sampled distribution: evenly spaced ranks, the lowest and the highest included. Mustapha et
    al. (2022, Sec. 4.1.2) pick the seeds they train the same way, so that the scatter covers the range."""
    if not 1 <= n <= len(rows):
        raise ValueError(f"n={n} seeds asked for but {len(rows)} were sampled; sample more or ask for fewer")
    ranked = sorted(rows, key=lambda row: (row[key], row["seed"]))
    picks = np.unique(np.round(np.linspace(0, len(ranked) - 1, n)).astype(int))
    return [int(ranked[i]["seed"]) for i in picks]


def train_and_probe(factory: Callable[[int], Backbone], train_set: ImageDataset, test_set: ImageDataset,
                    config: DeepClusterConfig, *, layer: str = "conv5", probe_epochs: int = 10,
                    device: str | torch.device | None = None) -> dict:
    """One point of chapter 6's studies: DeepCluster on a fresh ``factory(config.seed)``, then a
    linear probe of ``layer`` on the test set (the downstream accuracy of Mustapha et al. 2022,
    Sec. 3.3, read on the top conv layer), and the same probe on the untouched starting weights, so
    that each point carries its own random twin. Returns ``seed``, ``k``, ``halt``, ``accuracy``
    and ``random`` (0-1), ``gain`` (their difference), ``loss`` (last epoch, to judge against
    log k), ``nmi_first``/``nmi_last`` (clusters vs labels, first and last epoch),
    ``clusterings`` (how many ran), ``seconds_clustering`` (extraction + k-means) and
    ``seconds_training``."""
    model = factory(config.seed)
    twin = copy.deepcopy(model)
    run = train_deepcluster(model, train_set, config, device=device, progress=False)
    trained, random = (linear_probe(net, train_set, test_set, [layer], epochs=probe_epochs, seed=config.seed,
                                    device=device)[0]["accuracy"] for net in (model, twin))
    history = run.history
    return {"seed": config.seed, "k": config.k, "halt": config.halt_clustering_after,
            "accuracy": trained, "random": random, "gain": trained - random, "loss": history[-1]["loss"],
            "nmi_first": history[0]["nmi_labels"], "nmi_last": history[-1]["nmi_labels"],
            "clusterings": sum(r["time_cluster"] > 0 for r in history),
            "seconds_clustering": sum(r["time_extract"] + r["time_cluster"] for r in history),
            "seconds_training": sum(r["time_train"] for r in history)}


class TrainedPoints:
    """:func:`train_and_probe` once per (seed, k, halt): chapter 6's sections share runs (a seed's
    run at the chapter's k, never halted, serves sections 2, 3 and 4), so each is trained only once.
    ``factory(seed, k)`` makes the fresh network; ``config`` holds everything else."""

    def __init__(self, factory: Callable[[int, int], Backbone], train_set: ImageDataset, test_set: ImageDataset,
                 config: DeepClusterConfig, *, probe_epochs: int = 10,
                 device: str | torch.device | None = None) -> None:
        self.factory, self.train_set, self.test_set, self.config = factory, train_set, test_set, config
        self.probe_epochs, self.device = probe_epochs, device
        self.runs: dict[tuple, dict] = {}

    def __call__(self, seed: int, k: int, halt: int | None = None) -> dict:
        key = (seed, k, halt)
        if key not in self.runs:
            config = replace(self.config, k=k, seed=seed, halt_clustering_after=halt)
            self.runs[key] = train_and_probe(lambda s: self.factory(s, k), self.train_set, self.test_set, config,
                                             probe_epochs=self.probe_epochs, device=self.device)
        return self.runs[key]
