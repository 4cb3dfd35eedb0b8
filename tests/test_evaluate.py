"""Linear probes and kNN: right shapes, no peeking at test, a baseline beside every number."""
import numpy as np
import pytest
import torch

from dctutor.data import load_dataset
from dctutor.evaluate import (compare_with_random, evaluate_model, knn_from_features, linear_probe, probe_features,
                              random_like)
from dctutor.features import extract_features, layer_features, pool_size
from dctutor.models import alexnet, build


@pytest.fixture(scope="module")
def data():
    return load_dataset("shapes", "train", n=200, seed=0), load_dataset("shapes", "test", n=100, seed=0)


@pytest.fixture(scope="module")
def model():
    return alexnet(10, small_input=True, width=0.125, fc_dim=64, seed=0)


def test_pool_size_keeps_a_few_thousand_dimensions():
    assert pool_size(96, 32, 4096) == 6 and 96 * 6 * 6 <= 4096
    assert pool_size(256, 4, 9216) == 4  # never more than the map itself
    assert pool_size(10_000, 8, 4096) == 1


def test_layer_features_match_extract_features(data, model):
    train, _ = data
    one_pass = layer_features(model, train, ["conv2", "fc7"], target_dim=512)
    side = pool_size(32, 8, 512)
    np.testing.assert_allclose(one_pass["conv2"], extract_features(model, train, "conv2", pool=side, progress=False),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one_pass["fc7"], extract_features(model, train, "fc7", progress=False), atol=1e-6)


def test_probe_learns_separable_features_and_never_uses_test_for_choices():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 8)).astype(np.float32) + 3 * np.eye(3, 8, dtype=np.float32)[y]
    test_y = rng.integers(0, 3, 100)
    test_x = rng.normal(size=(100, 8)).astype(np.float32) + 3 * np.eye(3, 8, dtype=np.float32)[test_y]
    good = probe_features(x, y, test_x, test_y, epochs=20)
    assert good["accuracy"] > 0.85 and good["dim"] == 8
    # Shuffled test labels change the test score but not the choice made on the holdout.
    shuffled = probe_features(x, y, test_x, rng.permutation(test_y), epochs=20)
    assert shuffled["weight_decay"] == good["weight_decay"]
    assert shuffled["holdout_accuracy"] == good["holdout_accuracy"]
    with pytest.raises(ValueError, match="holdout"):
        probe_features(x, y, test_x, test_y, holdout=1.5)


def test_knn_on_perfect_features_is_perfect():
    x = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 2, 3]]
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    assert knn_from_features(x, y, x, y, k=2) == 1.0
    with pytest.raises(ValueError, match="k=100"):
        knn_from_features(x, y, x, y, k=100)


def test_random_like_has_the_architecture_but_fresh_weights(model):
    trained = alexnet(10, small_input=True, width=0.125, fc_dim=64, seed=0)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(1.0)
    twin = random_like(trained, seed=0)
    assert [p.shape for p in twin.parameters()] == [p.shape for p in trained.parameters()]
    assert not torch.equal(twin.features.conv1[0].weight, trained.features.conv1[0].weight)
    assert torch.equal(random_like(trained, seed=0).features.conv1[0].weight, twin.features.conv1[0].weight)


@pytest.mark.parametrize("seed", [0, 3])
def test_the_twin_of_the_models_own_seed_is_its_starting_point(seed):
    """What the benchmarks rely on when they pass their run's seed to compare_with_random: the twin is
    the network before training, not one random network shared by every seed."""
    start = alexnet(10, small_input=True, width=0.125, fc_dim=64, seed=seed)
    before = {name: value.clone() for name, value in start.state_dict().items()}
    with torch.no_grad():
        for p in start.parameters():
            p.add_(1.0)
    twin = random_like(start, seed=seed).state_dict()
    assert all(torch.equal(twin[name], value) for name, value in before.items())
    other = random_like(start, seed=seed + 1).state_dict()
    assert not torch.equal(other["features.conv1.0.weight"], before["features.conv1.0.weight"])


def test_linear_probe_and_comparison_rows(data, model):
    train, test = data
    rows = linear_probe(model, train, test, ["conv1", "conv3"], target_dim=512, epochs=2, min_steps=10)
    assert [r["layer"] for r in rows] == ["conv1", "conv3"]
    assert all(0 <= r["accuracy"] <= 1 and r["dim"] <= 512 for r in rows)
    options = dict(layers=["conv2"], knn_layers=["conv5", "fc7"], target_dim=512, epochs=2, knn_k=5, min_steps=10)
    table = compare_with_random(model, train, test, seed=4, **options)
    assert [r["layer"] for r in table] == ["conv2", "knn conv5", "knn fc7"]
    # the baseline column is the same evaluation of a random network built from the arch and the seed
    twin = evaluate_model(build(model.arch, num_classes=10, seed=4), train, test, seed=4, **options)
    assert table[0]["random"] == twin["probe"]["conv2"]["accuracy"]
    assert [table[1]["random"], table[2]["random"]] == [twin["knn"]["conv5"], twin["knn"]["fc7"]]
    assert table[0]["trained"] == evaluate_model(model, train, test, seed=4, **options)["probe"]["conv2"]["accuracy"]


def test_probes_need_labels(data, model):
    train, test = data
    unlabelled = train.subset(np.arange(len(train)))
    unlabelled.targets[:] = -1
    with pytest.raises(ValueError, match="unlabelled"):
        linear_probe(model, unlabelled, test)


def test_reference_probe_learns_leaves_the_network_alone_and_is_seeded():
    from dctutor.evaluate import reference_probe

    train, test = load_dataset("shapes", n=300, seed=0), load_dataset("shapes", "test", n=200, seed=1)
    net = alexnet(10, small_input=True, width=0.125, seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    rows = reference_probe(net, train, test, ["conv1", "conv5"], epochs=4, batch_size=64, target_dim=2048)
    assert torch.equal(torch.rand(1), expected), "torch's global random state is left alone"
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert [r["layer"] for r in rows] == ["conv1", "conv5"]
    assert all(512 < r["dim"] <= 2048 for r in rows)
    assert min(r["accuracy"] for r in rows) > 0.2, "well above the 10 % of chance on shapes"
    again = reference_probe(net, train, test, ["conv1", "conv5"], epochs=4, batch_size=64, target_dim=2048)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    with pytest.raises(ValueError, match="epochs"):
        reference_probe(net, train, test, epochs=0)
    with pytest.raises(ValueError, match="momentum=1.5"):
        reference_probe(net, train, test, momentum=1.5)
