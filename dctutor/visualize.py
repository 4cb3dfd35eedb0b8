"""Figures for chapter 4: the training curves of Fig. 2, the filters of Fig. 3, clusters, top-9 images.

Each function draws one figure and returns it; the computations behind them (effective filters,
top-activating images) are separate functions so that they can be tested and reused.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from .data import ImageDataset, eval_transform
from .models import AlexNet


def plot_history(history: Sequence[dict], title: str = "") -> plt.Figure:
    """NMI with the labels (Fig. 2a), NMI between consecutive epochs (Fig. 2b), loss, effective k."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 4, figsize=(13, 2.8))
    panels = [("nmi_labels", "NMI(clusters, labels)"), ("nmi_prev", "NMI(epoch t-1, epoch t)"),
              ("loss", "loss on pseudo-labels"), ("n_effective", "clusters effectively used")]
    for ax, (key, label) in zip(axes, panels):
        ax.plot(epochs, [r[key] for r in history], marker="o")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if history:
        axes[3].axhline(len(history[0]["sizes"]), color="gray", ls="--", lw=1, label="k")
        axes[3].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_cluster_sizes(history: Sequence[dict], title: str = "cluster sizes, largest first") -> plt.Figure:
    """Sorted cluster sizes of every epoch: a flat line is balanced, a steep one is collapsing."""
    fig, ax = plt.subplots(figsize=(5, 3))
    colours = plt.cm.viridis(np.linspace(0, 1, max(len(history), 2)))
    for colour, row in zip(colours, history):
        ax.plot(sorted(row["sizes"], reverse=True), color=colour, label=f"epoch {row['epoch']}")
    ax.set_xlabel("cluster rank")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=10)
    if len(history) <= 8:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def effective_filters(model: AlexNet) -> np.ndarray:
    """conv1's filters as seen from the RGB pixels, shape (out, 3, h, w).

    Without Sobel these are conv1's weights. With Sobel, conv1 sees gradients: composing the fixed
    grayscale + Sobel layer with each filter (one linear map after the other) gives the RGB filter
    it really applies, the same in the three channels since the grayscale step drops colour.
    """
    weight = model.features.conv1[0].weight.detach().cpu()
    if model.sobel is None:
        return weight.numpy()
    sobel_kernel = model.sobel.sobel_weight.detach().cpu()  # (2, 1, 3, 3): Gx and Gy
    # A full convolution of each conv1 filter with the Sobel kernels, summed over the two gradients.
    combined = F.conv_transpose2d(weight, sobel_kernel)  # (out, 1, h + 2, w + 2)
    return (combined / 3).expand(-1, 3, -1, -1).numpy()


def plot_filters(filters: np.ndarray, title: str = "", ncols: int = 12) -> plt.Figure:
    """Filters (out, 3, h, w) as small images, each scaled to its own range."""
    n = len(filters)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.6, nrows * 0.6 + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            f = filters[i].transpose(1, 2, 0)
            f = (f - f.min()) / (f.max() - f.min() + 1e-12)
            ax.imshow(f, interpolation="nearest")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def cluster_montage(dataset: ImageDataset, labels: np.ndarray, clusters: Sequence[int], per_cluster: int = 8,
                    seed: int = 0) -> plt.Figure:
    """One row of random images per cluster, titled with the cluster's size and majority label."""
    rng = np.random.default_rng(seed)
    targets = dataset.targets.cpu().numpy()
    fig, axes = plt.subplots(len(clusters), per_cluster, figsize=(per_cluster * 0.9, len(clusters) * 1.0),
                             squeeze=False)
    for row, cluster in zip(axes, clusters):
        members = np.flatnonzero(labels == cluster)
        picked = rng.choice(members, min(per_cluster, len(members)), replace=False)
        for ax in row:
            ax.axis("off")
        for ax, index in zip(row, picked):
            ax.imshow(dataset.images[index].cpu().permute(1, 2, 0).numpy())
        if len(members) and (targets[members] >= 0).all():
            counts = np.bincount(targets[members], minlength=len(dataset.classes))
            majority = f"{dataset.classes[counts.argmax()]} {counts.max() / len(members):.0%}"
        else:
            majority = ""
        row[0].set_title(f"cluster {cluster} ({len(members)} images) {majority}", fontsize=8, loc="left")
    fig.tight_layout()
    return fig


@torch.no_grad()
def top_activating(model: AlexNet, dataset: ImageDataset, units: Sequence[int], layer: str = "conv5",
                   top: int = 9, batch_size: int = 256) -> np.ndarray:
    """Indices (len(units), top) of the images that excite each unit of ``layer`` most (spatial max),
    as in the paper's Fig. 4-5 (eval mode, un-augmented images)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    to_input = eval_transform()
    scores = []
    for start in range(0, len(dataset), batch_size):
        x = to_input(dataset.images[start:start + batch_size].to(device))
        scores.append(model.activations(x, layer)[:, list(units)].amax(dim=(2, 3)).cpu())
    model.train(was_training)
    return torch.cat(scores).topk(top, dim=0).indices.T.numpy()


def plot_top_images(dataset: ImageDataset, indices: np.ndarray, units: Sequence[int], layer: str = "conv5"
                    ) -> plt.Figure:
    """For each unit, its top images as a 3x3 block, blocks side by side."""
    n_units, top = indices.shape
    side = int(np.ceil(np.sqrt(top)))
    fig, axes = plt.subplots(1, n_units, figsize=(2.0 * n_units, 2.3), squeeze=False)
    for ax, unit, picked in zip(axes[0], units, indices):
        images = dataset.images[torch.as_tensor(picked)].cpu()
        blank = torch.zeros((side * side - len(images), *images.shape[1:]), dtype=images.dtype)
        grid = torch.cat([images, blank]).reshape(side, side, *images.shape[1:])
        mosaic = grid.permute(0, 3, 1, 4, 2).reshape(side * images.shape[2], side * images.shape[3], 3)
        ax.imshow(mosaic.numpy())
        ax.set_title(f"{layer} unit {unit}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_probe(table: Sequence[dict], title: str = "linear probe, test accuracy") -> plt.Figure:
    """Accuracy per layer for the trained network and its random-init twin (Table 1's pattern)."""
    layers = [r["layer"] for r in table]
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(x - 0.2, [100 * r["trained"] for r in table], 0.4, label="DeepCluster")
    ax.bar(x + 0.2, [100 * r["random"] for r in table], 0.4, label="random init", color="gray")
    ax.set_xticks(x, layers)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
