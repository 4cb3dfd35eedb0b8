"""The backbones and their contract: shapes, named layers, embedding, arch round trip, seeds."""
import pytest
import torch
from torch import nn

from dctutor.models import BACKBONES, Backbone, alexnet, build, resnet18, small_input_for


@pytest.mark.parametrize("size", [32, 64, 96, 224])
@pytest.mark.parametrize("sobel", [True, False])
def test_alexnet_shapes_at_every_input_size(size, sobel):
    small = small_input_for(size)
    net = alexnet(7, sobel=sobel, small_input=small, width=0.25 if small else 1.0).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert net(x).shape == (2, 7)
        out = net.forward_layers(x, ["conv1", "conv5", "fc7"])
    assert out["fc7"].shape == (2, net.feature_dim)
    assert out["conv1"].shape[1] == (24 if small else 96)
    assert out["conv5"].shape[1] == (64 if small else 256)
    assert out["conv1"].shape[-1] == (size if small else 55)  # 224 px: 11x11 stride-4 conv gives 55x55
    assert net.first_conv.in_channels == (2 if sobel else 3)


def test_small_input_rule():
    assert small_input_for(32) and small_input_for(96) and not small_input_for(128) and not small_input_for(224)


def test_paper_widths_and_named_layers():
    net = alexnet(10)
    widths = [getattr(net.features, name)[0].out_channels for name in net.probe_layers]
    assert widths == [96, 256, 384, 384, 256]
    assert net.head.fc6[1].in_features == 256 * 6 * 6 and net.head.fc7[1].out_features == 4096
    assert all(isinstance(getattr(net.features, name)[1], nn.BatchNorm2d) for name in net.probe_layers)
    assert net.layers == ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


def test_alexnet_embedding_is_fc7_before_its_relu():
    net = alexnet(5, small_input=True, width=0.25, seed=0).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        embedding, fc7 = net.embedding(x), net.forward_layers(x, ["fc7"])["fc7"]
    assert (embedding < 0).any(), "before the ReLU some values are negative"
    assert torch.allclose(embedding.clamp(min=0), fc7)


@pytest.mark.parametrize("factory", [lambda: alexnet(6, small_input=True, width=0.25, seed=1),
                                     lambda: resnet18(6, seed=1)])
def test_every_backbone_honours_the_contract(factory):
    net = factory().eval()
    assert isinstance(net, Backbone) and net.name in BACKBONES
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        layers = net.forward_layers(x, net.layers)
        assert list(layers) == list(net.layers)
        assert net.embedding(x).shape == (3, net.feature_dim)
        assert torch.allclose(net(x), net.top_layer(net.head(net.forward_body(x))))
    assert set(net.probe_layers) <= set(net.layers)
    assert all(layers[name].dim() == 4 for name in net.probe_layers)
    twin = build(net.arch, num_classes=6, seed=1).eval()
    assert twin.arch == net.arch
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), twin.state_dict().values()))
    top = net.new_top_layer(9, torch.Generator().manual_seed(0))
    assert top.out_features == 9 and float(top.weight.detach().std()) == pytest.approx(0.01, rel=0.2)
    assert not top.bias.any()


def test_resnet18_cifar_form():
    small, large = resnet18(10), resnet18(10, small_input=False)
    assert small.first_conv.kernel_size == (3, 3) and small.first_conv.stride == (1, 1)
    assert isinstance(small.stem[-1], nn.Identity), "the CIFAR form has no max-pool"
    assert large.first_conv.kernel_size == (7, 7) and isinstance(large.stem[-1], nn.MaxPool2d)
    with torch.no_grad():
        assert small.eval().forward_layers(torch.rand(1, 3, 32, 32), ["layer4"])["layer4"].shape == (1, 512, 4, 4)
    assert sum(p.numel() for p in small.parameters()) == pytest.approx(11.2e6, rel=0.02)


def test_sobel_buffers_are_not_parameters():
    for net in (alexnet(10, sobel=True, small_input=True, width=0.25), resnet18(10)):
        assert not any(n.startswith("sobel") for n, _ in net.named_parameters())
        assert "sobel.sobel_weight" in net.state_dict()


def test_seed_reproduces_the_initialisation_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = alexnet(5, small_input=True, width=0.25, seed=3)
    after = torch.rand(1)
    b = alexnet(5, small_input=True, width=0.25, seed=3)
    c = alexnet(5, small_input=True, width=0.25, seed=4)
    assert torch.equal(before, after)
    assert torch.equal(a.first_conv.weight, b.first_conv.weight)
    assert not torch.equal(a.first_conv.weight, c.first_conv.weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"layer\(s\) \['conv9'\] unknown; alexnet layers are"):
        alexnet(10).forward_layers(torch.rand(1, 3, 32, 32), ["conv9"])
    with pytest.raises(ValueError, match="num_classes=0 must be at least 1"):
        alexnet(0)
    with pytest.raises(ValueError, match="width=-1 must be > 0"):
        alexnet(10, width=-1)
    with pytest.raises(ValueError, match="known backbones are"):
        build({"name": "vgg16"}, num_classes=10)
    with pytest.raises(ValueError, match="does not fit backbone 'resnet18'"):
        build({"name": "resnet18", "width": 0.5}, num_classes=10)
