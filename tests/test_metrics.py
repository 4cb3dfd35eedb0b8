"""The book's metrics, each defined once: NMI, cluster-size statistics, AP and mAP."""
import numpy as np
import pytest

from dctutor.metrics import average_precisions, cluster_stats, mean_average_precision, nmi, voc07_ap


SCORES = np.array([[0.9, 0.1], [0.8, 0.4], [0.7, 0.35], [0.6, 0.8], [0.95, 0.99]])
TARGETS = np.array([[1, 1], [0, 0], [1, 0], [0, 1], [1, 0]])
MASK = np.array([[1, 1], [1, 1], [1, 1], [1, 1], [0, 0]])  # the last image is "difficult" for both classes


def test_map_equals_hand_computed_value_and_ignores_masked_entries():
    # class 0, ranked: + - + -  -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    # class 1, ranked: + - - +  -> AP = 1/2 * 1 + 1/2 * 2/4 = 3/4
    aps = average_precisions(SCORES, TARGETS, MASK)
    assert aps == pytest.approx([5 / 6, 3 / 4])
    assert mean_average_precision(SCORES, TARGETS, MASK) == pytest.approx(19 / 24)
    # without the mask the difficult image (a top-scored positive / negative) would change both APs
    assert not np.allclose(average_precisions(SCORES, TARGETS), [5 / 6, 3 / 4])


def test_map_is_one_for_perfect_scores_and_nan_classes_are_skipped():
    rng = np.random.default_rng(0)
    targets = (rng.uniform(size=(50, 4)) < 0.3).astype(int)
    targets[:, 3] = 0  # no positive at all: AP undefined, left out of the mean
    scores = targets + rng.uniform(0, 0.5, size=targets.shape)
    aps = average_precisions(scores, targets)
    assert np.isnan(aps[3]) and mean_average_precision(scores, targets) == pytest.approx(1.0)
    assert mean_average_precision(scores, targets, method="voc07") == pytest.approx(1.0)


def test_voc07_eleven_point_ap_matches_hand_computed_case():
    # ranked + - + -: recall .5 .5 1 1, precision 1 .5 2/3 .5; the interpolated precision is 1 at
    # recall 0 .. 0.5 (6 points) and 2/3 at 0.6 .. 1.0 (5 points)
    assert voc07_ap([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert voc07_ap([0.9, 0.8], [0, 1]) == pytest.approx(0.5)
    assert np.isnan(voc07_ap([0.1, 0.2], [0, 0]))
    assert average_precisions(SCORES, TARGETS, MASK, method="voc07")[0] == pytest.approx((6 + 5 * 2 / 3) / 11)


def test_ap_bad_inputs():
    with pytest.raises(ValueError, match="same"):
        average_precisions(SCORES, TARGETS[:3])
    with pytest.raises(ValueError, match="method"):
        average_precisions(SCORES, TARGETS, method="voc12")
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(SCORES, np.zeros_like(TARGETS))


def test_size_stats():
    stats = cluster_stats(np.array([0, 0, 0, 1]), 3)
    assert stats["n_empty"] == 1 and stats["largest"] == 0.75
    assert cluster_stats(np.arange(10), 10)["n_effective"] == pytest.approx(10)
    assert cluster_stats(np.zeros(10, dtype=int), 4)["n_effective"] == pytest.approx(1)
    with pytest.raises(ValueError, match="k=2"):
        cluster_stats(np.array([0, 5]), 2)


def test_nmi_is_the_geometric_normalisation():
    # B is a function of A, so I(A;B) = H(B) and NMI = H(B) / sqrt(H(A) H(B)) = sqrt(H(B) / H(A))
    a, b = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 0, 0, 0, 1, 1])
    h_a, h_b = np.log(3), -(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))
    assert nmi(a, a) == pytest.approx(1.0) and nmi(a, b) == pytest.approx(np.sqrt(h_b / h_a))


def test_cluster_stats_and_nmi():
    stats = cluster_stats(np.array([0, 0, 1, 1]), 3)
    assert stats["sizes"] == [2, 2, 0] and stats["n_empty"] == 1
    assert stats["n_effective"] == pytest.approx(2.0)
    assert nmi(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])) == pytest.approx(1.0)
