import numpy as np
import pytest
import torch
from torch import nn

from dctutor.models import alexnet
from dctutor.transfer import (average_precisions, check_transferable, evaluate, load_deepcluster_checkpoint,
                              masked_bce, mean_average_precision, predict, prepare_transfer, train_transfer,
                              voc07_ap)
from dctutor.voc import VOCClassification, make_voc_standin


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    make_voc_standin(root, n_train=24, n_val=16, n_test=4, image_size=32, progress=False)
    return VOCClassification(root, "train", image_size=32, progress=False), \
        VOCClassification(root, "val", image_size=32, progress=False)


def small_net(seed=0):
    return alexnet(10, small_input=True, width=0.125, seed=seed)


# ---- average precision -----------------------------------------------------------------------

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


def test_masked_bce_ignores_masked_entries():
    logits = torch.tensor([[5.0, -3.0], [0.0, 100.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # the huge wrong logit is masked
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask > 0], targets[mask > 0])
    assert masked_bce(logits, targets, mask).item() == pytest.approx(expected.item())


# ---- transfer --------------------------------------------------------------------------------

def _conv_state(net):
    return {k: v.clone() for k, v in net.state_dict().items() if k.startswith(("features.", "sobel."))}


def test_fc6_8_leaves_conv_weights_and_bn_stats_untouched_and_all_changes_them(voc):
    train, _ = voc
    net = small_net()
    before = _conv_state(net)
    fc6_before = net.classifier.fc6[1].weight.clone()
    frozen = train_transfer(net, train, "fc6-8", epochs=2, views=2, batch_size=8, progress=False).model
    after = _conv_state(frozen)
    assert set(after) == set(before) and any("running_mean" in k for k in after)
    assert all(torch.equal(before[k], after[k].cpu()) for k in before)
    assert not torch.equal(frozen.classifier.fc6[1].weight.cpu(), fc6_before)  # fc6 trained
    assert frozen.top_layer.out_features == 20
    tuned = train_transfer(net, train, "all", epochs=1, batch_size=8, progress=False).model
    changed = [k for k, v in _conv_state(tuned).items() if not torch.equal(before[k], v.cpu())]
    assert any(k.endswith("conv1.0.weight") for k in changed)
    assert any(k.endswith("running_mean") for k in changed)
    # the network passed in is never modified
    assert all(torch.equal(before[k], v) for k, v in _conv_state(net).items())
    assert net.top_layer.out_features == 10


def test_prepare_transfer_freezes_only_in_fc6_8():
    net = small_net()
    frozen = prepare_transfer(net, "fc6-8")
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("classifier.", "top_layer.")) for n in trainable)
    assert all(p.requires_grad for p in prepare_transfer(net, "all").parameters())
    kept = prepare_transfer(net, "all", reinit_fc=False)
    assert torch.equal(kept.classifier.fc7[1].weight, net.classifier.fc7[1].weight)


def test_predict_and_evaluate_multi_crop(voc):
    _, val = voc
    net = prepare_transfer(small_net(), "all")
    for crops in (1, 2, 10):
        scores = predict(net, val.images, n_crops=crops)
        assert scores.shape == (len(val), 20) and ((scores > 0) & (scores < 1)).all()
    result = evaluate(net, val, n_crops=2)
    assert 0 < result["map"] <= 1 and result["ap"].shape == (20,)
    with pytest.raises(ValueError, match="n_crops"):
        predict(net, val.images, n_crops=5)


def test_network_without_the_named_layers_fails_clearly(voc):
    train, _ = voc
    bad = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(20))
    with pytest.raises(ValueError, match=r"no layers named .*features.conv1.*dctutor.models.alexnet"):
        check_transferable(bad)
    with pytest.raises(ValueError, match="classifier.fc6"):
        train_transfer(bad, train, "all", epochs=1)
    with pytest.raises(TypeError, match="nn.Module"):
        check_transferable("alexnet")


def test_bad_transfer_arguments(voc):
    train, _ = voc
    net = small_net()
    with pytest.raises(ValueError, match=r"mode='fc7'.*'fc6-8'.*'all'"):
        train_transfer(net, train, "fc7")
    with pytest.raises(ValueError, match="epochs"):
        train_transfer(net, train, "all", epochs=-1)
    with pytest.raises(ValueError, match="lr"):
        train_transfer(net, train, "all", lr=0)
    with pytest.raises(TypeError, match="VOCClassification"):
        train_transfer(net, [1, 2, 3], "all")


def test_load_deepcluster_checkpoint(tmp_path):
    net = small_net(seed=3)
    arch = {"config": net.config, "width": net.width, "fc_dim": net.fc_dim, "sobel": True}
    torch.save({"model": net.state_dict(), "arch": arch, "epoch": 0}, tmp_path / "checkpoint.pt")
    loaded = load_deepcluster_checkpoint(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    with pytest.raises(FileNotFoundError, match="train_deepcluster"):
        load_deepcluster_checkpoint(tmp_path / "nowhere")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a dctutor DeepCluster checkpoint"):
        load_deepcluster_checkpoint(tmp_path / "other.pt")
