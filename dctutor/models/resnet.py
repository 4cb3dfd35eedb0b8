"""ResNet-18 from torchvision as a DeepCluster backbone, in its CIFAR form for small images.

The CIFAR form (a 3x3 stride-1 stem and no max-pool) is the backbone solo-learn and SwAV's
DeepCluster-v2 use on 32-96 px images; on large images the ImageNet stem is kept. It has no fully
connected layers: the 512-d global average pool is both the clustered embedding and the input of
``top_layer``, so its ``head`` is the identity.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
from torch import nn

from ..sobel import Sobel
from ..validation import check_int
from . import Backbone

LAYERS = ("stem", "layer1", "layer2", "layer3", "layer4", "pool")


class ResNetCifar(Backbone):
    """torchvision's ResNet-18 with an optional Sobel input and named stages (``layers``)."""

    name = "resnet18"
    layers = LAYERS
    probe_layers = ("layer1", "layer2", "layer3", "layer4")
    feature_dim = 512

    def __init__(self, num_classes: int = 1000, *, sobel: bool = True, small_input: bool = True) -> None:
        super().__init__()
        check_int(num_classes, "num_classes", 1, "num_classes=100")
        self.small_input = bool(small_input)
        self.sobel = Sobel() if sobel else None
        net = torchvision.models.resnet18(weights=None)
        cin = 2 if sobel else 3
        if small_input:
            conv = nn.Conv2d(cin, 64, 3, stride=1, padding=1, bias=False)
            pool: nn.Module = nn.Identity()
        else:
            conv, pool = nn.Conv2d(cin, 64, 7, stride=2, padding=3, bias=False), net.maxpool
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        self.stem = nn.Sequential(conv, net.bn1, net.relu, pool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Identity()
        self.top_layer = nn.Linear(512, num_classes)

    @property
    def arch(self) -> dict:
        return {"name": self.name, "sobel": self.sobel is not None, "small_input": self.small_input}

    @property
    def first_conv(self) -> nn.Conv2d:
        return self.stem[0]

    def _stages(self):
        return [(name, getattr(self, name)) for name in LAYERS]

    def forward_body(self, x: torch.Tensor) -> torch.Tensor:
        if self.sobel is not None:
            x = self.sobel(x)
        for _, stage in self._stages():
            x = stage(x)
        return torch.flatten(x, 1)

    def forward_layers(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        wanted = self.check_layers(names)
        last = max(LAYERS.index(name) for name in wanted)
        if self.sobel is not None:
            x = self.sobel(x)
        out = {}
        for name, stage in self._stages()[:last + 1]:
            x = stage(x)
            if name in wanted:
                out[name] = torch.flatten(x, 1) if name == "pool" else x
        return out

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_body(x)


def resnet18(num_classes: int = 1000, *, sobel: bool = True, small_input: bool = True,
             seed: int | None = None) -> ResNetCifar:
    """ResNet-18 (He et al., 2016) from torchvision, CIFAR stem when ``small_input`` (3x3 conv,
    stride 1, no max-pool), optional Sobel input as in DeepCluster (Caron et al., 2018, Sec. 3.4).
    ``seed`` makes the initialisation reproducible without touching torch's global RNG."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return ResNetCifar(num_classes, sobel=sobel, small_input=small_input)
