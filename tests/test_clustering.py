"""Properties of dctutor.clustering: k-means pseudo-labels and the PCA-whitening of Sec. 3.4."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import normalized_mutual_info_score

from dctutor.clustering import KMeansResult, kmeans, pca_whiten, preprocess

NO_FAISS = importlib.util.find_spec("faiss") is None
BOTH = ["torch", pytest.param("faiss", marks=pytest.mark.skipif(NO_FAISS, reason="faiss is not installed"))]


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_blobs(n_samples=1500, centers=6, n_features=8, cluster_std=0.5, random_state=0)
    return x.astype(np.float32), y


def far_init(k: int, d: int) -> np.ndarray:
    """Every centroid on the same far-away point: all points tie, go to cluster 0, k - 1 are empty."""
    return np.full((k, d), 100.0, dtype=np.float32)


def sse_of(x: np.ndarray, result: KMeansResult) -> float:
    return float(((x - result.centroids[result.labels]) ** 2).sum(1).mean())


@pytest.mark.parametrize("backend", BOTH)
def test_no_cluster_is_empty_even_from_a_degenerate_init(blobs, backend):
    x, _ = blobs
    result = kmeans(x, 40, n_iter=5, backend=backend, init=far_init(40, x.shape[1]))
    assert result.cluster_sizes().min() > 0
    assert len(result.reassignments) >= 39
    if backend == "faiss":  # faiss reports how many splits, not which clusters
        assert {(r.empty, r.donor, r.n_moved) for r in result.reassignments} == {(-1, -1, -1)}


def test_a_reassignment_splits_the_donor_between_two_non_empty_clusters(blobs):
    x, _ = blobs
    result = kmeans(x, 2, n_iter=1, init=far_init(2, x.shape[1]))
    (split,) = result.reassignments
    assert (split.iteration, split.empty, split.donor) == (0, 1, 0)
    sizes = result.cluster_sizes()
    assert split.n_moved == sizes[1] > 0 and sizes[0] > 0 and sizes.sum() == len(x)
    for j in range(2):  # both halves were recentred on their own points
        np.testing.assert_allclose(result.centroids[j], x[result.labels == j].mean(0), atol=1e-4)


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("degenerate", [False, True])
def test_objective_never_increases_between_lloyd_steps(blobs, backend, degenerate):
    x, _ = blobs
    init = far_init(30, x.shape[1]) if degenerate else None
    result = kmeans(x, 30, n_iter=15, backend=backend, init=init, seed=3)
    split_at = {r.iteration for r in result.reassignments}
    assert (len(split_at) > 0) == degenerate
    for i in range(1, len(result.objective)):
        if i not in split_at:
            assert result.objective[i] <= result.objective[i - 1] * (1 + 1e-6), i
    assert result.objective[-1] == pytest.approx(sse_of(x, result), rel=1e-4)


@pytest.mark.parametrize("backend", BOTH)
def test_objective_is_the_mean_squared_distance_after_each_iteration(blobs, backend):
    x, _ = blobs
    full = kmeans(x, 30, n_iter=4, backend=backend, seed=3, init=far_init(30, x.shape[1]))
    for n_iter in range(1, 4):
        partial = kmeans(x, 30, n_iter=n_iter, backend=backend, seed=3, init=far_init(30, x.shape[1]))
        np.testing.assert_allclose(partial.objective, full.objective[:n_iter], rtol=1e-5)
        assert partial.objective[-1] == pytest.approx(sse_of(x, partial), rel=1e-4)


def test_torch_objective_also_decreases_across_splits(blobs):
    x, _ = blobs
    objective = kmeans(x, 30, n_iter=15, init=far_init(30, x.shape[1])).objective
    assert all(b <= a * (1 + 1e-6) for a, b in zip(objective, objective[1:]))


def test_same_seed_same_result_and_centroids_are_label_means(blobs):
    x, _ = blobs
    first, second = (kmeans(x, 25, n_iter=8, seed=7, init=far_init(25, x.shape[1])) for _ in range(2))
    assert np.array_equal(first.labels, second.labels)
    assert np.array_equal(first.centroids, second.centroids)
    assert first.objective == second.objective and first.reassignments == second.reassignments
    assert first.labels.dtype == np.int64 and first.centroids.dtype == np.float32
    for j in range(25):
        np.testing.assert_allclose(first.centroids[j], x[first.labels == j].mean(0), atol=1e-4)


def test_chunking_and_input_type_do_not_change_the_result(blobs):
    x, _ = blobs
    whole = kmeans(x, 6, seed=1)
    chunked = kmeans(torch.from_numpy(x).double(), 6, seed=1, chunk_size=7)
    assert np.array_equal(whole.labels, chunked.labels)
    np.testing.assert_allclose(whole.objective, chunked.objective, rtol=1e-5)


@pytest.mark.parametrize("backend", BOTH)
def test_well_separated_blobs_are_recovered(blobs, backend):
    # Lloyd's algorithm from random points can stop in a local minimum (two centroids in one blob,
    # one between two), so start from one point of each blob and test the iterations, not the init.
    x, y = blobs
    init = x[[np.flatnonzero(y == c)[0] for c in range(6)]]
    result = kmeans(x, 6, backend=backend, init=init)
    assert normalized_mutual_info_score(y, result.labels) > 0.99
    # converged long before n_iter=20: it stopped, and its last iteration changed nothing
    assert len(result.objective) < 20 and result.objective[-1] == pytest.approx(result.objective[-2])


def test_without_reassignment_empty_clusters_stay_empty(blobs):
    x, _ = blobs
    result = kmeans(x, 10, n_iter=5, reassign_empty=False, init=far_init(10, x.shape[1]))
    assert (result.cluster_sizes() == 0).sum() == 9 and result.reassignments == []


def test_preprocess_whitens_then_normalises():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 64)) @ rng.normal(size=(64, 64)) * 5 + 3
    whitened = pca_whiten(features, dim=16)
    assert whitened.shape == (2000, 16)
    np.testing.assert_allclose(np.cov(whitened, rowvar=False, bias=True), np.eye(16), atol=1e-3)
    out = preprocess(features, dim=16)
    assert out.shape == (2000, 16) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # preprocess = pca_whiten followed by a row-wise L2 normalisation
    np.testing.assert_allclose(out, whitened / np.linalg.norm(whitened, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(preprocess(torch.from_numpy(features), dim=16), out, atol=1e-5)


def test_pca_whiten_with_fewer_points_than_features_matches_the_covariance_route():
    # n < d takes the n x n Gram matrix route; compare with the d x d covariance computed here
    rng = np.random.default_rng(4)
    features = (rng.normal(size=(60, 200)) * np.linspace(5, 0.1, 200)).astype(np.float32)
    ours = pca_whiten(features, dim=30)
    centred = features - features.mean(0)
    eigenvalues, eigenvectors = np.linalg.eigh(centred.T.astype(np.float64) @ centred / 60)
    top = np.argsort(eigenvalues)[::-1][:30]
    expected = centred @ (eigenvectors[:, top] / np.sqrt(eigenvalues[top] + 1e-5))
    sign = np.sign((ours * expected).sum(0))
    np.testing.assert_allclose(ours * sign, expected, atol=5e-4)
    np.testing.assert_allclose(np.cov(ours, rowvar=False, bias=True), np.eye(30), atol=1e-3)


def test_pca_whiten_matches_faiss_up_to_sqrt_n_and_the_sign_of_each_axis():
    faiss = pytest.importorskip("faiss")
    n = 1000
    features = np.random.default_rng(1).normal(size=(n, 32)).astype(np.float32) * np.arange(1, 33)
    pca = faiss.PCAMatrix(32, 8, -0.5)
    pca.epsilon = 1e-5 * n  # faiss's covariance is not divided by n
    pca.train(features)
    theirs, ours = pca.apply_py(features), pca_whiten(features, dim=8)
    sign = np.sign((ours * theirs).sum(0))
    # float32 eigensolvers differ in the last digits: agree to 1e-4 on values of order 1
    np.testing.assert_allclose(ours * sign / np.sqrt(n), theirs, atol=1e-4)
    normalised = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    np.testing.assert_allclose(preprocess(features, dim=8) * sign, normalised, atol=1e-4)


def test_dim_is_clamped_to_the_rank_of_the_centred_data_with_a_warning():
    features = np.random.default_rng(2).normal(size=(20, 50))
    # 20 centred points span 19 directions: a 20th axis would have zero variance
    with pytest.warns(UserWarning, match=r"dim=256 asked .*n_samples - 1=19.*using dim=19"):
        whitened = pca_whiten(features)
    assert whitened.shape == (20, 19)
    np.testing.assert_allclose(np.cov(whitened, rowvar=False, bias=True), np.eye(19), atol=1e-3)
    with pytest.warns(UserWarning, match=r"using dim=3"):  # the feature dimension binds first
        assert preprocess(features[:, :3]).shape == (20, 3)


X = np.random.default_rng(3).normal(size=(100, 4)).astype(np.float32)
NAN_X = X.copy()
NAN_X[5, 2] = np.nan


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(k=0), ValueError, "k=0 must be at least 1"),
    (dict(k=2.5), TypeError, "k must be an int"),
    (dict(k=True), TypeError, "k must be an int"),
    (dict(k=101), ValueError, r"k=101 but only n=100 points; lower k or use more images"),
    (dict(k=3, x=NAN_X), ValueError, "x has 1 NaN or infinite values"),
    (dict(k=3, x=X[0]), ValueError, r"x must be a non-empty 2-D array .* shape \(4,\)"),
    (dict(k=3, x=X[None]), ValueError, "x must be a non-empty 2-D array"),
    (dict(k=3, x=X.tolist()), TypeError, "x must be a numpy array or a torch tensor"),
    (dict(k=3, n_iter=0), ValueError, "n_iter=0 must be at least 1"),
    (dict(k=3, chunk_size=0), ValueError, "chunk_size=0 must be at least 1"),
    (dict(k=3, backend="sklearn"), ValueError, "backend='sklearn' is unknown; use one of 'torch', 'faiss'"),
    (dict(k=3, init=np.zeros((3, 5))), ValueError, r"init has shape \(3, 5\) but k=3 .* shape \(3, 4\)"),
    (dict(k=3, backend="faiss", reassign_empty=False), ValueError, "reassign_empty=False needs backend='torch'"),
])
def test_bad_kmeans_input_raises_a_helpful_error(kwargs, error, match):
    kwargs = {"x": X, **kwargs}
    with pytest.raises(error, match=match):
        kmeans(**kwargs)


@pytest.mark.parametrize("features, dim, match", [
    (X, 0, "dim=0 must be at least 1"),
    (NAN_X, 2, "features has 1 NaN"),
    (X[0], 2, "features must be a non-empty 2-D array"),
    (X[:1], 2, r"features has n_samples=1; PCA needs at least 2 rows"),
])
def test_bad_preprocess_input_raises_a_helpful_error(features, dim, match):
    with pytest.raises((ValueError, TypeError), match=match):
        preprocess(features, dim=dim)


def test_missing_faiss_names_the_package_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'dctutor\[cpu\]'") as info:
        kmeans(X, 3, backend="faiss")
    assert "\n" not in str(info.value) and info.value.__cause__ is None, "one clear line, no chained traceback"


def test_splitting_identical_points_does_not_follow_their_order():
    # A dead network gives every image the same features; the splits must not sort them by position,
    # or a data set listed class by class would leak its labels into the clusters.
    x = np.ones((400, 8), dtype=np.float32)
    labels = kmeans(x, 10, n_iter=3, seed=0).labels
    assert np.bincount(labels, minlength=10).min() > 0
    by_position = np.repeat(np.arange(10), 40)
    assert normalized_mutual_info_score(by_position, labels) < 0.2


@pytest.mark.parametrize("backend", BOTH)
def test_any_63_bit_seed_of_the_loop_is_accepted(backend):
    # train_deepcluster seeds each epoch's k-means with a 63-bit number; faiss's own seed is 32-bit.
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    assert len(kmeans(x, 3, seed=2**63 - 1, backend=backend).labels) == 40
    with pytest.raises(ValueError, match="seed=-1 must be at least 0"):
        kmeans(x, 3, seed=-1, backend=backend)
