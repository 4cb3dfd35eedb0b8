"""Properties of dctutor.kmeans_viz: chapter 2's replay of k-means and its comparisons."""
from __future__ import annotations

import importlib.util
from dataclasses import replace

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from dctutor.labs import kmeans_steps as kv
from dctutor.metrics import nmi  # noqa: E402
from dctutor.clustering import Reassignment, kmeans, preprocess  # noqa: E402

NO_FAISS = importlib.util.find_spec("faiss") is None


@pytest.fixture(scope="module")
def toy() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = kv.duplicate_blob_data(seed=0)
    return x, y, x[np.flatnonzero(y == 4)[:5]]  # every centroid on the same duplicated point


def test_duplicate_blob_data_has_four_blobs_and_identical_points(toy):
    x, y, _ = toy
    assert x.shape == (280, 2) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [60, 60, 60, 60, 40]
    assert len(np.unique(x[y == 4], axis=0)) == 1
    with pytest.raises(ValueError, match="n_duplicates=1"):
        kv.duplicate_blob_data(n_duplicates=1)


def test_without_reassignment_the_toy_gets_stuck_with_empty_clusters(toy):
    x, _, init = toy
    steps = kv.kmeans_steps(x, 5, init, 15, reassign_empty=False)
    assert len(steps) < 15  # converged: the list stops early
    assert (steps[-1].cluster_sizes() == 0).sum() == 3
    assert steps[-1].reassignments == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_with_reassignment_no_step_has_an_empty_cluster_and_the_blobs_are_found(toy, seed):
    x, y, init = toy
    steps = kv.kmeans_steps(x, 5, init, 15, reassign_empty=True, seed=seed)
    assert all((s.cluster_sizes() > 0).all() for s in steps)
    assert len(steps[-1].reassignments) == 4 and {r.iteration for r in steps[-1].reassignments} == {0}
    assert nmi(y, steps[-1].labels) > 0.99


def test_kmeans_steps_replays_a_single_run_iteration_by_iteration(toy):
    x, _, init = toy
    steps = kv.kmeans_steps(x, 5, init, 6, reassign_empty=True, seed=1)
    full = kmeans(x, 5, n_iter=len(steps), seed=1, init=init)
    assert np.array_equal(steps[-1].labels, full.labels)
    for t, step in enumerate(steps):  # each run is a prefix of the longer ones
        np.testing.assert_allclose(step.objective[: t + 1], full.objective[: t + 1], rtol=1e-5)
    with pytest.raises(ValueError, match="n_steps=0 must be at least 1"):
        kv.kmeans_steps(x, 5, init, 0, reassign_empty=True)


def test_replay_splits_rebuilds_every_state_of_the_iteration(toy):
    x, _, init = toy
    first = kv.kmeans_steps(x, 5, init, 1, reassign_empty=True, seed=0)[0]
    states = kv.replay_splits(x, first, 0, init)
    assert len(states) == 1 + len(first.reassignments)
    # before the splits: everything in cluster 0 (the tie goes to the first centroid), 4 empty
    assert np.bincount(states[0]["labels"], minlength=5).tolist() == [280, 0, 0, 0, 0]
    np.testing.assert_allclose(states[0]["centroids"][1:], init[1:])  # empty clusters keep their centroid
    for before, after in zip(states, states[1:]):
        split = after["split"]
        moved = (before["labels"] != after["labels"])
        # a split moves exactly n_moved points, all from the donor to the empty cluster
        assert moved.sum() == split.n_moved
        assert (before["labels"][moved] == split.donor).all() and (after["labels"][moved] == split.empty).all()
        assert (before["labels"] != split.empty).all()
    assert np.array_equal(states[-1]["labels"], first.labels)
    np.testing.assert_allclose(states[-1]["centroids"], first.centroids, atol=1e-5)


def test_replay_splits_refuses_runs_it_cannot_replay(toy):
    x, _, init = toy
    result = kmeans(x, 5, n_iter=1, init=init)
    later = replace(result, reassignments=[Reassignment(2, 1, 0, 5)])
    with pytest.raises(ValueError, match="ran past iteration 0"):
        kv.replay_splits(x, later, 0, init)
    from_faiss = replace(result, reassignments=[Reassignment(0, -1, -1, -1)])
    with pytest.raises(ValueError, match="replay a backend='torch' run"):
        kv.replay_splits(x, from_faiss, 0, init)
    # an iteration without splits replays to a single state
    second = kv.kmeans_steps(x, 5, init, 2, reassign_empty=True)[-1]
    (state,) = kv.replay_splits(x, second, 1, result.centroids)
    assert state["split"] is None and np.array_equal(state["labels"], second.labels)


def test_reassignment_table_lists_every_split(toy):
    x, _, init = toy
    result = kmeans(x, 5, n_iter=3, init=init)
    lines = kv.reassignment_table(result).splitlines()
    assert len(lines) == 1 + len(result.reassignments)
    assert kv.reassignment_table(kmeans(x, 5, n_iter=3, seed=0)) == "no reassignment"


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 600)
    # a dominant shared direction (like random ReLU features), class centres and noise, all positive
    shared = rng.normal(size=(600, 1)) * 20 * rng.normal(size=(1, 64))
    return (shared + rng.normal(size=(5, 64))[y] * 3 + rng.normal(size=(600, 64))).astype(np.float32), y


def test_variance_fractions_sum_to_one_largest_first(features):
    fractions = kv.variance_fractions(features[0])
    assert len(fractions) == 64 and fractions.sum() == pytest.approx(1.0)
    assert (np.diff(fractions) <= 1e-12).all() and fractions[0] > 0.5


def test_preprocessing_variants_end_with_the_papers_pipeline(features):
    variants = kv.preprocessing_variants(features[0], 16)
    assert list(variants) == ["raw", "L2 only", "PCA-whiten 16", "PCA-whiten 16 + L2 (paper)"]
    np.testing.assert_allclose(variants["PCA-whiten 16 + L2 (paper)"], preprocess(features[0], 16), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(variants["L2 only"], axis=1), 1.0, atol=1e-5)
    with pytest.warns(UserWarning, match="using dim=64"):
        assert "PCA-whiten 64" in kv.preprocessing_variants(features[0], 256)


def test_compare_preprocessing_measures_every_variant(features):
    x, y = features
    rows = kv.compare_preprocessing(kv.preprocessing_variants(x, 16), y, 20, seed=0)
    assert [r["dim"] for r in rows] == [64, 64, 16, 16]
    for row in rows:
        assert row["sizes"].sum() == 600 and (np.diff(row["sizes"]) <= 0).all()
        assert row["n_empty"] == 0 and 0 <= row["nmi"] <= 1
    with pytest.raises(ValueError, match="labels has 5 entries"):
        kv.compare_preprocessing({"raw": x}, y[:5], 20)


def test_mean_sq_distance_is_eq2_for_the_nearest_centroid():
    rng = np.random.default_rng(1)
    x, c = rng.normal(size=(50, 3)), rng.normal(size=(4, 3))
    brute = ((x[:, None] - c[None]) ** 2).sum(-1).min(1).mean()
    assert kv.mean_sq_distance(x, c, chunk_size=7) == pytest.approx(brute, rel=1e-9)
    with pytest.raises(ValueError, match="3 columns but centroids has 2"):
        kv.mean_sq_distance(x, c[:, :2])


@pytest.mark.skipif(NO_FAISS, reason="faiss is not installed")
def test_implementations_agree_from_the_same_start(features):
    x = preprocess(features[0], 16)
    init = x[np.random.default_rng(0).choice(len(x), 10, replace=False)]
    rows = {r["name"]: r for r in kv.compare_implementations(x, 10, init, seed=0)}
    assert list(rows) == ["dctutor-torch", "faiss", "scikit-learn"]
    for row in rows.values():
        assert row["objective"] == pytest.approx(rows["faiss"]["objective"], rel=1e-4)
        assert row["nmi_torch"] > 0.99 and row["n_empty"] == 0
    assert rows["scikit-learn"]["reassignments"] is None


@pytest.mark.skipif(NO_FAISS, reason="faiss is not installed")
def test_from_a_degenerate_start_every_implementation_ends_without_empty_clusters(features):
    x = preprocess(features[0], 16)
    rows = {r["name"]: r for r in kv.compare_implementations(x, 10, np.repeat(x[:1], 10, 0), seed=0)}
    # identical centroids tie, up to the rounding of the matrix product: most clusters start empty
    assert 5 <= rows["dctutor-torch"]["reassignments"] <= 9
    assert rows["faiss"]["reassignments"] >= rows["dctutor-torch"]["reassignments"]
    assert all(r["n_empty"] == 0 for r in rows.values())


def test_compare_implementations_checks_init(features):
    with pytest.raises(ValueError, match=r"init has shape \(3, 64\) but k=4"):
        kv.compare_implementations(features[0], 4, features[0][:3])


def test_format_table_aligns_and_marks_missing_values():
    table = kv.format_table([{"name": "a", "v": 1.23456, "n": None}, {"name": "long name", "v": 10.0, "n": 3}],
                            {"name": "", "v": ".2f", "n": "d"})
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].split() == ["a", "1.23", "-"] and lines[2].split()[-2:] == ["10.00", "3"]


def test_figures_draw(toy, features):
    x, _, init = toy
    steps = kv.kmeans_steps(x, 5, init, 4, reassign_empty=True)
    figures = [kv.plot_kmeans_steps(x, init, steps, title="t"),
               kv.plot_splits(x, kv.replay_splits(x, steps[0], 0, init), 0),
               kv.plot_sorted_sizes(kv.compare_preprocessing({"raw": features[0]}, features[1], 10))]
    assert all(fig.get_size_inches()[0] <= 7.3 for fig in figures), "every figure fits the text column"
    matplotlib.pyplot.close("all")
