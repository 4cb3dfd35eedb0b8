"""Every figure the book draws, read the way a reader sees it at 100 % zoom.

For every public plotting function of ``dctutor.labs`` (every public function annotated to return a
``plt.Figure``; a new one fails :func:`test_every_plotting_function_has_a_case` until it gets a case
here), draw it on small synthetic inputs shaped like the chapters' and the results page's, with the
Agg backend, and check from matplotlib's own text extents (``Text.get_window_extent``) that:

* no two visible texts (tick labels, axis labels, titles, annotations, legend texts, the suptitle)
  overlap, within one axes or across the figure;
* no text lies outside the figure, and no annotation outside its axes;
* no legend covers a curve or a scatter point;
* every text is at least 8 pt, and the figure is at most 7.2 inches wide (the book's content
  column is ~688 px; the chapters draw at 100 dpi).
"""
from __future__ import annotations

import functools
import importlib
import inspect
import itertools
import pkgutil
import typing

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

import dctutor.labs  # noqa: E402
from dctutor.data import ImageDataset  # noqa: E402
from dctutor.labs import figures, imbalance, kmeans_steps  # noqa: E402

MAX_WIDTH_IN = 7.2
MIN_FONT_PT = 8
GAP_PX = 1.0  # two boxes closer than this read as one word ("knn conv5knn fc6")


# ----------------------------------------------------------------------------------------------
# Synthetic inputs, shaped like what the chapters pass
# ----------------------------------------------------------------------------------------------

def _images(n: int = 24, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8))


def _dataset(n: int = 40) -> ImageDataset:
    classes = ["circle", "square", "triangle", "cross"]
    return ImageDataset(_images(n), torch.arange(n) % len(classes), classes, "synthetic")


def _history(epochs: int = 10, k: int = 30) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for e in range(epochs):
        sizes = np.sort(rng.multinomial(600, rng.dirichlet(np.ones(k) * (1 + e))))[::-1]
        rows.append({"epoch": e, "loss": 3.4 - 0.2 * e, "nmi_labels": 0.1 + 0.03 * e,
                     "nmi_prev": float("nan") if e == 0 else 0.5 + 0.04 * e, "n_effective": k * (0.6 + 0.03 * e),
                     "sizes": sizes.tolist()})
    return rows


def _id_moves():
    """Chapter 7's rows: four settings, three seeds, three pairs of consecutive clusterings."""
    import pandas as pd

    from dctutor.labs.successors import SEAMS
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"setting": name, "seed": seed, "epoch": epoch, "changed": changed,
                          "moved": moved, "nmi_prev": rng.uniform(0.3, 0.6)}
                         for name, (changed, moved) in zip(SEAMS, [(0.95, 0.7), (0.66, 0.66), (0.95, 0.59),
                                                                  (0.56, 0.56)])
                         for seed in range(3) for epoch in range(1, 4)])


def _probe_table() -> list[dict]:
    """The results page's rows: five conv layers, then kNN on three layers (benchmarks/bench_deepcluster.py)."""
    layers = ["conv1", "conv2", "conv3", "conv4", "conv5", "knn conv5", "knn fc6", "knn fc7"]
    trained = [0.41, 0.47, 0.50, 0.51, 0.50, 0.36, 0.33, 0.30]
    random = [0.38, 0.40, 0.38, 0.35, 0.31, 0.27, 0.26, 0.25]
    return [{"layer": layer, "trained": t, "random": r, "gain": t - r} for layer, t, r in zip(layers, trained, random)]


def _ia_rows() -> list[dict]:
    """Six seeds spread over a narrow IA range, as on the results page (IA 0.074-0.093)."""
    seeds = [19, 8, 14, 0, 11, 13]
    ia = [0.0742, 0.0798, 0.0834, 0.0840, 0.0876, 0.0933]
    acc = [0.471, 0.4605, 0.468, 0.475, 0.444, 0.452]
    return [{"seed": s, "ia": i, "accuracy": a, "k": 100} for s, i, a in zip(seeds, ia, acc)]


def _ia_histogram_rows() -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"seed": s, "k": k, "ia": float(rng.normal(0.05 + 0.0001 * k, 0.01))}
            for k in (10, 100, 300) for s in range(20)]


def _head_runs(k: int = 10, epochs: int = 10) -> list[imbalance.HeadRun]:
    """Chapter 3's runs without training: shuffling collapses onto the largest cluster, the others do not."""
    rng = np.random.default_rng(0)
    runs = []
    for seed in (0, 1, 2):
        for balance in imbalance.BALANCES:
            run = imbalance.HeadRun(balance, seed)
            for e in range(epochs):
                skew = balance == "shuffle"
                share = (0.9 - 0.04 * e if skew else 0.05 + 0.015 * e) + rng.normal(0, 0.02)
                counts = np.full(k, (1 - share) * 300 / (k - 1))
                counts[0] = share * 300
                acc = np.clip(rng.normal(0.3 + 0.02 * e if skew else 0.5 + 0.02 * e, 0.05, k), 0, 1)
                run.history.append({"per_cluster_accuracy": acc, "balanced_accuracy": float(acc.mean()),
                                    "predicted_counts": counts.round().astype(int), "largest_share": share,
                                    "n_predicted": int(min(k, 3 + e if skew else k))})
            runs.append(run)
    return runs


def _zipf_split(k: int = 10) -> imbalance.ZipfSplit:
    labels = np.repeat(np.arange(k), 150)
    return imbalance.zipf_split(labels, 2.0, 100, 30, seed=0)


def _defence_rows(k: int = 20, epochs: int = 8) -> list[dict]:
    rows = []
    for defences in imbalance.DEFENCES:
        for seed in (0, 1, 2):
            on = defences == "defences on"
            last = epochs if on or seed else epochs // 2  # one run without the defences diverges
            history = [{"epoch": e, "largest": 0.1 if on else min(1.0, 0.1 + 0.15 * e),
                        "n_effective": 0.8 * k if on else max(1.0, k * (0.8 - 0.1 * e)),
                        "spread": 0.5 if on else 10.0 ** (-e), "nmi_labels": 0.2 + 0.01 * e}
                       for e in range(last)]
            rows.append({"defences": defences, "seed": seed, "k": k, "history": history,
                         "error": None if last == epochs else "loss is NaN", "seconds": 1.0})
    return rows


@functools.cache
def _kmeans_toy():
    x, y = kmeans_steps.duplicate_blob_data(seed=0)
    init = x[np.flatnonzero(y == 4)[:5]]  # every centroid on the same duplicated point, as in chapter 2
    stuck = kmeans_steps.kmeans_steps(x, 5, init, 4, reassign_empty=False)
    repaired = kmeans_steps.kmeans_steps(x, 5, init, 4, reassign_empty=True)
    return x, init, stuck, repaired


def _sizes_rows() -> list[dict]:
    rng = np.random.default_rng(0)
    names = ["raw", "L2 only", "PCA-whiten 64", "PCA-whiten 64 + L2 (paper)"]
    rows = []
    for i, name in enumerate(names):
        sizes = np.sort(rng.multinomial(2000, rng.dirichlet(np.ones(100) * (0.05 + i))))[::-1]
        rows.append({"name": name, "dim": 64, "sizes": sizes, "n_empty": int((sizes == 0).sum()),
                     "largest": sizes[0] / 2000, "n_effective": float(20 + 20 * i), "nmi": 0.3})
    return rows


def _nmi_rows() -> list[dict]:
    return [{"seed": s, "sobel": sobel, "nmi_shape": 0.2 + 0.1 * sobel + 0.01 * s, "nmi_colour": 0.3 - 0.1 * sobel}
            for sobel in (False, True) for s in range(3)]


def _sweep_rows():
    k_rows = [{"k": k, "seed": s, "accuracy": 0.4 + 0.01 * i + 0.02 * s, "random": 0.38}
              for i, k in enumerate((10, 30, 100, 300)) for s in range(3)]
    halt_rows = [{"clusterings": c, "seed": s, "accuracy": 0.45 + 0.005 * c - 0.01 * s, "random": 0.4,
                  "seconds_clustering": 10.0 * c} for c in (1, 2, 4, 8) for s in range(3)]
    return k_rows, halt_rows


def _draw_kmeans_steps(**kwargs):
    x, init, stuck, repaired = _kmeans_toy()
    return kmeans_steps.plot_kmeans_steps(x, init, repaired if kwargs.pop("repaired", False) else stuck, **kwargs)


def _draw_splits():
    x, init, _, repaired = _kmeans_toy()
    return kmeans_steps.plot_splits(x, kmeans_steps.replay_splits(x, repaired[0], 0, init), 0,
                                    title="with reassignment: the splits of iteration 1")


CASES: dict[str, list[typing.Callable[[], plt.Figure]]] = {
    "figures.sobel_panels": [lambda: figures.sobel_panels(_images(4, 32))],
    "figures.image_grid": [lambda: figures.image_grid(_images(10), ["person\nchair"] * 10, ncols=5, size=1.4),
                           lambda: figures.image_grid(_images(20))],
    "figures.compare_nmi": [
        lambda: figures.compare_nmi(_nmi_rows(), ["nmi_shape", "nmi_colour"],
                                    "k-means on random AlexNet features, shapes (n=1000)"),
        lambda: figures.compare_nmi([{**r, "nmi_label": r["nmi_shape"]} for r in _nmi_rows()], ["nmi_label"],
                                    "cifar10")],
    "figures.plot_history": [lambda: figures.plot_history(_history(), "DeepCluster on shapes (n=1000, k=30)"),
                             lambda: figures.plot_history(_history(100, 1000),
                                                          "DeepCluster on all of CIFAR-10 (one H200)")],
    "figures.plot_cluster_sizes": [lambda: figures.plot_cluster_sizes(_history(8)),
                                   lambda: figures.plot_cluster_sizes(_history(20))],
    "figures.plot_filters": [
        lambda: figures.plot_filters(np.random.default_rng(0).normal(size=(24, 3, 7, 7)),
                                     "conv1 after 8 epochs, Sobel input (as RGB filters)")],
    "figures.cluster_montage": [lambda: figures.cluster_montage(_dataset(), np.arange(40) % 6, [0, 1, 2, 3, 4, 5])],
    "figures.plot_top_images": [
        lambda: figures.plot_top_images(_dataset(), np.arange(45).reshape(5, 9) % 40, [0, 12, 24, 36, 48])],
    "figures.plot_probe": [lambda: figures.plot_probe(_probe_table(), "CIFAR-10 test accuracy per layer"),
                           lambda: figures.plot_probe(_probe_table()[:5] + _probe_table()[6:],
                                                      "shapes: test accuracy per layer")],
    "figures.plot_ia_histograms": [lambda: figures.plot_ia_histograms(_ia_histogram_rows(),
                                                                      "IA on 5000 CIFAR-10 images")],
    "figures.plot_ia_vs_accuracy": [
        lambda: figures.plot_ia_vs_accuracy(_ia_rows(), {"r": -0.63, "low": -0.95, "high": 0.38, "n": 6},
                                            "CIFAR-10, k = 100, 12 epochs"),
        lambda: figures.plot_ia_vs_accuracy(_ia_rows()[:3], {"r": 0.5, "low": float("nan"),
                                                             "high": float("nan"), "n": 3}, "shapes, k = 30")],
    "figures.plot_accuracy_sweeps": [lambda: figures.plot_accuracy_sweeps(*_sweep_rows(), 8),
                                     lambda: figures.plot_accuracy_sweeps([], _sweep_rows()[1], 8)],
    "figures.plot_size_histories": [
        lambda: figures.plot_size_histories({"k-means, no defences": [r | {"largest": max(r["sizes"]) / 600}
                                                                     for r in _history(6)],
                                             "Sinkhorn, plain shuffling": [r | {"largest": 0.04, "n_effective": 29.8}
                                                                           for r in _history(6)]}, 30)],
    "figures.plot_id_changes": [lambda: figures.plot_id_changes(_id_moves())],
    "imbalance.collapse_figure": [lambda: imbalance.collapse_figure(_zipf_split(), _head_runs())],
    "imbalance.curves_figure": [lambda: imbalance.curves_figure(_head_runs())],
    "imbalance.trajectories_figure": [
        lambda: imbalance.trajectories_figure(_defence_rows(), "DeepCluster on 600 shapes images, lr 0.05")],
    "kmeans_steps.plot_kmeans_steps": [
        lambda: _draw_kmeans_steps(title="Lloyd's algorithm without reassignment"),
        lambda: _draw_kmeans_steps(repaired=True, steps=[0, 1, 3], title="with reassignment")],
    "kmeans_steps.plot_splits": [_draw_splits],
    "kmeans_steps.plot_sorted_sizes": [
        lambda: kmeans_steps.plot_sorted_sizes(_sizes_rows(), "k-means on random-AlexNet fc7 features, "
                                                              "shapes (n=2000, k=100)")],
}


# ----------------------------------------------------------------------------------------------
# What a reader sees
# ----------------------------------------------------------------------------------------------

def _plotting_functions() -> list[str]:
    """``module.function`` for every public function of dctutor.labs that returns a Figure."""
    found = []
    for info in pkgutil.iter_modules(dctutor.labs.__path__):
        module = importlib.import_module(f"dctutor.labs.{info.name}")
        for name, obj in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(obj) or obj.__module__ != module.__name__:
                continue
            if "Figure" in str(inspect.signature(obj).return_annotation):
                found.append(f"{info.name}.{name}")
    return sorted(found)


def _visible(text) -> bool:
    return text.get_visible() and bool(text.get_text().strip())


def _in_view(axis, tick) -> bool:
    low, high = sorted(axis.get_view_interval())
    span = (high - low) or 1.0
    return low - 1e-9 * span <= tick.get_loc() <= high + 1e-9 * span


def _texts(fig: plt.Figure) -> list[tuple[str, object]]:
    """(name, Text) of every text drawn on ``fig``, named for the messages."""
    out = [(f"figure text {t.get_text()!r}", t) for t in fig.texts]
    for legend in fig.legends:
        out += [(f"figure legend {t.get_text()!r}", t) for t in (*legend.get_texts(), legend.get_title())]
    for i, ax in enumerate(fig.axes):
        where = f"axes {i} ({ax.get_title()!r})"
        out += [(f"{where} title {t.get_text()!r}", t) for t in (ax.title, ax._left_title, ax._right_title)]
        out += [(f"{where} text {t.get_text()!r}", t) for t in ax.texts]
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            out += [(f"{where} legend {t.get_text()!r}", t) for t in (*legend.get_texts(), legend.get_title())]
        if not ax.axison:
            continue
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if not axis.get_visible():
                continue
            out.append((f"{where} {name} label {axis.label.get_text()!r}", axis.label))
            out.append((f"{where} {name} offset text", axis.offsetText))
            for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks()):
                if _in_view(axis, tick):
                    out += [(f"{where} {name} tick {t.get_text()!r}", t) for t in (tick.label1, tick.label2)]
    return [(name, text) for name, text in out if _visible(text)]


def _overlap(a: Bbox, b: Bbox, gap: float = GAP_PX) -> bool:
    return a.x0 < b.x1 + gap and b.x0 < a.x1 + gap and a.y0 < b.y1 + gap and b.y0 < a.y1 + gap


def _curve_points(fig: plt.Figure) -> np.ndarray:
    """Display coordinates along every line (every 2 px) and of every scatter point."""
    points = [np.empty((0, 2))]
    for ax in fig.axes:
        for artist in ax.get_children():
            if not artist.get_visible():
                continue
            if isinstance(artist, Line2D):
                xy = artist.get_transform().transform(np.column_stack(artist.get_data()).astype(float))
                xy = xy[np.isfinite(xy).all(1)]
                if artist.get_linestyle() not in ("None", "", " ") and len(xy) > 1:
                    for p, q in zip(xy[:-1], xy[1:]):
                        n = max(2, int(np.hypot(*(q - p)) / 2))
                        points.append(p + np.linspace(0, 1, n)[:, None] * (q - p))
                else:
                    points.append(xy)
            elif isinstance(artist, PathCollection):
                xy = artist.get_offset_transform().transform(artist.get_offsets())
                points.append(xy[np.isfinite(xy).all(1)])
    return np.concatenate(points)


def problems(fig: plt.Figure) -> list[str]:
    """Everything a reader would see wrong in ``fig``; empty when it reads well."""
    found = []
    width = fig.get_size_inches()[0]
    if width > MAX_WIDTH_IN + 1e-6:
        found.append(f"figure {width:.2f} in wide, more than the book's column ({MAX_WIDTH_IN} in)")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    boxes = [(name, text, text.get_window_extent(renderer)) for name, text in _texts(fig)]
    for name, text, box in boxes:
        if text.get_fontsize() < MIN_FONT_PT:
            found.append(f"{name}: {text.get_fontsize():g} pt, less than {MIN_FONT_PT} pt")
        if box.x0 < page.x0 - 0.5 or box.y0 < page.y0 - 0.5 or box.x1 > page.x1 + 0.5 or box.y1 > page.y1 + 0.5:
            found.append(f"{name}: outside the figure ({box.bounds} vs {page.bounds})")
        if " text " in name and text.axes is not None:
            frame = text.axes.get_window_extent(renderer)
            if box.x0 < frame.x0 - 1 or box.y0 < frame.y0 - 1 or box.x1 > frame.x1 + 1 or box.y1 > frame.y1 + 1:
                found.append(f"{name}: outside its axes")
    for (name_a, _, a), (name_b, _, b) in itertools.combinations(boxes, 2):
        if _overlap(a, b):
            found.append(f"{name_a} and {name_b} overlap")
    curves = _curve_points(fig)
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    for legend in legends:
        frame = legend.get_window_extent(renderer)
        inside = ((curves[:, 0] > frame.x0) & (curves[:, 0] < frame.x1) &
                  (curves[:, 1] > frame.y0) & (curves[:, 1] < frame.y1))
        if inside.any():
            labels = [t.get_text() for t in legend.get_texts()]
            found.append(f"legend {labels} covers {int(inside.sum())} points of the curves")
    return found


# ----------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------

def test_every_plotting_function_has_a_case():
    functions = _plotting_functions()
    assert len(functions) >= 15, functions  # the discovery itself works
    assert sorted(set(functions) - set(CASES)) == [], "plotting functions with no case in CASES"
    assert sorted(set(CASES) - set(functions)) == [], "cases for functions that no longer exist"


@pytest.mark.parametrize("name", sorted(CASES))
def test_figure_reads_at_100_percent_zoom(name):
    for i, draw in enumerate(CASES[name]):
        fig = draw()
        try:
            assert isinstance(fig, plt.Figure)
            found = problems(fig)
        finally:
            plt.close(fig)
        assert not found, f"{name} (case {i}):\n  " + "\n  ".join(found)


def test_the_checks_see_colliding_labels():
    """The checker itself: labels that run together, text outside, a small font, a covering legend."""
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(range(8), 1)
    ax.set_xticks(range(8), [f"knn conv{i}" for i in range(8)])
    ax.annotate("seed 13", (0.99, 0.5), xycoords="axes fraction", xytext=(4, 0), textcoords="offset points",
                fontsize=7)
    ax.plot([0, 7], [0.9, 0.9], label="a line under its legend")
    ax.legend(loc="upper right")
    found = "\n".join(problems(fig))
    plt.close(fig)
    assert "tick 'knn conv0'" in found and "overlap" in found
    assert "outside its axes" in found and "7 pt" in found and "covers" in found
