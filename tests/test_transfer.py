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


# ---- the reference recipe's settings (protocol page, bench_voc_protocol.py) ----------------------

def test_reference_head_init_is_small_weights_and_biases_of_a_tenth():
    net = small_net()
    he = prepare_transfer(net, "fc6-8")
    ref = prepare_transfer(net, "fc6-8", head_init="reference")
    fc6_he, fc6_ref = he.head.fc6[1], ref.head.fc6[1]
    assert fc6_ref.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert fc6_he.weight.std().item() == pytest.approx((2 / fc6_he.in_features) ** 0.5, rel=0.1)
    assert torch.all(fc6_ref.bias == 0.1) and torch.all(ref.top_layer.bias == 0.1)
    assert torch.all(fc6_he.bias == 0) and torch.all(he.top_layer.bias == 0)
    with pytest.raises(ValueError, match="head_init"):
        prepare_transfer(net, "fc6-8", head_init="xavier")


def test_train_batchnorm_trains_bn_scales_but_never_their_statistics(voc):
    train, _ = voc
    net = small_net()
    bn_params = {n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)}
    prepared = prepare_transfer(net, "fc6-8", train_batchnorm=True)
    trainable = {n.rsplit(".", 1)[0] for n, p in prepared.named_parameters()
                 if p.requires_grad and n.startswith("features.")}
    assert trainable == bn_params and bn_params
    assert not any(p.requires_grad for n, p in prepared.named_parameters()
                   if n.startswith("features.") and n.rsplit(".", 1)[0] not in bn_params)
    before = _conv_state(net)
    tuned = train_transfer(net, train, "fc6-8", epochs=2, batch_size=8, train_batchnorm=True, progress=False).model
    after = _conv_state(tuned)
    moved = {k for k in before if not torch.equal(before[k], after[k].cpu())}
    assert moved and all(k.rsplit(".", 1)[0] in bn_params and k.endswith(("weight", "bias")) for k in moved)


def test_freeze_bn_stats_keeps_the_statistics_of_all_while_the_weights_train(voc):
    train, _ = voc
    net = small_net()
    before = _conv_state(net)
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    frozen = _conv_state(train_transfer(net, train, "all", epochs=1, batch_size=8, freeze_bn_stats=True,
                                        progress=False).model)
    tuned = _conv_state(train_transfer(net, train, "all", epochs=1, batch_size=8, progress=False).model)
    assert stats and all(torch.equal(before[k], frozen[k].cpu()) for k in stats)
    assert not all(torch.equal(before[k], tuned[k].cpu()) for k in stats), "by default the statistics follow VOC"
    weights = [k for k in before if k.endswith("weight")]
    assert not all(torch.equal(before[k], frozen[k].cpu()) for k in weights), "frozen statistics, moving weights"
    with pytest.raises(TypeError, match="freeze_bn_stats"):
        train_transfer(net, train, "all", freeze_bn_stats="yes", progress=False)


def test_clip_grad_bounds_the_first_step(voc):
    train, _ = voc
    net = small_net()
    # One epoch with momentum 0 and no decay: the first step moves the top layer by lr * its gradient.
    kwargs = dict(epochs=1, batch_size=len(train), lr=1.0, momentum=0.0, weight_decay=0.0, views=1,
                  progress=False)
    free = train_transfer(net, train, "fc6-8", **kwargs).model
    clipped = train_transfer(net, train, "fc6-8", clip_grad=1e-3, **kwargs).model
    start = prepare_transfer(net, "fc6-8")
    step = {name: [(a.cpu() - b).flatten() for a, b in zip(m.parameters(), start.parameters())
                   if a.requires_grad] for name, m in (("free", free), ("clipped", clipped))}
    norms = {name: torch.cat(v).norm().item() for name, v in step.items()}
    assert norms["clipped"] == pytest.approx(1e-3, rel=1e-3) and norms["free"] > 10 * norms["clipped"]


def test_training_crops_follow_crop_scale(voc, monkeypatch):
    import dctutor.transfer as transfer
    seen = []
    real = transfer.BatchAugment

    def spy(size, scale=(0.3, 1.0), ratio=(3 / 4, 4 / 3)):
        seen.append((scale, ratio))
        return real(size, scale=scale, ratio=ratio)
    monkeypatch.setattr(transfer, "BatchAugment", spy)
    train, _ = voc
    train_transfer(small_net(), train, "fc6-8", epochs=1, views=1, batch_size=8, crop_scale=(0.1, 0.5),
                   crop_ratio=(1.0, 1.0), progress=False)
    assert seen[-1] == ((0.1, 0.5), (1.0, 1.0))
    for bad in ((0.5,), (0.6, 0.2), "big"):
        with pytest.raises(ValueError, match="crop_scale"):
            train_transfer(small_net(), train, "fc6-8", epochs=1, crop_scale=bad, progress=False)


def test_random_test_crops_are_seeded_and_differ_from_the_fixed_ten_crop(voc):
    from dctutor.augment import BatchAugment
    _, val = voc
    net = prepare_transfer(small_net(), "all").eval()
    crops = BatchAugment(32, scale=(0.1, 0.5), ratio=(1.0, 1.0))
    a = predict(net, val.images, n_crops=3, random_crops=crops, seed=1)
    assert np.array_equal(a, predict(net, val.images, n_crops=3, random_crops=crops, seed=1))
    assert not np.allclose(a, predict(net, val.images, n_crops=3, random_crops=crops, seed=2))
    assert not np.allclose(a, predict(net, val.images, n_crops=10))
