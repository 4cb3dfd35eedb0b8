"""The figures the chapters and the results page draw. Each function draws one figure and returns it.

The computations behind them live in the core (``dctutor.metrics``, ``dctutor.evaluate``) or in
the chapter labs (``dctutor.labs.inspect``); only drawing happens here. Every figure fits the book's
content column (at most 7.2 inches wide at 100 dpi, about 688 px) with no text under 8 pt, and no
two labels overlap (``tests/test_figure_overlap.py`` checks each one from matplotlib's text extents).
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from ..data import ImageDataset
from ..sobel import Sobel


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
    fig, axes = plt.subplots(len(images), 5, figsize=(7.2, 1.55 * len(images)), squeeze=False)
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
    """A grid of uint8 RGB images (N, 3, H, W) with optional titles; ``size`` inches per image, at
    most what fits ``ncols`` images in the book's 7.2-inch column."""
    nrows = max(1, -(-len(images) // ncols))
    size = min(size, 7.2 / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            _show(ax, images[i].permute(1, 2, 0).numpy(), titles[i] if titles else "")
    fig.tight_layout()
    return fig


def compare_nmi(rows: Sequence[dict], metrics: Sequence[str], title: str = "") -> plt.Figure:
    """One panel per metric: NMI of every seed for RGB and Sobel inputs, with the mean as a bar."""
    fig, axes = plt.subplots(1, len(metrics), figsize=(min(7.2, 3.2 * len(metrics)), 3), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for pos, sobel in enumerate((False, True)):
            values = [r[metric] for r in rows if r["sobel"] == sobel]
            ax.bar(pos, np.mean(values), color=("tab:orange", "tab:blue")[pos], alpha=0.35, width=0.6)
            ax.scatter([pos] * len(values), values, color=("tab:orange", "tab:blue")[pos], zorder=3)
        ax.set_xticks([0, 1], ["RGB", "Sobel"])
        ax.set_title(f"NMI with the {metric.replace('nmi_', '')} labelling", fontsize=10)
        ax.set_ylim(bottom=0)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: Sequence[dict], title: str = "") -> plt.Figure:
    """NMI with the labels (Fig. 2a), NMI between consecutive epochs (Fig. 2b), loss, effective k."""
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(2, 2, figsize=(7.2, 4.8))
    axes = axes.ravel()
    panels = [("nmi_labels", "NMI(clusters, labels)"), ("nmi_prev", "NMI(epoch t-1, epoch t)"),
              ("loss", "loss on pseudo-labels"), ("n_effective", "clusters effectively used")]
    for ax, (key, label) in zip(axes, panels):
        ax.plot(epochs, [r[key] for r in history], marker="o")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if key.startswith("nmi"):  # from 0, so that a change of 0.01 does not look like a cliff
            ax.set_ylim(0, max(0.5, 1.15 * max((r[key] for r in history if r[key] == r[key]), default=0)))
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
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


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


def plot_top_images(dataset: ImageDataset, indices: np.ndarray, units: Sequence[int], layer: str = "conv5"
                    ) -> plt.Figure:
    """For each unit, its top images as a 3x3 block, blocks side by side."""
    n_units, top = indices.shape
    side = int(np.ceil(np.sqrt(top)))
    width = min(2.0, 7.2 / n_units)
    fig, axes = plt.subplots(1, n_units, figsize=(width * n_units, width + 0.3), squeeze=False)
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
    """Accuracy per layer for the trained network and its random-init twin (Table 1's pattern).

    Two-word layer names (``"knn conv5"``) are written on two lines, so that eight layers fit the
    column side by side; a dotted line separates the linear probes from the kNN rows, and the
    legend sits beside the axes, where it covers no bar.
    """
    layers = [r["layer"] for r in table]
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(7.2, 3.2))
    ax.bar(x - 0.2, [100 * r["trained"] for r in table], 0.4, label="DeepCluster")
    ax.bar(x + 0.2, [100 * r["random"] for r in table], 0.4, label="random init", color="gray")
    ax.set_xticks(x, [layer.replace(" ", "\n", 1) for layer in layers])
    ax.tick_params(axis="x", labelsize=9)
    ax.set_xlim(-0.6, len(layers) - 0.4)
    knn = [i for i, layer in enumerate(layers) if layer.startswith("knn")]
    if knn and knn[0] > 0:
        ax.axvline(knn[0] - 0.5, color="0.5", ls=":", lw=1)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, frameon=False)
    fig.tight_layout()
    return fig


def plot_ia_histograms(rows: Sequence[dict], title: str = "initial alignment over random seeds") -> plt.Figure:
    """One histogram of IA per value of k (rows of :func:`dctutor.alignment.initial_alignment`),
    on shared bins, each with its median as a vertical line (Mustapha et al. 2022, Fig. B.1)."""
    ks = sorted({r["k"] for r in rows})
    values = {k: np.array([r["ia"] for r in rows if r["k"] == k]) for k in ks}
    everything = np.concatenate(list(values.values()))
    bins = np.linspace(everything.min(), everything.max() + 1e-9, 21)
    fig, ax = plt.subplots(figsize=(6.4, 3))
    for i, k in enumerate(ks):
        colour = f"C{i}"
        ax.hist(values[k], bins=bins, alpha=0.5, color=colour, label=f"k = {k} ({len(values[k])} seeds)")
        ax.axvline(float(np.median(values[k])), color=colour, lw=2)
    ax.set_xlabel("IA = NMI(labels, k-means of random-init features)")
    ax.set_ylabel("seeds")
    ax.set_title(title + " (lines: medians)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _label_points(ax: plt.Axes, xs: np.ndarray, ys: np.ndarray, labels: Sequence[str], fontsize: float = 8,
                  avoid: np.ndarray | None = None) -> None:
    """Write each label beside its point: on the first side (right, left, then above, below) where it
    stays inside the axes and clear of the points, of ``avoid`` (more (x, y) data points, e.g. along
    a fitted line) and of the labels already written. Call it once the layout is final (after
    ``tight_layout``): it measures the labels where they will be drawn."""
    fig = ax.get_figure()
    renderer = getattr(fig.canvas, "get_renderer", fig._get_renderer)()
    frame = ax.get_window_extent(renderer)
    ax.get_xlim()  # settles autoscaling (both axes) before data are mapped to pixels
    centres = ax.transData.transform(np.column_stack([xs, ys]))
    taken = [Bbox.from_extents(cx - 4, cy - 4, cx + 4, cy + 4) for cx, cy in centres]
    if avoid is not None and len(avoid):
        taken += [Bbox.from_extents(cx - 1, cy - 1, cx + 1, cy + 1) for cx, cy in ax.transData.transform(avoid)]
    sides = [((5, 2), "left", "bottom"), ((-5, 2), "right", "bottom"), ((5, -2), "left", "top"),
             ((-5, -2), "right", "top"), ((0, 6), "center", "bottom"), ((0, -6), "center", "top")]
    for i, (x, y, label) in enumerate(zip(xs, ys, labels)):
        fallback = None
        for offset, ha, va in sides:
            text = ax.annotate(label, (x, y), textcoords="offset points", xytext=offset, ha=ha, va=va,
                               fontsize=fontsize)
            box = text.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.padded(2).overlaps(other) for j, other in enumerate(taken) if j != i):
                break
            fallback = fallback or ((offset, ha, va) if inside else None)
            text.remove()
        else:  # no side is clear: the first side inside the axes, else the first side
            offset, ha, va = fallback or sides[0]
            text = ax.annotate(label, (x, y), textcoords="offset points", xytext=offset, ha=ha, va=va,
                               fontsize=fontsize)
            box = text.get_window_extent(renderer)
        taken.append(box)


def plot_ia_vs_accuracy(rows: Sequence[dict], corr: dict, title: str = "") -> plt.Figure:
    """Final accuracy against initial alignment, one point per seed (labelled), with Pearson's r and
    its interval (:func:`dctutor.metrics.correlation`) in the title (Mustapha et al. 2022, Fig. 3).

    The seeds' labels are placed where they stay inside the axes and clear of each other, and the IA
    axis carries at most five ticks, since the IAs of one k often differ only in the third decimal."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ia = np.array([r["ia"] for r in rows])
    acc = np.array([100 * r["accuracy"] for r in rows])
    ax.scatter(ia, acc, color="C0")
    fit = np.empty((0, 2))
    if len(rows) >= 2 and np.ptp(ia) > 0:
        slope, intercept = np.polyfit(ia, acc, 1)
        grid = np.linspace(ia.min(), ia.max(), 60)
        fit = np.column_stack([grid, slope * grid + intercept])
        ax.plot(*fit.T, color="C0", lw=1, ls="--")
    ax.margins(x=0.12, y=0.15)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    ax.set_xlabel("initial alignment (IA)")
    ax.set_ylabel("linear probe accuracy (%)")
    interval = f" [{corr['low']:.2f}, {corr['high']:.2f}]" if np.isfinite(corr["low"]) else ""
    ax.set_title(f"{title}\nPearson r = {corr['r']:.2f}{interval} (95%, n = {corr['n']})".strip(), fontsize=9)
    fig.tight_layout()
    _label_points(ax, ia, acc, [f"seed {r['seed']}" for r in rows], avoid=fit)
    return fig


def _per_setting(rows: Sequence[dict], key: str, column: str, scale: float = 100) -> tuple[list, list, list]:
    """The settings of ``rows`` in order, and each setting's mean and values of ``column`` x ``scale``."""
    settings = sorted({r[key] for r in rows})
    values = [[scale * r[column] for r in rows if r[key] == s] for s in settings]
    return settings, [float(np.mean(v)) for v in values], values


def _plot_sweep(ax: plt.Axes, rows: Sequence[dict], key: str) -> list:
    """Each seed's accuracy as a dot, the mean over seeds as a line, and the random twins' mean dashed."""
    settings, means, values = _per_setting(rows, key, "accuracy")
    for s, v in zip(settings, values):
        ax.plot([s] * len(v), v, ".", color="C0", alpha=0.5)
    ax.plot(settings, means, "o-", color="C0", label="trained (mean)")
    if all("random" in r for r in rows):
        ax.plot(settings, _per_setting(rows, key, "random")[1], "s--", color="gray", label="random twin (mean)")
    return settings


def plot_accuracy_sweeps(k_rows: Sequence[dict], halt_rows: Sequence[dict], epochs: int) -> plt.Figure:
    """Left: accuracy against k. Right: accuracy against the number of clusterings before
    clustering halts (``epochs`` = never halted), with the seconds spent clustering on a second axis.
    With several seeds per setting, each seed is a dot and the line joins the means; the random
    twins' mean is the dashed line a trained network has to clear."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.4))
    if k_rows:
        ks = _plot_sweep(axes[0], k_rows, "k")
        axes[0].set_xscale("log")
        axes[0].set_xticks(ks, [str(v) for v in ks])
        axes[0].minorticks_off()
    axes[0].set_xlabel("k (clusters)")
    axes[0].set_ylabel("linear probe accuracy (%)")
    axes[0].set_title("accuracy against k", fontsize=10)
    if halt_rows:
        x = _plot_sweep(axes[1], halt_rows, "clusterings")
        twin = axes[1].twinx()
        twin.bar(x, _per_setting(halt_rows, "clusterings", "seconds_clustering", 1)[1], width=0.3, alpha=0.3,
                 color="gray")
        twin.set_ylabel("seconds extracting\n+ clustering (mean)", fontsize=8)
        axes[1].set_xticks(x, [str(v) for v in x])
    axes[1].set_ylabel("linear probe accuracy (%)")
    axes[1].set_xlabel(f"clusterings before halting ({epochs} = never)")
    axes[1].set_title("accuracy against halting", fontsize=10)
    handles, labels = axes[0 if k_rows else 1].get_legend_handles_labels()
    if handles:
        # Below both panels, where no curve runs.
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    else:
        fig.tight_layout()
    return fig


def plot_size_histories(histories: dict[str, Sequence[dict]], k: int) -> plt.Figure:
    """Per run (one line each), epoch by epoch: left, the share of the images in the largest
    cluster; right, the number of clusters in use (exp of the entropy of the sizes), out of ``k``."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3))
    for name, history in histories.items():
        epochs = [row["epoch"] for row in history]
        axes[0].plot(epochs, [row["largest"] for row in history], "o-", label=name)
        axes[1].plot(epochs, [row["n_effective"] for row in history], "o-", label=name)
    axes[0].axhline(1 / k, color="0.4", ls=":", lw=1)
    axes[1].axhline(k, color="0.4", ls=":", lw=1)
    axes[0].set_ylabel("largest cluster (share)")
    axes[1].set_ylabel(f"clusters in use (of {k})")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def plot_id_changes(moves) -> plt.Figure:
    """Per setting (a DataFrame of :func:`dctutor.labs.successors.id_changes` rows with a
    ``setting`` column), the mean over seeds and epochs of the share of ids that changed and of
    the images that really moved, as paired bars, with NMI(t-1, t) as a dot."""
    means = moves.groupby("setting", sort=False)[["changed", "moved", "nmi_prev"]].mean()
    fig, ax = plt.subplots(figsize=(7.2, 3.2))
    y = np.arange(len(means))
    ax.barh(y - 0.2, means["changed"], 0.4, label="ids changed")
    ax.barh(y + 0.2, means["moved"], 0.4, label="images moved")
    ax.plot(means["nmi_prev"], y, "kD", ms=5, label="NMI(t-1, t)")
    ax.set_yticks(y, means.index, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("share of the images (bars), NMI (dots)")
    ax.legend(fontsize=8, frameon=False, loc="lower right", bbox_to_anchor=(1, 1.0), ncol=3)
    fig.tight_layout()
    return fig
