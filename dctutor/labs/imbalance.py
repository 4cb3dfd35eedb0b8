"""Chapter 3's lab: skewed pseudo-labels and what they do to a classifier (Caron et al., ECCV 2018, Sec. 3.3).

Sec. 3.3 warns that when most images sit in a few clusters the network learns to tell only those
apart, and that drawing images uniformly over the pseudo-labels (or, equivalently, weighting each
image's loss by the inverse size of its cluster) prevents it. Chapter 3 measures this:

* :func:`zipf_split` turns balanced-ish pseudo-labels into a training set whose cluster sizes
  follow a Zipf law (the distribution Sec. 3.3 cites for hashtags) plus a balanced held-out set;
* :func:`train_head` trains a small classifier on it with one of three ``BALANCES``: plain
  shuffling, :class:`~dctutor.sampling.UniformLabelSampler`, or
  :func:`~dctutor.sampling.inverse_frequency_weights`, and scores it on the held-out set after
  every epoch (:func:`score_predictions`);
* :func:`defence_runs` trains the same random AlexNets with and without the defences and keeps
  every epoch, diverged runs included, and :func:`trajectories_figure` draws them;
* :func:`reference_sampler_draws` replays how the reference code's sampler indexes its data set, to
  compare what it really draws with a truly uniform sampler;
* the ``*_figure`` functions draw the chapter's plots.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
from torch import nn

from ..data import ImageDataset
from ..deepcluster import DeepClusterConfig, train_deepcluster
from ..device import pick_device
from ..models import alexnet, small_input_for
from ..sampling import UniformLabelSampler, inverse_frequency_weights
from ..validation import check_choice, check_float, check_int, check_labels

BALANCES = ("shuffle", "uniform", "weighted")
_COLOURS = {"shuffle": "tab:red", "uniform": "tab:blue", "weighted": "tab:green"}
_NAMES = {"shuffle": "plain shuffling", "uniform": "UniformLabelSampler", "weighted": "inverse-frequency weights"}


def zipf_sizes(k: int, largest: int, exponent: float) -> np.ndarray:
    """Cluster sizes ``round(largest / r**exponent)`` for ranks r = 1..k, each at least 1.

    ``exponent=0`` gives k equal clusters; 1 is Zipf's law; 2 is heavier: with 10 clusters the
    largest then holds more than half of the images.
    """
    check_int(k, "k", 1, "k=10")
    check_int(largest, "largest", 1, "largest=400 (images in the biggest cluster)")
    check_float(exponent, "exponent", 0, "exponent=1.0 (Zipf's law)", high=10)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    return np.maximum(1, np.round(largest * ranks ** -float(exponent))).astype(np.int64)


@dataclass
class ZipfSplit:
    """Indices of a Zipf-skewed training set and a balanced held-out set (see :func:`zipf_split`).

    ``ranking[r]`` is the cluster id of rank r (0 = largest training cluster); ``train_sizes`` are
    the training images per cluster id.
    """

    train: np.ndarray
    test: np.ndarray
    ranking: np.ndarray
    train_sizes: np.ndarray
    test_per_cluster: int

    def largest_share(self) -> float:
        """Fraction of the training images in the largest cluster."""
        return float(self.train_sizes.max() / self.train_sizes.sum())


def zipf_split(labels: np.ndarray, exponent: float, largest: int, test_per_cluster: int,
               seed: int = 0) -> ZipfSplit:
    """Hold out ``test_per_cluster`` images of every cluster, then keep a Zipf-sized training set.

    Clusters are ranked by size (largest first, ties by id); the cluster of rank r keeps
    ``zipf_sizes(k, largest, exponent)[r]`` of its remaining images, or all of them if it has
    fewer. The held-out set is balanced, so a classifier that favours the big clusters cannot hide
    it there. Every cluster must have more than ``test_per_cluster`` images.
    """
    labels = check_labels(labels)
    check_int(test_per_cluster, "test_per_cluster", 1, "test_per_cluster=40")
    k = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=k)
    if sizes.min() <= test_per_cluster:
        raise ValueError(f"cluster {int(sizes.argmin())} has {sizes.min()} images, not more than "
                         f"test_per_cluster={test_per_cluster}; lower test_per_cluster or k, or use more images")
    targets = zipf_sizes(k, largest, exponent)
    ranking = np.lexsort((np.arange(k), -sizes))
    rng = np.random.default_rng(seed)
    train, test = [], []
    for rank, cluster in enumerate(ranking):
        members = rng.permutation(np.flatnonzero(labels == cluster))
        test.append(members[:test_per_cluster])
        train.append(members[test_per_cluster:test_per_cluster + targets[rank]])
    train_idx, test_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
    return ZipfSplit(train_idx, test_idx, ranking, np.bincount(labels[train_idx], minlength=k),
                     int(test_per_cluster))


def score_predictions(truth: np.ndarray, predicted: np.ndarray, k: int, largest: int) -> dict:
    """Per-cluster accuracy and the predicted-label histogram of one evaluation.

    Returns ``per_cluster_accuracy`` (k floats, NaN for ids absent from ``truth``),
    ``balanced_accuracy`` (their mean), ``predicted_counts`` (k ints), ``largest_share`` (fraction
    of predictions that are cluster ``largest``) and ``n_predicted`` (distinct ids predicted).
    """
    truth, predicted = check_labels(truth, "truth"), check_labels(predicted, "predicted")
    if len(truth) != len(predicted):
        raise ValueError(f"truth has {len(truth)} labels but predicted has {len(predicted)}")
    hits = np.bincount(truth, weights=truth == predicted, minlength=k)[:k]
    totals = np.bincount(truth, minlength=k)[:k]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_cluster = np.where(totals > 0, hits / totals, np.nan)
    counts = np.bincount(predicted, minlength=k)[:k]
    return {"per_cluster_accuracy": per_cluster, "balanced_accuracy": float(np.nanmean(per_cluster)),
            "predicted_counts": counts, "largest_share": float(counts[largest] / len(predicted)),
            "n_predicted": int(np.count_nonzero(counts))}


@dataclass
class HeadRun:
    """One :func:`train_head` run: its settings and one :func:`score_predictions` row per epoch."""

    balance: str
    seed: int
    history: list[dict] = field(default_factory=list)

    @property
    def final(self) -> dict:
        return self.history[-1]

    def curve(self, key: str) -> np.ndarray:
        """``key`` (e.g. ``"balanced_accuracy"``) over epochs."""
        return np.array([row[key] for row in self.history])


def head(in_dim: int, k: int, hidden: int = 256) -> nn.Sequential:
    """The classifier: linear-ReLU-linear, a two-layer stand-in for the convnet's fc layers."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, k))


def train_head(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, k: int, *,
               balance: str = "uniform", epochs: int = 10, batch_size: int = 64, lr: float = 0.01,
               hidden: int = 256, seed: int = 0, device: str | torch.device | None = None) -> HeadRun:
    """Train :func:`head` on ``(x_train, y_train)`` and score it on the held-out set after every epoch.

    ``balance`` chooses how the skew of ``y_train`` is handled (Sec. 3.3): ``"shuffle"`` draws
    every image once per epoch in random order; ``"uniform"`` draws as many images per epoch from
    :class:`UniformLabelSampler` (equal share per cluster); ``"weighted"`` shuffles but weights each
    image's cross-entropy by :func:`inverse_frequency_weights`. All three take the same number of
    SGD steps (momentum 0.9) from the same initialisation for a given ``seed``. Inputs are
    standardised with the training set's per-dimension mean and standard deviation.
    """
    check_choice(balance, "balance", BALANCES)
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("hidden", hidden), ("k", k)):
        check_int(value, name, 1)
    y_train, y_test = check_labels(y_train, "y_train"), check_labels(y_test, "y_test")
    if max(y_train.max(), y_test.max()) >= k:
        raise ValueError(f"labels go up to {max(y_train.max(), y_test.max())} but k={k}; pass the number of clusters")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test):
        raise ValueError(f"x and y lengths differ: train {len(x_train)} vs {len(y_train)}, "
                         f"test {len(x_test)} vs {len(y_test)}")
    dev = pick_device(device)
    # Standardise every input dimension with the training statistics, so lr means the same on any features.
    x_train, x_test = np.asarray(x_train, dtype=np.float32), np.asarray(x_test, dtype=np.float32)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xtr = torch.as_tensor((x_train - mean) / std, device=dev)
    xte = torch.as_tensor((x_test - mean) / std, device=dev)
    ytr = torch.as_tensor(y_train, device=dev)
    weights = inverse_frequency_weights(y_train).to(dev) if balance == "weighted" else torch.ones(len(ytr), device=dev)
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = head(xtr.shape[1], k, hidden).to(dev)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sampler = UniformLabelSampler(y_train, generator=gen)
    largest = int(np.bincount(y_train, minlength=k).argmax())
    run = HeadRun(balance, seed)
    with _one_cpu_thread(dev):
        for _ in range(epochs):
            model.train()
            order = torch.tensor(list(sampler)) if balance == "uniform" else torch.randperm(len(ytr), generator=gen)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size].to(dev)
                losses = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx], reduction="none")
                loss = (losses * weights[idx]).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                predicted = model(xte).argmax(1).cpu().numpy()
            run.history.append(score_predictions(y_test, predicted, k, largest))
    return run


@contextmanager
def _one_cpu_thread(dev: torch.device) -> Iterator[None]:
    """Run on one CPU thread: the head's matrices are so small that a second thread mostly waits,
    and on a busy machine it makes each step ten times slower. The caller's setting is restored."""
    if dev.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def reference_sampler_draws(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Draws per cluster of one epoch of the reference code's sampler, as its training loop uses it.

    facebookresearch/deepcluster draws, for every non-empty cluster, ``N // n_nonempty + 1`` of its
    members' *data set* indices (``util.UnifLabelSampler``), but hands them to a data set rebuilt in
    cluster order (``clustering.cluster_assign``), where position ``i`` is the ``i``-th image of the
    clusters laid end to end. The drawn numbers are therefore read as positions in that order, and
    the cluster an index falls in is the one occupying that position. This function replays that
    indexing with numpy (cluster members listed in data set order, as the reference builds them)
    and returns the number of draws each cluster receives, shape (k,).
    """
    labels = check_labels(labels)
    rng = np.random.default_rng(seed)
    n = len(labels)
    members = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
    nonempty = [m for m in members if len(m)]
    per_cluster = n // len(nonempty) + 1
    drawn = np.concatenate([rng.choice(m, per_cluster, replace=len(m) <= per_cluster) for m in nonempty])
    drawn = rng.permutation(drawn)[:n]
    position_label = np.concatenate([np.full(len(m), c) for c, m in enumerate(members)])
    return np.bincount(position_label[drawn], minlength=len(members))


def summary_table(runs: Sequence[HeadRun]) -> dict[str, dict[str, float]]:
    """Mean over seeds of the final epoch's scalar scores, per balance."""
    table: dict[str, dict[str, float]] = {}
    for balance in BALANCES:
        finals = [r.final for r in runs if r.balance == balance]
        if finals:
            table[balance] = {key: float(np.mean([f[key] for f in finals]))
                              for key in ("balanced_accuracy", "largest_share", "n_predicted")}
    return table


def collapse_figure(split: ZipfSplit, runs: Sequence[HeadRun], balances: Sequence[str] = ("shuffle", "uniform")
                    ) -> plt.Figure:
    """Three panels along the cluster rank: training sizes, per-cluster held-out accuracy, and the
    histogram of predicted labels on the balanced held-out set (seeds averaged)."""
    k = len(split.ranking)
    ranks = np.arange(1, k + 1)
    fig, axes = plt.subplots(3, 1, figsize=(7.2, 6.6), sharex=True)
    axes[0].bar(ranks, split.train_sizes[split.ranking], color="gray")
    axes[0].set(title="training images per cluster", xlabel="cluster rank", ylabel="images")
    width = 0.8 / len(balances)
    for i, balance in enumerate(balances):
        finals = [r.final for r in runs if r.balance == balance]
        acc = np.mean([f["per_cluster_accuracy"] for f in finals], axis=0)[split.ranking]
        counts = np.mean([f["predicted_counts"] for f in finals], axis=0)[split.ranking]
        offset = (i - (len(balances) - 1) / 2) * width
        axes[1].bar(ranks + offset, acc, width, color=_COLOURS[balance], label=_NAMES[balance])
        axes[2].bar(ranks + offset, counts, width, color=_COLOURS[balance], label=_NAMES[balance])
    axes[1].set(title="held-out accuracy per cluster", xlabel="cluster rank", ylim=(0, 1.02))
    axes[2].axhline(split.test_per_cluster, color="black", ls="--", lw=1, label="true count")
    axes[2].set(title="predicted labels (balanced held-out set)", xlabel="cluster rank", ylabel="predictions")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(ranks)
    fig.tight_layout()
    return fig


def curves_figure(runs: Sequence[HeadRun]) -> plt.Figure:
    """Balanced accuracy and share of predictions in the largest cluster over epochs: one line per
    seed (thin) and the mean (thick) for every balance, side by side. The legend sits below the
    three panels, where it covers no curve."""
    metrics = {"balanced_accuracy": "balanced accuracy (held-out)",
               "largest_share": "predictions in the largest cluster",
               "n_predicted": "distinct clusters predicted"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(7.2, 3.1))
    handles = []
    for ax, (key, title) in zip(axes, metrics.items()):
        for balance in BALANCES:
            curves = np.array([r.curve(key) for r in runs if r.balance == balance])
            if not len(curves):
                continue
            epochs = np.arange(1, curves.shape[1] + 1)
            ax.plot(epochs, curves.T, color=_COLOURS[balance], lw=0.6, alpha=0.4)
            mean, = ax.plot(epochs, curves.mean(0), color=_COLOURS[balance], lw=2, label=_NAMES[balance])
            if ax is axes[0]:
                handles.append(mean)
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    k = len(runs[0].final["predicted_counts"])
    handles.append(axes[1].axhline(1 / k, color="black", ls="--", lw=1, label="true share (balanced set)"))
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return fig


DEFENCES = {"defences on": (True, True), "defences off": (False, False)}
_DEFENCE_COLOURS = {"defences on": "tab:blue", "defences off": "tab:red"}


def defence_runs(data: ImageDataset, seeds: Sequence[int], *, k: int, epochs: int, lr: float, passes: int,
                 batch_size: int = 32, width: float = 0.25, device: str | torch.device | None = None,
                 on_run: Callable[[dict], None] | None = None) -> list[dict]:
    """DeepCluster with both defences of Sec. 3.3 (uniform sampling, empty-cluster reassignment) and
    with neither, from the same random AlexNet for every seed.

    One row per (defences, seed): ``defences``, ``seed``, ``k``, ``history`` (the loop's rows up to
    the last healthy epoch), ``error`` (the divergence message, or None) and ``seconds``. A run that
    diverges is kept: how it got there is part of the answer. ``on_run(row)`` is called after each run.
    """
    rows = []
    for defences, (uniform, reassign) in DEFENCES.items():
        for seed in seeds:
            config = DeepClusterConfig(k=k, epochs=epochs, batch_size=batch_size, lr=lr, train_passes=passes,
                                       uniform_sampling=uniform, reassign_empty=reassign, seed=seed,
                                       pca_dim=min(256, len(data) // 2))
            net = alexnet(k, small_input=small_input_for(data.image_size), width=width, seed=seed)
            history: list[dict] = []
            start = time.perf_counter()
            try:
                train_deepcluster(net, data, config, device=device, progress=False,
                                  on_epoch_end=lambda so_far: history.__setitem__(slice(None), so_far))
                error = None
            except FloatingPointError as err:
                error = str(err)
            rows.append({"defences": defences, "seed": seed, "k": k, "history": history, "error": error,
                         "seconds": time.perf_counter() - start})
            if on_run is not None:
                on_run(rows[-1])
    return rows


def trajectories_figure(runs: Sequence[dict], title: str = "") -> plt.Figure:
    """Four panels over epochs for runs of :func:`defence_runs` (or ``benchmarks/bench_collapse.py``):
    the largest cluster's share, the effective number of clusters over k, the features' spread and
    NMI with the labels; one thin line per seed, red without the defences, blue with them."""
    panels = [("largest", "images in the largest cluster", (0, 1.02)),
              ("n_effective", "effective k / k", (0, 1.02)),
              ("spread", "feature spread (log scale)", None),
              ("nmi_labels", "NMI(clusters, labels)", (0, None))]
    fig, axes = plt.subplots(2, 2, figsize=(7.2, 5.3))
    for ax, (key, label, ylim) in zip(axes.ravel(), panels):
        for run in runs:
            if not run["history"] or key not in run["history"][0]:
                continue
            values = [row[key] / (run["k"] if key == "n_effective" else 1) for row in run["history"]]
            if key == "spread":  # a log axis cannot show an exact zero
                values = [max(v, 1e-12) for v in values]
            epochs = [row["epoch"] for row in run["history"]]
            ax.plot(epochs, values, color=_DEFENCE_COLOURS[run["defences"]], lw=1.2, alpha=0.8)
            if isinstance(run["error"], str):  # None, or NaN once read back from JSON, when it did not
                ax.plot(epochs[-1:], values[-1:], "x", color=_DEFENCE_COLOURS[run["defences"]], ms=7)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        if key == "spread":
            ax.set_yscale("log")
        elif ylim:
            ax.set_ylim(*ylim)
    handles = [plt.Line2D([], [], color=c, label=name) for name, c in _DEFENCE_COLOURS.items()]
    handles.append(plt.Line2D([], [], color="gray", marker="x", ls="", label="diverged after this epoch"))
    # Below the panels, where it covers no trajectory.
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
