"""Backbones DeepCluster can train, behind one contract, and a registry to rebuild them by name.

Everything outside this package (the loop, feature extraction, probes, transfer, figures, the
CLI) talks to a network only through :class:`Backbone`:

* ``forward_body(x)`` -> the flattened input of ``head``; ``head`` -> the ``feature_dim``-wide
  features; ``top_layer`` -> one score per pseudo-label. ``forward(x)`` chains the three.
  ``top_layer`` is the one part DeepCluster replaces every epoch (Sec. 3.2, 3.4).
* ``embedding(x)``: the features that are clustered (for AlexNet fc7 *before* its ReLU, as in
  the reference code).
* ``forward_layers(x, names)``: several named layers' outputs from one pass (``layers`` lists
  them in order; ``probe_layers`` are the convolutional ones the linear probes score).
* ``arch``: a plain dict from which :func:`build` makes the same network again (checkpoints
  store it); ``first_conv``: the convolution that sees the (Sobel) input, for filter plots.

``small_input_for(image_size)`` is the one rule that decides the small-image configuration.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..validation import check_int

SMALL_INPUT_BELOW = 128


def small_input_for(image_size: int) -> bool:
    """True when images of ``image_size`` pixels need the small-image stem (CIFAR-10, STL-10):
    below 128 px an ImageNet stem (stride 4, or stride 2 and a max-pool) leaves too few pixels."""
    return check_int(image_size, "image_size", 1, "image_size=32") < SMALL_INPUT_BELOW


class Backbone(nn.Module):
    """The contract of a DeepCluster backbone (see the module docstring). Subclasses set
    ``name``, ``layers``, ``probe_layers``, ``feature_dim``, ``head``, ``top_layer``, ``sobel``
    and implement ``forward_body``, ``forward_layers``, ``embedding``, ``arch`` and ``first_conv``."""

    name: str = ""
    layers: tuple[str, ...] = ()
    probe_layers: tuple[str, ...] = ()
    feature_dim: int
    head: nn.Module
    top_layer: nn.Linear
    sobel: nn.Module | None

    def forward_body(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_layers(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def arch(self) -> dict:
        raise NotImplementedError

    @property
    def first_conv(self) -> nn.Conv2d:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top_layer(self.head(self.forward_body(x)))

    @property
    def min_image_size(self) -> int:
        """The smallest image side in pixels the body can take (its stem and pools leave at least one
        pixel); 1 for a backbone without such a limit."""
        return 1

    def check_image_size(self, image_size: int) -> int:
        """``image_size`` if images of that side pass through the body, else a ``ValueError`` that says
        which stem is too coarse and what to change, instead of torch's error deep inside a pool."""
        check_int(image_size, "image_size", 1, "image_size=32")
        least = self.min_image_size
        if image_size >= least:
            return image_size
        if getattr(self, "small_input", True):
            raise ValueError(f"image_size={image_size} is too small for {self.name} (it needs at least {least} px); "
                             f"use image_size >= {least}")
        raise ValueError(f"image_size={image_size} is too small for {self.name}'s ImageNet stem (small_input=False "
                         f"needs at least {least} px); use small_input=True (CLI: --small-input auto or yes) or "
                         f"image_size >= {least}")

    def check_layers(self, names: Sequence[str]) -> list[str]:
        """``names`` as a list, or a ``ValueError`` naming the unknown ones and the valid ones."""
        if isinstance(names, str):
            names = [names]
        unknown = [name for name in names if name not in self.layers]
        if unknown or not names:
            raise ValueError(f"layer(s) {unknown or list(names)} unknown; {self.name} layers are {list(self.layers)}")
        return list(names)

    def new_top_layer(self, num_classes: int, generator: torch.Generator | None = None) -> nn.Linear:
        """A fresh ``feature_dim -> num_classes`` classifier, weights N(0, 0.01) and bias 0: the init
        of the reference code, used for each epoch's pseudo-labels and for transfer targets."""
        top = nn.Linear(self.feature_dim, check_int(num_classes, "num_classes", 1, "num_classes=100"))
        with torch.no_grad():
            top.weight.copy_(torch.randn(top.weight.shape, generator=generator) * 0.01)
            top.bias.zero_()
        return top


def check_backbone(model) -> Backbone:
    """``model`` if it follows the :class:`Backbone` contract, else a ``TypeError`` saying how to get one."""
    if not isinstance(model, Backbone):
        raise TypeError(f"model must be a dctutor backbone (dctutor.models.alexnet or resnet18, or "
                        f"dctutor.runs.load_model(run)), got {type(model).__name__}")
    return model


from .alexnet import AlexNet, alexnet  # noqa: E402  (the backbones subclass Backbone above)
from .resnet import ResNetCifar, resnet18  # noqa: E402

BACKBONES: dict[str, Callable[..., Backbone]] = {"alexnet": alexnet, "resnet18": resnet18}


def build(arch: dict, num_classes: int, *, seed: int | None = None) -> Backbone:
    """A freshly initialised network of architecture ``arch`` (a backbone's ``arch`` dict)."""
    if not isinstance(arch, dict) or arch.get("name") not in BACKBONES:
        name = arch.get("name") if isinstance(arch, dict) else arch
        raise ValueError(f"arch names backbone {name!r}; known backbones are {list(BACKBONES)}")
    options = {key: value for key, value in arch.items() if key != "name"}
    try:
        return BACKBONES[arch["name"]](num_classes, seed=seed, **options)
    except TypeError as err:
        raise ValueError(f"arch {arch} does not fit backbone {arch['name']!r}: {err}") from None


__all__ = ["BACKBONES", "AlexNet", "Backbone", "ResNetCifar", "alexnet", "build", "check_backbone", "resnet18",
           "small_input_for"]
