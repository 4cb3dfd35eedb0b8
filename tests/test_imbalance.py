"""Properties of dctutor.imbalance: Zipf-skewed pseudo-labels and balanced training (Sec. 3.3)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402

from dctutor.labs.imbalance import (BALANCES, collapse_figure, curves_figure, score_predictions,  # noqa: E402
                               summary_table, train_head, zipf_sizes, zipf_split)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Ten overlapping Gaussian clusters of 150 points: learnable, but not trivially."""
    x, y = make_blobs(n_samples=1500, centers=10, n_features=16, cluster_std=3.0, random_state=0)
    return x.astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def skewed_runs(blobs):
    x, y = blobs
    split = zipf_split(y, 2.0, 100, 30, seed=0)
    runs = [train_head(x[split.train], y[split.train], x[split.test], y[split.test], 10, balance=balance,
                       epochs=5, lr=0.005, seed=seed, device="cpu")
            for seed in (0, 1) for balance in BALANCES]
    return split, runs


def test_zipf_sizes_follow_the_power_law():
    assert zipf_sizes(5, 60, 0.0).tolist() == [60] * 5
    assert zipf_sizes(4, 120, 1.0).tolist() == [120, 60, 40, 30]
    sizes = zipf_sizes(50, 1000, 2.0)
    assert sizes[0] == 1000 and sizes.min() >= 1
    assert np.all(np.diff(sizes) <= 0)


@pytest.mark.parametrize("bad", [{"k": 0}, {"largest": 0}, {"exponent": -1.0}, {"exponent": True}])
def test_zipf_sizes_rejects_bad_values(bad):
    args = {"k": 5, "largest": 10, "exponent": 1.0} | bad
    with pytest.raises((ValueError, TypeError), match=next(iter(bad))):
        zipf_sizes(**args)


def test_zipf_split_is_balanced_held_out_and_zipf_sized_for_training():
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(6), [300, 80, 200, 150, 60, 120]))
    split = zipf_split(labels, 1.0, 240, 20, seed=3)
    assert not set(split.train) & set(split.test)
    assert np.bincount(labels[split.test]).tolist() == [20] * 6
    assert split.ranking.tolist() == [0, 2, 3, 5, 1, 4]  # by size, largest first
    targets = zipf_sizes(6, 240, 1.0)
    pools = np.bincount(labels)[split.ranking] - 20
    assert split.train_sizes[split.ranking].tolist() == np.minimum(targets, pools).tolist()
    assert np.array_equal(np.bincount(labels[split.train], minlength=6), split.train_sizes)
    assert split.largest_share() == pytest.approx(240 / split.train_sizes.sum())
    again = zipf_split(labels, 1.0, 240, 20, seed=3)
    assert np.array_equal(split.train, again.train) and np.array_equal(split.test, again.test)


def test_zipf_split_names_the_fix_when_a_cluster_is_too_small():
    labels = np.repeat(np.arange(3), [50, 50, 10])
    with pytest.raises(ValueError, match="test_per_cluster=10"):
        zipf_split(labels, 1.0, 40, 10)


def test_score_predictions_on_perfect_and_constant_predictions():
    truth = np.repeat(np.arange(4), 5)
    perfect = score_predictions(truth, truth.copy(), 4, largest=0)
    assert perfect["balanced_accuracy"] == 1.0
    assert perfect["largest_share"] == 0.25 and perfect["n_predicted"] == 4
    constant = score_predictions(truth, np.zeros_like(truth), 4, largest=0)
    assert constant["per_cluster_accuracy"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert constant["balanced_accuracy"] == 0.25
    assert constant["largest_share"] == 1.0 and constant["n_predicted"] == 1
    assert constant["predicted_counts"].tolist() == [20, 0, 0, 0]


def test_score_predictions_skips_clusters_absent_from_the_truth():
    scores = score_predictions(np.array([0, 0, 2]), np.array([0, 1, 2]), 3, largest=0)
    assert np.isnan(scores["per_cluster_accuracy"][1])
    assert scores["balanced_accuracy"] == pytest.approx(0.75)


def test_shuffling_favours_the_largest_cluster_and_uniform_sampling_does_not(skewed_runs):
    _, runs = skewed_runs
    table = summary_table(runs)
    assert table["shuffle"]["largest_share"] > table["uniform"]["largest_share"] + 0.1
    assert table["shuffle"]["balanced_accuracy"] + 0.1 < table["uniform"]["balanced_accuracy"]


def test_uniform_sampling_and_weighting_end_close(skewed_runs):
    _, runs = skewed_runs
    table = summary_table(runs)
    gap = abs(table["uniform"]["balanced_accuracy"] - table["weighted"]["balanced_accuracy"])
    assert gap < 0.5 * (table["uniform"]["balanced_accuracy"] - table["shuffle"]["balanced_accuracy"])


def test_train_head_is_reproducible_and_restores_threads(blobs):
    x, y = blobs
    split = zipf_split(y, 1.0, 60, 20, seed=0)
    threads = torch.get_num_threads()
    args = (x[split.train], y[split.train], x[split.test], y[split.test], 10)
    first = train_head(*args, balance="uniform", epochs=2, seed=5, device="cpu")
    second = train_head(*args, balance="uniform", epochs=2, seed=5, device="cpu")
    assert torch.get_num_threads() == threads
    assert len(first.history) == 2
    assert [r["predicted_counts"].tolist() for r in first.history] == \
        [r["predicted_counts"].tolist() for r in second.history]
    assert first.final["predicted_counts"].sum() == len(split.test)


@pytest.mark.parametrize("bad, match", [({"balance": "oversample"}, "balance"), ({"epochs": 0}, "epochs"),
                                        ({"k": 3}, "k=3")])
def test_train_head_rejects_bad_arguments(blobs, bad, match):
    x, y = blobs
    with pytest.raises(ValueError, match=match):
        train_head(x[:100], y[:100], x[100:200], y[100:200], **({"k": 10} | bad))


def test_figures_draw(skewed_runs):
    split, runs = skewed_runs
    for fig in (collapse_figure(split, runs), curves_figure(runs)):
        assert isinstance(fig, plt.Figure) and fig.get_size_inches()[0] <= 7.3, "fits the text column"
        plt.close(fig)


def test_defence_runs_switch_both_defences_and_keep_every_epoch():
    from dctutor.data import load_dataset
    from dctutor.labs.imbalance import defence_runs, trajectories_figure

    data = load_dataset("shapes", n=60, image_size=16, seed=0)
    runs = defence_runs(data, [0], k=5, epochs=2, lr=0.05, passes=1, batch_size=16, width=0.125, device="cpu")
    assert [(r["defences"], r["seed"]) for r in runs] == [("defences on", 0), ("defences off", 0)]
    assert all(len(r["history"]) == 2 and r["error"] is None and 0 <= r["history"][-1]["spread"] <= 1 for r in runs)
    fig = trajectories_figure(runs, "t")
    assert fig.get_size_inches()[0] <= 7.3 and len(fig.axes[0].lines) == 2
    plt.close(fig)
