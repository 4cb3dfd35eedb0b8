"""Properties of dctutor.sampling: uniform sampling over pseudo-labels (Sec. 3.3)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dctutor.sampling import UniformLabelSampler, inverse_frequency_weights

ZIPF_SIZES = [1000, 500, 250, 125, 62, 31, 15, 7, 3, 1]


def labels_from_sizes(sizes: list[int], ids: list[int] | None = None, seed: int = 0) -> np.ndarray:
    """Shuffled labels with ``sizes[j]`` images carrying id ``ids[j]`` (default: j)."""
    ids = list(range(len(sizes))) if ids is None else ids
    labels = np.repeat(np.asarray(ids), sizes)
    return np.random.default_rng(seed).permutation(labels)


def random_label_sets(n_sets: int = 8):
    """Seeded random label sets: skewed sizes, some ids unused, varied lengths."""
    rng = np.random.default_rng(1234)
    for _ in range(n_sets):
        k = int(rng.integers(2, 30))
        sizes = rng.zipf(1.6, size=k).clip(max=400)
        sizes[rng.random(k) < 0.2] = 0  # unused ids, as k-means may leave
        sizes[int(rng.integers(k))] = max(1, int(sizes.max()))
        yield labels_from_sizes(sizes.tolist(), seed=int(rng.integers(1 << 30)))


def one_pass(labels: np.ndarray, num_samples: int | None = None, seed: int = 0) -> np.ndarray:
    sampler = UniformLabelSampler(labels, num_samples, generator=torch.Generator().manual_seed(seed))
    return np.fromiter(iter(sampler), dtype=np.int64)


def counts_per_nonempty_cluster(labels: np.ndarray, indices: np.ndarray) -> np.ndarray:
    present = np.unique(labels)
    return np.bincount(labels[indices], minlength=labels.max() + 1)[present]


@pytest.mark.parametrize("factor", [0.3, 1.0, 2.7])
def test_clusters_get_shares_differing_by_at_most_one(factor):
    for labels in random_label_sets():
        num_samples = max(1, int(factor * len(labels)))
        indices = one_pass(labels, num_samples)
        assert len(indices) == num_samples
        assert indices.min() >= 0 and indices.max() < len(labels)
        counts = counts_per_nonempty_cluster(labels, indices)
        assert counts.max() - counts.min() <= 1
        assert counts.sum() == num_samples


@pytest.mark.parametrize("num_samples", [1, 7, 100, 2000, 5000])
def test_requested_length_is_honoured(num_samples):
    labels = labels_from_sizes(ZIPF_SIZES)
    sampler = UniformLabelSampler(labels, num_samples, generator=torch.Generator().manual_seed(0))
    assert len(sampler) == num_samples
    assert len(list(sampler)) == num_samples


def test_default_length_is_the_number_of_images():
    labels = labels_from_sizes(ZIPF_SIZES)
    sampler = UniformLabelSampler(labels)
    assert len(sampler) == len(labels) == len(list(sampler))


def test_fewer_samples_than_clusters_still_takes_at_most_one_per_cluster():
    labels = labels_from_sizes([5] * 20)
    counts = counts_per_nonempty_cluster(labels, one_pass(labels, 7))
    assert sorted(counts.tolist()) == [0] * 13 + [1] * 7


def test_the_remainder_goes_to_random_clusters():
    labels = labels_from_sizes([50] * 10)
    sampler = UniformLabelSampler(labels, 23, generator=torch.Generator().manual_seed(0))
    counts = [np.bincount(labels[list(sampler)], minlength=10) for _ in range(20)]
    favoured = [tuple(np.flatnonzero(c == 3)) for c in counts]
    assert all(len(f) == 3 for f in favoured)
    assert len(set(favoured)) > 5  # not always the same (e.g. lowest) ids


def test_the_pass_is_shuffled_across_clusters():
    labels = labels_from_sizes([100] * 5)
    drawn = labels[one_pass(labels)]
    # Grouped by cluster there would be 4 label changes; shuffled, about 4/5 of the 499 steps change.
    assert np.count_nonzero(np.diff(drawn)) > 300


def test_empty_ids_are_skipped():
    labels = labels_from_sizes([40, 3, 9], ids=[0, 3, 7])
    sampler = UniformLabelSampler(labels, 60, generator=torch.Generator().manual_seed(0))
    assert sampler.n_nonempty == 3
    assert sampler.cluster_sizes.tolist() == [40, 0, 0, 3, 0, 0, 0, 9]
    indices = np.fromiter(iter(sampler), dtype=np.int64)
    assert set(labels[indices].tolist()) == {0, 3, 7}
    assert np.bincount(labels[indices]).tolist() == [20, 0, 0, 20, 0, 0, 0, 20]


def test_replacement_only_where_needed():
    for labels in random_label_sets():
        for num_samples in (len(labels) // 2, len(labels), 3 * len(labels)):
            indices = one_pass(labels, max(1, num_samples))
            share = max(1, num_samples) // len(np.unique(labels))
            for cluster in np.unique(labels):
                drawn = indices[labels[indices] == cluster]
                members = np.flatnonzero(labels == cluster)
                if len(members) >= len(drawn):
                    assert len(np.unique(drawn)) == len(drawn), "repeat in a cluster that did not need one"
                if len(members) < share:
                    assert set(drawn.tolist()) == set(members.tolist()), "small cluster lost an image"


def test_a_zipf_label_set_is_equalised():
    labels = labels_from_sizes(ZIPF_SIZES)
    indices = one_pass(labels)
    counts = counts_per_nonempty_cluster(labels, indices)
    assert counts.max() - counts.min() <= 1
    # Without the sampler the largest cluster is 1000x the smallest; every cluster now gets ~10%.
    assert np.allclose(counts / len(indices), 1 / len(ZIPF_SIZES), atol=1 / len(indices))
    assert np.isin(np.flatnonzero(labels == 9), indices).all()  # the singleton is used


def test_same_seed_same_orders_different_seed_different_order():
    labels = labels_from_sizes(ZIPF_SIZES)

    def epochs(seed: int) -> list[list[int]]:
        sampler = UniformLabelSampler(labels, generator=torch.Generator().manual_seed(seed))
        return [list(sampler) for _ in range(3)]

    assert epochs(0) == epochs(0)
    assert epochs(0)[0] != epochs(1)[0]


def test_consecutive_epochs_differ():
    labels = labels_from_sizes(ZIPF_SIZES)
    sampler = UniformLabelSampler(labels, generator=torch.Generator().manual_seed(0))
    assert list(sampler) != list(sampler)


def test_global_seed_makes_the_default_generator_repeatable():
    labels = labels_from_sizes(ZIPF_SIZES)
    torch.manual_seed(5)
    first = list(UniformLabelSampler(labels))
    torch.manual_seed(5)
    assert list(UniformLabelSampler(labels)) == first


@pytest.mark.parametrize("kind", ["list", "numpy", "tensor"])
def test_accepts_lists_arrays_and_tensors(kind):
    labels = labels_from_sizes([6, 2, 4])
    given = {"list": labels.tolist(), "numpy": labels.astype(np.uint8),
             "tensor": torch.from_numpy(labels)}[kind]
    sampler = UniformLabelSampler(given, generator=torch.Generator().manual_seed(0))
    assert sampler.cluster_sizes.tolist() == [6, 2, 4]
    assert one_pass(labels).tolist() == list(sampler)
    assert torch.equal(inverse_frequency_weights(given), inverse_frequency_weights(labels))


def test_sampler_works_in_a_dataloader():
    labels = labels_from_sizes([30, 5, 1])
    data = torch.utils.data.TensorDataset(torch.from_numpy(labels))
    sampler = UniformLabelSampler(labels, 36, generator=torch.Generator().manual_seed(0))
    batches = torch.cat([b for (b,) in torch.utils.data.DataLoader(data, batch_size=8, sampler=sampler)])
    assert torch.bincount(batches).tolist() == [12, 12, 12]


def test_weights_sum_to_n_and_equalise_cluster_totals():
    for labels in random_label_sets():
        weights = inverse_frequency_weights(labels)
        assert weights.dtype == torch.float32 and weights.shape == (len(labels),)
        assert weights.sum().item() == pytest.approx(len(labels), rel=1e-5)
        totals = np.bincount(labels, weights=weights.double().numpy())[np.unique(labels)]
        assert np.allclose(totals, len(labels) / len(totals), rtol=1e-5)


def test_weights_match_the_sampler_in_expectation():
    # Sec. 3.3: sampling uniformly over pseudo-labels = weighting each image by 1 / cluster size.
    labels = labels_from_sizes(ZIPF_SIZES)
    weights = inverse_frequency_weights(labels).double().numpy()
    sampler = UniformLabelSampler(labels, generator=torch.Generator().manual_seed(0))
    hits = np.zeros(len(labels))
    for _ in range(20):
        np.add.at(hits, list(sampler), 1)
    per_cluster = np.bincount(labels, weights=hits) / 20
    assert np.allclose(per_cluster, np.bincount(labels, weights=weights), atol=1)


@pytest.mark.parametrize("labels, error, match", [
    ([], ValueError, "labels is empty"),
    (np.zeros((3, 2), dtype=int), ValueError, r"labels must be 1-D.*\(3, 2\)"),
    ([0, 1, -2], ValueError, r"cluster ids >= 0, got -2"),
    ([0.0, 1.0], TypeError, r"integer cluster ids, got dtype float64.*astype"),
    (torch.tensor([0.5, 1.0]), TypeError, "integer cluster ids, got dtype float32"),
    ([True, False], TypeError, "got dtype bool"),
    ({0, 1}, TypeError, "labels must be a 1-D sequence.*got set"),
    ("012", TypeError, "got str"),
    (5, TypeError, "got int"),
])
def test_bad_labels_raise(labels, error, match):
    with pytest.raises(error, match=match):
        UniformLabelSampler(labels)
    with pytest.raises(error, match=match):
        inverse_frequency_weights(labels)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_samples": 0}, ValueError, "num_samples=0 must be at least 1"),
    ({"num_samples": -3}, ValueError, "num_samples=-3 must be at least 1"),
    ({"num_samples": 2.5}, TypeError, r"num_samples must be an int, got 2\.5 \(float\)"),
    ({"num_samples": True}, TypeError, r"num_samples must be an int, got True"),
    ({"generator": 0}, TypeError, r"generator must be a torch.Generator or None, got int.*manual_seed"),
    ({"generator": np.random.default_rng(0)}, TypeError, "generator must be a torch.Generator"),
])
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        UniformLabelSampler([0, 1, 1], **kwargs)
