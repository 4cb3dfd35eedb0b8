import pytest
import torch

from dctutor.models import LAYERS, alexnet


@pytest.mark.parametrize("size", [32, 64, 96, 224])
@pytest.mark.parametrize("sobel", [True, False])
def test_shapes_at_every_input_size(size, sobel):
    small = size < 128
    net = alexnet(7, sobel=sobel, small_input=small, width=0.25 if small else 1.0).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        assert net(x).shape == (2, 7)
        assert net.activations(x, "fc7").shape == (2, net.fc_dim)
        conv5 = net.activations(x, "conv5")
        conv1 = net.activations(x, "conv1")
    assert conv1.shape[1] == (24 if small else 96)
    assert conv5.shape[1] == (64 if small else 256)
    assert conv1.shape[-1] == (size if small else 55)  # 224 px: 11x11 stride-4 conv gives 55x55
    assert net.features.conv1[0].in_channels == (2 if sobel else 3)


def test_paper_widths_and_named_layers():
    net = alexnet(10)
    widths = [net.layer(f"conv{i}")[0].out_channels for i in range(1, 6)]
    assert widths == [96, 256, 384, 384, 256]
    assert net.layer("fc6")[1].in_features == 256 * 6 * 6 and net.layer("fc7")[1].out_features == 4096
    assert all(isinstance(net.layer(f"conv{i}")[1], torch.nn.BatchNorm2d) for i in range(1, 6))
    assert set(LAYERS) == {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"}


def test_sobel_buffers_are_not_parameters():
    net = alexnet(10, sobel=True, small_input=True, width=0.25)
    names = [n for n, _ in net.named_parameters()]
    assert not any(n.startswith("sobel") for n in names)
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
    assert torch.equal(a.features.conv1[0].weight, b.features.conv1[0].weight)
    assert not torch.equal(a.features.conv1[0].weight, c.features.conv1[0].weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match="layer 'conv9' is unknown"):
        alexnet(10).layer("conv9")
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        alexnet(0)
    with pytest.raises(ValueError, match="width must be a positive number"):
        alexnet(10, width=-1)
