"""Chapter 4's lab: the exact computations behind its figures, the contrast shortcut, and the figures."""
import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dctutor.data import load_dataset
from dctutor.models import alexnet
from dctutor.labs.figures import (cluster_montage, plot_cluster_sizes, plot_filters, plot_history, plot_probe,
                                  plot_top_images)
from dctutor.labs.inspect import effective_filters, polarity_labels, same_polarity, top_activating


def test_effective_filters_reproduce_sobel_then_conv1():
    model = alexnet(10, small_input=True, width=0.125, seed=0)
    x = torch.randn(2, 3, 20, 20)
    through_layers = F.conv2d(model.sobel(x), model.first_conv.weight)
    direct = F.conv2d(x, torch.from_numpy(effective_filters(model).copy()))
    # Equal away from the border, where the Sobel layer's zero padding plays no part.
    torch.testing.assert_close(through_layers[..., 1:-1, 1:-1], direct, atol=1e-5, rtol=1e-5)
    filters = effective_filters(model)
    assert filters.shape == (12, 3, 7, 7) and np.array_equal(filters[:, 0], filters[:, 2])


def test_rgb_filters_are_the_weights():
    model = alexnet(10, sobel=False, small_input=True, width=0.125, seed=0)
    assert np.array_equal(effective_filters(model), model.first_conv.weight.detach().numpy())


def test_top_activating_finds_the_maximum():
    data = load_dataset("shapes", n=40, seed=0)
    model = alexnet(10, small_input=True, width=0.125, seed=0)
    top = top_activating(model, data, [0, 3], top=9)
    assert top.shape == (2, 9)
    with torch.no_grad():
        x = (data.images.float() / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / \
            torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        score = model.eval().forward_layers(x, ["conv5"])["conv5"][:, 3].amax(dim=(1, 2))
    assert int(top[1, 0]) == int(score.argmax())


def test_every_figure_draws():
    data = load_dataset("shapes", n=40, seed=0)
    model = alexnet(4, small_input=True, width=0.125, seed=0)
    labels = np.arange(40) % 4
    history = [{"epoch": e, "loss": 1.0, "nmi_labels": 0.1, "nmi_prev": float("nan") if e == 0 else 0.5,
                "n_effective": 3.9, "sizes": [10, 10, 10, 10]} for e in range(3)]
    figures = [plot_history(history), plot_cluster_sizes(history), plot_filters(effective_filters(model)),
               cluster_montage(data, labels, [0, 2], per_cluster=4),
               plot_top_images(data, top_activating(model, data, [0, 1]), [0, 1]),
               plot_probe([{"layer": "conv1", "trained": 0.5, "random": 0.4}])]
    for fig in figures:  # every figure fits the book's ~7.3-inch text column at 100 % zoom
        assert fig.get_size_inches()[0] <= 7.3, fig.axes[0].get_title()
    nmi_line = figures[0].axes[0].lines[0]
    assert list(nmi_line.get_ydata()) == [0.1, 0.1, 0.1] and figures[0].axes[0].get_ylim()[0] == 0
    bars = [patch.get_height() for patch in figures[-1].axes[0].patches]
    assert bars == pytest.approx([50.0, 40.0]), "bars are the accuracies in percent"


def test_same_polarity_makes_every_object_light_on_dark():
    data = load_dataset("shapes", n=60, seed=0)
    polarity = polarity_labels(data.images)
    assert 0 < polarity.mean() < 1  # shapes mixes both contrasts
    fixed = same_polarity(data)
    assert polarity_labels(fixed.images).all()
    assert torch.equal(fixed.images[polarity == 1], data.images[polarity == 1])
    assert torch.equal(fixed.images[polarity == 0], 255 - data.images[polarity == 0])
    with pytest.raises(ValueError, match="uint8"):
        polarity_labels(data.images.float())
