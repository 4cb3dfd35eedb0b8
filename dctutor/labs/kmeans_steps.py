"""Chapter 2's lab: k-means step by step in 2-D, and side-by-side comparisons.

* :func:`duplicate_blob_data` and :func:`kmeans_steps` build and replay a small 2-D case where
  Lloyd's algorithm leaves clusters empty, with and without the reassignment of Sec. 3.3;
  :func:`replay_splits` rebuilds every split of one iteration from the ``reassignments`` record;
  :func:`plot_kmeans_steps` and :func:`plot_splits` draw them.
* :func:`preprocessing_variants` and :func:`compare_preprocessing` cluster the same features raw
  and after the steps of Sec. 3.4 (PCA-whitening, L2 normalisation) and measure cluster sizes and
  NMI with the labels; :func:`plot_sorted_sizes` draws the sizes.
* :func:`compare_implementations` runs dctutor's k-means, faiss and scikit-learn on the same
  points from the same initial centroids and measures one objective for all (Eq. 2).
* :func:`reassignment_frame`, :func:`preprocessing_frame` and :func:`implementations_frame` show
  those records as pandas DataFrames, the HTML tables the chapter displays.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from ..clustering import KMeansResult, kmeans, pca_whiten
from ..metrics import cluster_stats, nmi
from ..validation import check_int, check_matrix


# ----------------------------------------------------------------------------------------------
# A 2-D case with empty clusters
# ----------------------------------------------------------------------------------------------

def duplicate_blob_data(n_per_blob: int = 60, n_duplicates: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four round Gaussian blobs plus a "tight blob" of ``n_duplicates`` copies of one point.

    Returns ``x`` (float32, shape (4 * n_per_blob + n_duplicates, 2)) and the blob of every point
    ``y`` (0-3 for the round blobs, 4 for the duplicates, which come last). The data sit away from
    the origin on purpose: the split of Sec. 3.3 perturbs a centroid multiplicatively, which
    cannot separate anything at the origin.
    """
    if n_per_blob < 2 or n_duplicates < 2:
        raise ValueError(f"n_per_blob={n_per_blob} and n_duplicates={n_duplicates} must both be at least 2")
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0, 2.0], [8.0, 2.0], [2.0, 8.0], [8.0, 8.0]])
    round_blobs = centres.repeat(n_per_blob, 0) + rng.normal(scale=0.7, size=(4 * n_per_blob, 2))
    duplicates = np.tile([[13.0, 13.0]], (n_duplicates, 1))
    x = np.concatenate([round_blobs, duplicates]).astype(np.float32)
    y = np.concatenate([np.arange(4).repeat(n_per_blob), np.full(n_duplicates, 4)])
    return x, y


def kmeans_steps(x: np.ndarray, k: int, init: np.ndarray, n_steps: int, *, reassign_empty: bool,
                 seed: int = 0) -> list[KMeansResult]:
    """The state of :func:`dctutor.clustering.kmeans` (torch backend) after 1, 2, ... iterations.

    Element ``t`` is ``kmeans(x, k, n_iter=t + 1, init=init, ...)``: same seed, same init, so every
    run replays the previous one and goes one iteration further. The list stops early once
    k-means has converged (its labels stopped changing), so it has at most ``n_steps`` entries.
    """
    check_int(n_steps, "n_steps", 1, "n_steps=15")
    steps = []
    for t in range(1, n_steps + 1):
        result = kmeans(x, k, n_iter=t, seed=seed, init=init, reassign_empty=reassign_empty, device="cpu")
        steps.append(result)
        if len(result.objective) < t:  # it stopped before iteration t: converged
            break
    return steps


def reassignment_table(result: KMeansResult) -> str:
    """The ``reassignments`` record of a k-means run as a text table, one split per line."""
    if not result.reassignments:
        return "no reassignment"
    lines = [f"{'iteration':>9} {'empty cluster':>13} {'donor':>5} {'points moved':>12}"]
    # Iterations counted from 1, as in the figures.
    lines += [f"{r.iteration + 1:>9} {r.empty:>13} {r.donor:>5} {r.n_moved:>12}" for r in result.reassignments]
    return "\n".join(lines)


def reassignment_frame(result: KMeansResult) -> pd.DataFrame:
    """The ``reassignments`` record of a k-means run as a table, one split per row, iterations
    counted from 1 as in the figures (chapter 2 displays it)."""
    return pd.DataFrame([{"iteration": r.iteration + 1, "empty cluster": r.empty, "donor": r.donor,
                          "points moved": r.n_moved} for r in result.reassignments],
                        columns=["iteration", "empty cluster", "donor", "points moved"])


def replay_splits(x: np.ndarray, result: KMeansResult, iteration: int,
                  centroids_before: np.ndarray) -> list[dict]:
    """The states of one k-means iteration split by split, rebuilt from the ``reassignments`` record.

    ``result`` must stop right after ``iteration`` (e.g. ``kmeans_steps(...)[iteration]``) and
    ``centroids_before`` are the centroids that iteration started from (the init for iteration 0).
    Within an iteration only splits change labels after the assignment step, so undoing the
    recorded splits backwards recovers every intermediate state exactly. Returns one dict per
    state: ``labels``, ``centroids`` (cluster means; an empty cluster keeps its old centroid) and
    ``split`` (the :class:`~dctutor.clustering.Reassignment` that led to it, None for the first
    state: after the Lloyd update, before any split).
    """
    x = np.asarray(x, dtype=np.float32)
    splits = [r for r in result.reassignments if r.iteration == iteration]
    if any(r.iteration > iteration for r in result.reassignments):
        raise ValueError(f"result ran past iteration {iteration}; pass the run that stops after it")
    if any(r.empty < 0 for r in splits):
        raise ValueError("the record has no cluster ids (faiss backend); replay a backend='torch' run")
    k = len(result.centroids)
    labels = [np.asarray(result.labels).copy()]
    for split in reversed(splits):
        undone = labels[0].copy()
        undone[undone == split.empty] = split.donor
        labels.insert(0, undone)
    states = []
    for state_labels, split in zip(labels, [None, *splits]):
        sizes = np.bincount(state_labels, minlength=k)
        sums = np.zeros((k, x.shape[1]), dtype=np.float64)
        np.add.at(sums, state_labels, x)
        centroids = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], centroids_before)
        states.append({"labels": state_labels, "centroids": centroids.astype(np.float32), "split": split})
    return states


def _limits(x: np.ndarray, *centroid_sets: np.ndarray, pad: float = 0.12) -> tuple[tuple, tuple]:
    points = np.concatenate([x, *centroid_sets])
    low, high = points.min(0), points.max(0)
    margin = pad * (high - low).max()
    return (low[0] - margin, high[0] + margin), (low[1] - margin, high[1] + margin)


def _draw_state(ax: plt.Axes, x: np.ndarray, labels: np.ndarray | None, centroids: np.ndarray,
                note_duplicates: bool = False) -> None:
    k = len(centroids)
    colours = plt.get_cmap("tab10")(np.arange(k) % 10)
    # Identical points would hide each other: draw each distinct point once, bigger when repeated.
    points, first, counts = np.unique(x, axis=0, return_index=True, return_counts=True)
    point_colours = "0.6" if labels is None else colours[np.asarray(labels)[first]]
    ax.scatter(points[:, 0], points[:, 1], s=8 * np.sqrt(counts), c=point_colours, linewidths=0)
    # The note goes toward the middle of the data, so that it stays inside the panel.
    middle = (x.min(0) + x.max(0)) / 2
    for (px, py), count in zip(points[counts > 1] if note_duplicates else [], counts[counts > 1]):
        right, above = px > middle[0], py > middle[1]
        ax.annotate(f"{count} identical\npoints", (px, py), xytext=(-4 if right else 4, -10 if above else 10),
                    textcoords="offset points", ha="right" if right else "left", va="top" if above else "bottom",
                    fontsize=8, color="0.3")
    sizes = np.ones(k, dtype=int) if labels is None else np.bincount(labels, minlength=k)
    filled = sizes > 0
    # Before any assignment the centroids belong to no cluster yet: draw them white.
    centroid_colours = np.ones((k, 4)) if labels is None else colours
    ax.scatter(centroids[filled, 0], centroids[filled, 1], s=150, marker="X", c=centroid_colours[filled],
               edgecolors="black", linewidths=1.2, zorder=3)
    # Centroids often sit on top of each other: write how many share each position.
    for group, colour, text in ((~filled, "red", "empty"), (filled, "black", "centroids")):
        spots, counts = np.unique(centroids[group].round(3), axis=0, return_counts=True)
        for (cx, cy), count in zip(spots, counts):
            if group is filled and count == 1:
                continue
            ax.annotate(f"{count} {text}", (cx, cy), xytext=(-12, 0), textcoords="offset points",
                        ha="right", va="center", color=colour, fontsize=8, fontweight="bold")
    empty = np.flatnonzero(~filled)
    ax.scatter(centroids[empty, 0], centroids[empty, 1], s=260, marker="o", facecolors="none",
               edgecolors="red", linewidths=2, zorder=4)


def _panel(ax: plt.Axes, limits: tuple, title: str) -> None:
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")


def plot_kmeans_steps(x: np.ndarray, init: np.ndarray, results: Sequence[KMeansResult],
                      steps: Sequence[int] | None = None, title: str = "") -> plt.Figure:
    """The initial centroids, then the state after chosen iterations of :func:`kmeans_steps`.

    Points take their cluster's colour; a centroid is a cross, an empty cluster's centroid a red
    circle. ``steps`` are 0-based iterations (default: 0, 1 and the last).
    """
    shown = sorted(set(steps if steps is not None else (0, 1, len(results) - 1)))
    shown = [t for t in shown if t < len(results)]
    limits = _limits(x, init, *(results[t].centroids for t in shown))
    side = min(2.5, 7.2 / (len(shown) + 1))  # the book's text column is about 7.3 inches wide
    fig, axes = plt.subplots(1, len(shown) + 1, figsize=(side * (len(shown) + 1), side + 0.5))
    _draw_state(axes[0], x, None, init, note_duplicates=True)
    _panel(axes[0], limits, "start")
    for ax, t in zip(axes[1:], shown):
        result = results[t]
        _draw_state(ax, x, result.labels, result.centroids)
        _panel(ax, limits, f"after iteration {t + 1}: {int((result.cluster_sizes() == 0).sum())} empty")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94 if title else 1))
    return fig


def plot_splits(x: np.ndarray, states: Sequence[dict], iteration: int, title: str = "") -> plt.Figure:
    """The states of :func:`replay_splits`: before the first split, then after every split.

    An arrow goes from the donor's centroid before the split to the centroids of its two halves.
    """
    limits = _limits(x, *(s["centroids"] for s in states))
    ncols = min(3, len(states))
    nrows = -(-len(states) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat[len(states):]:
        ax.axis("off")
    for ax, state, before in zip(axes.flat, states, [None, *states]):
        _draw_state(ax, x, state["labels"], state["centroids"], note_duplicates=before is None)
        split = state["split"]
        if split is None:
            n_empty = int((np.bincount(state["labels"], minlength=len(state["centroids"])) == 0).sum())
            _panel(ax, limits, f"iteration {iteration + 1}, before splits:\n{n_empty} empty")
            continue
        origin = before["centroids"][split.donor]
        for target in (split.donor, split.empty):
            ax.annotate("", state["centroids"][target], origin, zorder=5,
                        arrowprops=dict(arrowstyle="-|>", color="black", lw=1.3, shrinkB=7))
        ax.scatter(*origin, s=60, marker="o", facecolors="white", edgecolors="black", zorder=5)
        _panel(ax, limits, f"split: cluster {split.donor} gives\n{split.n_moved} points to cluster {split.empty}")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94 if title else 1))
    return fig


# ----------------------------------------------------------------------------------------------
# Cluster sizes and NMI, raw features against preprocessed ones
# ----------------------------------------------------------------------------------------------

def variance_fractions(features: np.ndarray) -> np.ndarray:
    """The fraction of the total variance along each principal direction of ``features``, largest first."""
    x = check_matrix(features, "features").cpu().numpy()
    centred = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)
    # X^T X and X X^T share their non-zero eigenvalues: decompose the smaller one.
    small = centred.T @ centred if centred.shape[0] >= centred.shape[1] else centred @ centred.T
    eigenvalues = np.linalg.eigvalsh(small.astype(np.float64))[::-1].clip(min=0)
    return eigenvalues / eigenvalues.sum()


def _l2(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float32).tiny)).astype(np.float32)


def preprocessing_variants(features: np.ndarray, dim: int = 256) -> dict[str, np.ndarray]:
    """``features`` four ways: raw, L2 only, PCA-whitened only, and PCA-whitened then L2 (the paper's, Sec. 3.4).

    The last one equals :func:`dctutor.clustering.preprocess`; the PCA is computed once for both
    whitened variants.
    """
    raw = check_matrix(features, "features").cpu().numpy()
    whitened = pca_whiten(raw, dim)
    dim = whitened.shape[1]  # pca_whiten may have clamped it, and said so
    return {"raw": raw, "L2 only": _l2(raw), f"PCA-whiten {dim}": whitened,
            f"PCA-whiten {dim} + L2 (paper)": _l2(whitened)}


def compare_preprocessing(variants: Mapping[str, np.ndarray], labels: np.ndarray, k: int, *, n_iter: int = 20,
                          seed: int = 0, device: str | torch.device | None = None) -> list[dict]:
    """Cluster each of ``variants`` (e.g. :func:`preprocessing_variants`) with the same k-means and measure it.

    torch backend, with reassignment, same ``seed`` for all. Returns one row per variant: ``name``,
    ``dim`` (dimension clustered), ``sizes`` (the k sizes, largest first), ``n_empty``,
    ``largest`` and ``n_effective`` (:func:`dctutor.metrics.cluster_stats`) and ``nmi`` with ``labels``.
    """
    rows = []
    for name, x in variants.items():
        if len(labels) != len(x):
            raise ValueError(f"labels has {len(labels)} entries but variants[{name!r}] has {len(x)} rows")
        result = kmeans(x, k, n_iter=n_iter, seed=seed, device=device)
        stats = cluster_stats(result.labels, k)
        rows.append({"name": name, "dim": int(x.shape[1]), "sizes": np.sort(result.cluster_sizes())[::-1],
                     **{key: stats[key] for key in ("n_empty", "largest", "n_effective")},
                     "nmi": nmi(labels, result.labels)})
    return rows


def plot_sorted_sizes(rows: Sequence[dict], title: str = "") -> plt.Figure:
    """Cluster sizes, largest first, one line per row of :func:`compare_preprocessing` (log scale)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for row in rows:
        sizes = row["sizes"]
        n = int(sizes.sum())
        ax.plot(np.arange(1, len(sizes) + 1), np.maximum(sizes, 0.5) / n, marker=".", ms=3, lw=1.2,
                label=f"{row['name']}: largest {row['largest']:.1%}, {row['n_effective']:.0f} effective")
    k = len(rows[0]["sizes"])
    ax.axhline(1 / k, color="0.4", ls=":", lw=1)
    ax.annotate(f"equal sizes (1/{k})", (k, 1 / k), xytext=(-4, 3), textcoords="offset points",
                ha="right", fontsize=8, color="0.3")
    ax.set_yscale("log")
    ax.set_xlabel("cluster rank (largest first)")
    ax.set_ylabel("fraction of the images")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# dctutor-torch against faiss and scikit-learn
# ----------------------------------------------------------------------------------------------

def mean_sq_distance(x: np.ndarray, centroids: np.ndarray, chunk_size: int = 4096) -> float:
    """Eq. 2 for given centroids: the mean squared distance of every point to its nearest centroid.

    Every implementation is scored with this same function, from its centroids alone.
    """
    xt = check_matrix(x, "x").double()
    ct = check_matrix(centroids, "centroids").double()
    if xt.shape[1] != ct.shape[1]:
        raise ValueError(f"x has {xt.shape[1]} columns but centroids has {ct.shape[1]}")
    total = 0.0
    for start in range(0, len(xt), chunk_size):
        total += float(torch.cdist(xt[start:start + chunk_size], ct).amin(1).square().sum())
    return total / len(xt)


def _sklearn_kmeans(x: np.ndarray, init: np.ndarray, n_iter: int, seed: int) -> dict:
    from sklearn.cluster import KMeans

    # tol=0: stop only when the labels stop changing, like the two others.
    model = KMeans(len(init), init=init, n_init=1, max_iter=n_iter, tol=0, algorithm="lloyd", random_state=seed)
    start = time.perf_counter()
    model.fit(x)
    return {"seconds": time.perf_counter() - start, "iterations": int(model.n_iter_),
            "reassignments": None, "centroids": model.cluster_centers_, "labels": model.labels_}


def compare_implementations(x: np.ndarray, k: int, init: np.ndarray, *, n_iter: int = 20, seed: int = 0,
                            device: str | torch.device | None = None) -> list[dict]:
    """Run dctutor-torch, faiss and scikit-learn's KMeans on ``x`` from the same ``init`` centroids.

    Returns one row per implementation: ``name``, ``objective`` (:func:`mean_sq_distance` of its
    centroids), ``iterations`` run, ``reassignments`` (splits of empty clusters; None for
    scikit-learn, which moves an empty cluster's centroid to a far-away point and does not report
    it), ``n_empty`` in its labels, ``seconds`` and ``nmi_torch`` (NMI of its labels with
    dctutor-torch's).
    """
    x = np.ascontiguousarray(check_matrix(x, "x").cpu().numpy())
    init = np.ascontiguousarray(check_matrix(init, "init").cpu().numpy())
    if init.shape != (k, x.shape[1]):
        raise ValueError(f"init has shape {init.shape} but k={k} centroids of dimension {x.shape[1]} are needed")
    runs = {}
    for name, backend in (("dctutor-torch", "torch"), ("faiss", "faiss")):
        result = kmeans(x, k, n_iter=n_iter, seed=seed, init=init, backend=backend, device=device)
        runs[name] = {"seconds": result.seconds, "iterations": len(result.objective),
                      "reassignments": len(result.reassignments), "centroids": result.centroids,
                      "labels": result.labels}
    runs["scikit-learn"] = _sklearn_kmeans(x, init, n_iter, seed)
    reference = runs["dctutor-torch"]["labels"]
    return [{"name": name, "objective": mean_sq_distance(x, run["centroids"]), "iterations": run["iterations"],
             "reassignments": run["reassignments"],
             "n_empty": int((np.bincount(run["labels"], minlength=k) == 0).sum()),
             "seconds": run["seconds"], "nmi_torch": nmi(reference, run["labels"])} for name, run in runs.items()]


def format_table(rows: Sequence[dict], columns: Mapping[str, str]) -> str:
    """Rows of dicts as an aligned text table; ``columns`` maps each key to a format spec ("" for str)."""
    cells = [[str(key) for key in columns]]
    for row in rows:
        cells.append(["-" if row.get(key) is None else format(row[key], spec) for key, spec in columns.items()])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
                     for line in cells)


def preprocessing_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """:func:`compare_preprocessing`'s rows as a table, one row per variant, units in the header."""
    return pd.DataFrame({
        "variant": [row["name"] for row in rows],
        "dim": [row["dim"] for row in rows],
        "empty": [row["n_empty"] for row in rows],
        "largest (%)": [round(100 * row["largest"], 1) for row in rows],
        "effective k": [round(row["n_effective"], 1) for row in rows],
        "NMI": [round(row["nmi"], 3) for row in rows],
    }).set_index("variant")


def implementations_frame(rows: Sequence[dict]) -> pd.DataFrame:
    """:func:`compare_implementations`' rows as a table, one row per implementation ("-" where an
    implementation does not report a number, e.g. scikit-learn's reassignments)."""
    return pd.DataFrame({
        "implementation": [row["name"] for row in rows],
        "Eq. 2": [f"{row['objective']:.4f}" for row in rows],
        "iterations": [row["iterations"] for row in rows],
        "splits": ["-" if row["reassignments"] is None else row["reassignments"] for row in rows],
        "empty": [row["n_empty"] for row in rows],
        "time (s)": [f"{row['seconds']:.2f}" for row in rows],
        "NMI with torch": [f"{row['nmi_torch']:.3f}" for row in rows],
    }).set_index("implementation")
