"""Initial alignment (Mustapha et al. 2022, Sec. 4.1.1), the correlation behind chapter 6, seed picking."""
import numpy as np
import pytest

from dctutor.alignment import initial_alignment
from dctutor.clustering import kmeans, preprocess
from dctutor.data import load_dataset
from dctutor.features import extract_features
from dctutor.labs.alignment import random_init_nmi, spread_seeds
from dctutor.metrics import correlation, nmi
from dctutor.models import alexnet, build


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("shapes", n=120, seed=4)


def _factory(seed):
    return alexnet(8, small_input=True, width=0.125, fc_dim=64, seed=seed)


def test_ia_is_the_nmi_of_kmeans_on_random_init_features(tiny):
    rows = initial_alignment(_factory, tiny, 8, [0, 5], dim=16, kmeans_iters=7, device="cpu")
    assert [(r["seed"], r["k"]) for r in rows] == [(0, 8), (5, 8)]
    for row in rows:
        feats = extract_features(_factory(row["seed"]), tiny, device="cpu", progress=False)
        clusters = kmeans(preprocess(feats, 16), 8, n_iter=7, seed=row["seed"], device="cpu").labels
        assert row["ia"] == nmi(tiny.targets.numpy(), clusters)
        assert 0 < row["ia"] < 1 and row["seconds"] > 0
    assert rows[0]["ia"] != rows[1]["ia"]  # the seed changes the random filters, so the alignment


def test_ia_through_build_and_extra_labellings(tiny):
    arch = _factory(0).arch
    parity = tiny.targets.numpy() % 2
    rows = initial_alignment(lambda s: build(arch, 8, seed=s), tiny, 8, [3], labels={"parity": parity}, dim=16)
    same = initial_alignment(_factory, tiny, 8, [3], labels={"parity": parity}, dim=16)
    assert rows[0]["ia"] == same[0]["ia"] and rows[0]["nmi_parity"] == same[0]["nmi_parity"]
    assert rows[0]["nmi_parity"] < rows[0]["ia"]  # one bit of the label carries less than the label


def test_chapter_1_lab_is_the_same_measurement(tiny):
    truth = tiny.targets.numpy()
    lab = random_init_nmi(tiny, {"label": truth}, sobel=True, k=8, seeds=[2], width=0.125, dim=16)
    core = initial_alignment(lambda s: alexnet(8, sobel=True, small_input=True, width=0.125, seed=s), tiny, 8, [2],
                             dim=16)
    assert lab == [{"seed": 2, "sobel": True, "nmi_label": core[0]["ia"]}]


def test_bad_inputs_name_the_parameter(tiny):
    with pytest.raises(ValueError, match="seeds must name at least one seed"):
        initial_alignment(_factory, tiny, 8, [])
    with pytest.raises(ValueError, match="k=120 must be at most 119"):
        initial_alignment(_factory, tiny, 120, [0])
    with pytest.raises(TypeError, match="factory must build a network"):
        initial_alignment("alexnet", tiny, 8, [0])
    with pytest.raises(TypeError, match="dctutor backbone"):
        initial_alignment(lambda s: object(), tiny, 8, [0], dim=16)
    unlabelled = tiny.subset(np.arange(len(tiny)))
    unlabelled.targets[:] = -1
    with pytest.raises(ValueError, match="IA needs labels"):
        initial_alignment(_factory, unlabelled, 8, [0])


def test_correlation_matches_pearson_and_fisher():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = 0.6 * x + rng.normal(size=30)
    result = correlation(x, y)
    assert result["r"] == pytest.approx(np.corrcoef(x, y)[0, 1])
    z, half = np.arctanh(result["r"]), 1.959963984540054 / np.sqrt(27)
    assert (result["low"], result["high"]) == pytest.approx((np.tanh(z - half), np.tanh(z + half)))
    assert result["low"] < result["r"] < result["high"] and result["n"] == 30
    assert np.isnan(correlation([1, 2, 3], [2, 1, 3])["low"])  # no interval below n = 4
    assert np.isnan(correlation([1, 1, 1, 1], [1, 2, 3, 4])["r"])
    wide, narrow = correlation(x[:5], y[:5]), correlation(x, y)
    assert wide["high"] - wide["low"] > narrow["high"] - narrow["low"]
    with pytest.raises(ValueError, match="same length"):
        correlation([1, 2, 3], [1, 2])


def test_spread_seeds_span_the_distribution():
    rows = [{"seed": s, "ia": v} for s, v in enumerate([0.3, 0.1, 0.5, 0.2, 0.4])]
    assert spread_seeds(rows, 3) == [1, 0, 2]
    assert spread_seeds(rows, 5) == [1, 3, 0, 4, 2]
    with pytest.raises(ValueError, match="n=6 seeds"):
        spread_seeds(rows, 6)


def test_each_point_trains_once_and_carries_its_own_random_twin(tiny):
    from dctutor.deepcluster import DeepClusterConfig
    from dctutor.evaluate import linear_probe
    from dctutor.labs.alignment import TrainedPoints

    made = []

    def factory(seed, k):
        made.append((seed, k))
        return alexnet(k, small_input=True, width=0.125, fc_dim=64, seed=seed)

    test = load_dataset("shapes", "test", n=60, seed=4)
    config = DeepClusterConfig(k=8, epochs=2, batch_size=32, pca_dim=16)
    point = TrainedPoints(factory, tiny, test, config, probe_epochs=1, device="cpu")
    row = point(3, 6)
    assert point(3, 6) is row and made == [(3, 6)], "a (seed, k, halt) is trained once"
    untouched = linear_probe(factory(3, 6), tiny, test, ["conv5"], epochs=1, seed=3, device="cpu")[0]
    assert row["random"] == untouched["accuracy"], "the twin is the run's own starting weights"
    assert row["gain"] == row["accuracy"] - row["random"] and row["k"] == 6 and row["seed"] == 3
    halted = point(3, 6, 1)
    assert halted["clusterings"] == 1 and row["clusterings"] == 2 and halted["loss"] > 0
