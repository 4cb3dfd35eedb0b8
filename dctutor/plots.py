"""Figures the chapters share. Each function draws one figure and returns it."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .sobel import Sobel


def _show(ax: plt.Axes, image: np.ndarray, title: str = "", cmap: str | None = None, **kwargs) -> None:
    ax.imshow(image, cmap=cmap, **kwargs)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def sobel_panels(images: torch.Tensor) -> plt.Figure:
    """For each uint8 RGB image: the image, its grayscale, Gx, Gy and the gradient magnitude."""
    x = images.float() / 255.0
    gray = x.mean(dim=1)
    grad = Sobel()(x)
    magnitude = grad.pow(2).sum(dim=1).sqrt()
    fig, axes = plt.subplots(len(images), 5, figsize=(7.5, 1.6 * len(images)), squeeze=False)
    for row, ax in enumerate(axes):
        limit = float(grad[row].abs().max()) or 1.0
        _show(ax[0], images[row].permute(1, 2, 0).numpy(), "RGB input" if row == 0 else "")
        _show(ax[1], gray[row].numpy(), "grayscale (1x1, 1/3)" if row == 0 else "", "gray")
        _show(ax[2], grad[row, 0].numpy(), "Gx" if row == 0 else "", "RdBu", vmin=-limit, vmax=limit)
        _show(ax[3], grad[row, 1].numpy(), "Gy" if row == 0 else "", "RdBu", vmin=-limit, vmax=limit)
        _show(ax[4], magnitude[row].numpy(), "|G|" if row == 0 else "", "magma")
    fig.tight_layout()
    return fig


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 10,
               size: float = 1.0) -> plt.Figure:
    """A grid of uint8 RGB images (N, 3, H, W) with optional titles."""
    nrows = max(1, -(-len(images) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            _show(ax, images[i].permute(1, 2, 0).numpy(), titles[i] if titles else "")
    fig.tight_layout()
    return fig


def compare_nmi(rows: Sequence[dict], metrics: Sequence[str], title: str = "") -> plt.Figure:
    """One panel per metric: NMI of every seed for RGB and Sobel inputs, with the mean as a bar."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for pos, sobel in enumerate((False, True)):
            values = [r[metric] for r in rows if r["sobel"] == sobel]
            ax.bar(pos, np.mean(values), color=("tab:orange", "tab:blue")[pos], alpha=0.35, width=0.6)
            ax.scatter([pos] * len(values), values, color=("tab:orange", "tab:blue")[pos], zorder=3)
        ax.set_xticks([0, 1], ["RGB", "Sobel"])
        ax.set_title(metric.replace("nmi_", "NMI with ") + " labels", fontsize=10)
        ax.set_ylim(bottom=0)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
