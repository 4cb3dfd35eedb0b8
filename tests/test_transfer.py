import numpy as np
import pytest
import torch
from torch import nn

from torchvision.transforms import v2

from dctutor.data import MEAN, STD
from dctutor.models import alexnet, resnet18
from dctutor.transfer import eval_views, evaluate, masked_bce, predict, prepare_transfer, train_transfer
from dctutor.voc import VOCClassification
from dctutor.voc_standin import make_voc_standin


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    make_voc_standin(root, n_train=24, n_val=16, n_test=4, image_size=32, progress=False)
    return VOCClassification(root, "train", image_size=32, progress=False), \
        VOCClassification(root, "val", image_size=32, progress=False)


def small_net(seed=0):
    return alexnet(10, small_input=True, width=0.125, seed=seed)


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
    fc6_before = net.head.fc6[1].weight.clone()
    frozen = train_transfer(net, train, "fc6-8", epochs=2, views=2, batch_size=8, progress=False).model
    after = _conv_state(frozen)
    assert set(after) == set(before) and any("running_mean" in k for k in after)
    assert all(torch.equal(before[k], after[k].cpu()) for k in before)
    assert not torch.equal(frozen.head.fc6[1].weight.cpu(), fc6_before)  # fc6 trained
    assert frozen.top_layer.out_features == 20
    tuned = train_transfer(net, train, "all", epochs=1, batch_size=8, progress=False).model
    changed = [k for k, v in _conv_state(tuned).items() if not torch.equal(before[k], v.cpu())]
    assert any(k.endswith("conv1.0.weight") for k in changed)
    assert any(k.endswith("running_mean") for k in changed)
    # the network passed in is never modified
    assert all(torch.equal(before[k], v) for k, v in _conv_state(net).items())
    assert net.top_layer.out_features == 10


def test_transfer_is_seeded_and_leaves_the_global_rng_alone(voc):
    train, _ = voc
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    a = train_transfer(small_net(), train, "all", epochs=1, batch_size=8, seed=2, progress=False)
    assert torch.equal(torch.rand(1), expected)
    b = train_transfer(small_net(), train, "all", epochs=1, batch_size=8, seed=2, progress=False)
    assert a.losses == b.losses


def test_prepare_transfer_freezes_only_in_fc6_8():
    net = small_net()
    frozen = prepare_transfer(net, "fc6-8")
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("head.", "top_layer.")) for n in trainable)
    assert all(p.requires_grad for p in prepare_transfer(net, "all").parameters())
    kept = prepare_transfer(net, "all", reinit_fc=False)
    assert torch.equal(kept.head.fc7[1].weight, net.head.fc7[1].weight)
    fresh = prepare_transfer(net, "all")
    assert float(fresh.head.fc7[1].weight.detach().std()) == pytest.approx((2 / net.fc_dim) ** 0.5, rel=0.1)  # He init


def test_ten_crops_are_torchvisions_and_two_crops_average_the_flip(voc):
    _, val = voc
    images = val.images[:3]
    views = eval_views(images, 10)
    crop = round(images.shape[-1] * 0.875)
    corner = v2.functional.resize(v2.functional.to_dtype(images, torch.float32, scale=True)[..., :crop, :crop],
                                  [images.shape[-1]] * 2, antialias=True)
    assert len(views) == 10 and torch.allclose(views[0], v2.functional.normalize(corner.clamp(0, 1), MEAN, STD))
    # the mirrored image's top-left crop is the original's top-right crop, mirrored
    assert torch.allclose(views[5], views[1].flip(-1), atol=1e-5)
    net = prepare_transfer(small_net(), "all").eval()
    two = predict(net, images, n_crops=2)
    one, mirrored = predict(net, images, n_crops=1), predict(net, images.flip(-1), n_crops=1)
    np.testing.assert_allclose(two, (one + mirrored) / 2, atol=1e-6)
    result = evaluate(net, val, n_crops=2)
    assert 0 < result["map"] <= 1 and result["ap"].shape == (20,)
    with pytest.raises(ValueError, match="n_crops=5 is unknown"):
        predict(net, val.images, n_crops=5)


def test_resnet18_transfers_with_an_identity_head(voc):
    train, val = voc
    net = resnet18(10, seed=0)
    frozen = train_transfer(net, train, "fc6-8", epochs=1, views=1, batch_size=8, progress=False).model
    trainable = {n for n, p in frozen.named_parameters() if p.requires_grad}
    assert trainable == {"top_layer.weight", "top_layer.bias"}, "no fc layers: FC6-8 is a linear probe"
    assert predict(frozen, val.images, n_crops=1).shape == (len(val), 20)


def test_bad_transfer_arguments(voc):
    train, _ = voc
    net = small_net()
    with pytest.raises(ValueError, match=r"mode='fc7' is unknown; use one of 'fc6-8', 'all'"):
        train_transfer(net, train, "fc7")
    with pytest.raises(ValueError, match="epochs"):
        train_transfer(net, train, "all", epochs=-1)
    for lr in (0, float("inf"), 1e6):
        with pytest.raises(ValueError, match="lr="):
            train_transfer(net, train, "all", lr=lr)
    with pytest.raises(TypeError, match="VOCClassification"):
        train_transfer(net, [1, 2, 3], "all")
    with pytest.raises(TypeError, match="dctutor backbone"):
        train_transfer(nn.Linear(3, 3), train, "all")


def test_divergence_is_reported_with_advice(voc):
    train, _ = voc
    with pytest.raises(FloatingPointError, match="training diverged.*lower lr"):
        train_transfer(small_net(), train, "all", epochs=3, lr=10.0, batch_size=8, progress=False)
