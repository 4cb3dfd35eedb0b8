import pytest
import torch

from dctutor.sobel import Sobel, gradient_magnitude


def _vertical_step(height: float) -> torch.Tensor:
    x = torch.zeros(1, 3, 9, 9)
    x[..., 5:] = height  # dark left half, bright right half
    return x


def test_vertical_edge_gives_negative_gx_of_four_times_the_step_and_no_gy():
    out = Sobel()(_vertical_step(0.5))
    gx, gy = out[0, 0, 1:-1], out[0, 1, 1:-1]  # rows away from the zero padding
    assert torch.allclose(gx[:, 4:6], torch.full((7, 2), -2.0))
    assert torch.allclose(gx[:, 1:3], torch.zeros(7, 2)) and torch.allclose(gx[:, 7:8], torch.zeros(7, 1))
    assert torch.allclose(gy[:, 1:-1], torch.zeros(7, 7))


def test_horizontal_edge_is_seen_by_gy_only():
    x = _vertical_step(0.25).transpose(2, 3)
    out = Sobel()(x)
    assert torch.allclose(out[0, 1, 4:6, 1:-1], torch.full((2, 7), -1.0))
    assert torch.allclose(out[0, 0, 1:-1, 1:-1], torch.zeros(7, 7))


def test_flip_reverses_the_sign():
    x = _vertical_step(1.0)
    assert torch.allclose(Sobel()(x.flip(-1))[0, 0, 1:-1, 1:-1], -Sobel()(x)[0, 0, 1:-1, 1:-1].flip(-1))


def test_flat_colour_change_at_equal_brightness_gives_nothing():
    x = torch.zeros(1, 3, 8, 8)
    x[:, 0, :, :4] = 0.9  # red half
    x[:, 2, :, 4:] = 0.9  # blue half
    assert Sobel()(x)[..., 1:-1, 1:-1].abs().max() < 1e-6
    assert Sobel()(torch.rand(1, 3, 1, 1).expand(1, 3, 8, 8))[..., 1:-1, 1:-1].abs().max() < 1e-6


def test_weights_are_frozen_buffers_that_no_optimizer_sees():
    layer = Sobel()
    assert list(layer.parameters()) == []
    assert set(layer.state_dict()) == {"gray_weight", "sobel_weight"}
    assert torch.allclose(layer.gray_weight, torch.full((1, 3, 1, 1), 1 / 3))
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    layer(x).sum().backward()  # gradients still flow to the input
    assert x.grad is not None


def test_magnitude_shape_and_bad_input():
    assert gradient_magnitude(torch.rand(2, 3, 16, 16)).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"RGB batch of shape \(N, 3, H, W\)"):
        Sobel()(torch.rand(2, 1, 16, 16))
