"""AlexNet as DeepCluster trains it (paper Sec. 3.4), in an ImageNet and a small-image configuration."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ..sobel import Sobel
from ..validation import check_float, check_int
from . import Backbone

# (out_channels, kernel, stride, padding) of conv1..conv5; the paper's 96-256-384-384-256.
_CONVS = {
    "imagenet": [(96, 11, 4, 2), (256, 5, 1, 2), (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1)],
    "small": [(96, 5, 1, 2), (256, 5, 1, 2), (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1)],
}
# ImageNet AlexNet pools with 3x3/2 windows; on 32-96 px inputs 2x2/2 keeps enough resolution.
_POOL = {"imagenet": (3, 2), "small": (2, 2)}
# Spatial size of conv5's pooled output: 6x6 at 224 px as in AlexNet, 4x4 for small inputs.
_POOL5 = {"imagenet": 6, "small": 4}
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


def _conv(cin: int, cout: int, kernel: int, stride: int, padding: int) -> nn.Sequential:
    # BatchNorm replaces AlexNet's Local Response Normalisation (paper Sec. 3.4).
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _pair(value) -> int:
    # Square kernels, strides and paddings throughout; torch stores them as an int or a pair.
    return value[0] if isinstance(value, tuple) else value


def _fc(cin: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, cout), nn.ReLU(inplace=True))


class AlexNet(Backbone):
    """AlexNet with BatchNorm, optional Sobel input, and named layers.

    ``features`` holds ``conv1``..``conv5`` (conv-BN-ReLU blocks) and the pools; ``head`` holds
    ``fc6`` and ``fc7`` (dropout-linear-ReLU); ``top_layer`` maps fc7 to the pseudo-labels.
    The clustered ``embedding`` is fc7 before its ReLU: the reference code strips that ReLU
    before extracting features, so no dimension is clipped to an exact zero.
    """

    name = "alexnet"
    layers = LAYERS
    probe_layers = LAYERS[:5]

    def __init__(self, num_classes: int = 1000, *, sobel: bool = True, small_input: bool = False,
                 width: float = 1.0, fc_dim: int = 4096, dropout: float = 0.5) -> None:
        super().__init__()
        config = "small" if small_input else "imagenet"
        check_int(num_classes, "num_classes", 1, "num_classes=100")
        self.width = check_float(width, "width", 0, "width=1.0 (the paper's AlexNet)", strict_low=True)
        self.fc_dim = self.feature_dim = check_int(fc_dim, "fc_dim", 1, "fc_dim=4096 (the paper's)")
        self.small_input = bool(small_input)
        self.sobel = Sobel() if sobel else None
        pool_k, pool_s = _POOL[config]
        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        cin = 2 if sobel else 3
        for i, (cout, kernel, stride, padding) in enumerate(_CONVS[config], start=1):
            cout = max(1, round(cout * width))
            blocks[f"conv{i}"] = _conv(cin, cout, kernel, stride, padding)
            if i in (1, 2):
                blocks[f"pool{i}"] = nn.MaxPool2d(pool_k, pool_s)
            cin = cout
        # Adaptive max pooling equals AlexNet's 3x3/2 pool at 224 px and lets 32-96 px inputs share one head.
        blocks["pool5"] = nn.AdaptiveMaxPool2d(_POOL5[config])
        self.features = nn.Sequential(blocks)
        self.head = nn.Sequential(OrderedDict(fc6=_fc(cin * _POOL5[config] ** 2, fc_dim, dropout),
                                              fc7=_fc(fc_dim, fc_dim, dropout)))
        self.top_layer = nn.Linear(fc_dim, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    @property
    def arch(self) -> dict:
        return {"name": self.name, "sobel": self.sobel is not None, "small_input": self.small_input,
                "width": self.width, "fc_dim": self.fc_dim}

    @property
    def first_conv(self) -> nn.Conv2d:
        return self.features.conv1[0]

    @property
    def min_image_size(self) -> int:
        layers = [m for m in self.features.modules() if isinstance(m, (nn.Conv2d, nn.MaxPool2d))]

        def output(size: int) -> int:
            for layer in layers:
                kernel, stride, padding = (_pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding))
                size = (size + 2 * padding - kernel) // stride + 1
                if size < 1:
                    return 0
            return size
        return next(size for size in range(1, 4096) if output(size) >= 1)

    def forward_body(self, x: torch.Tensor) -> torch.Tensor:
        self.check_image_size(min(x.shape[-2:]))
        if self.sobel is not None:
            x = self.sobel(x)
        return torch.flatten(self.features(x), 1)

    def forward_layers(self, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
        wanted = self.check_layers(names)
        self.check_image_size(min(x.shape[-2:]))
        last = max(LAYERS.index(name) for name in wanted)
        out: dict[str, torch.Tensor] = {}
        if self.sobel is not None:
            x = self.sobel(x)
        blocks = [*self.features.named_children(), ("flatten", nn.Flatten()), *self.head.named_children()]
        for block_name, block in blocks:
            x = block(x)
            if block_name in wanted:
                out[block_name] = x
            if block_name in LAYERS and LAYERS.index(block_name) == last:
                break
        return out

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        fc6 = self.head.fc6(self.forward_body(x))
        return self.head.fc7[:-1](fc6)


def alexnet(num_classes: int = 1000, *, sobel: bool = True, small_input: bool = False, width: float = 1.0,
            fc_dim: int | None = None, seed: int | None = None) -> AlexNet:
    """AlexNet as trained by DeepCluster (Caron et al., 2018, Sec. 3.4).

    Five convolutional layers with 96, 256, 384, 384 and 256 filters, BatchNorm instead of LRN,
    three fully connected layers with dropout, and, when ``sobel=True``, the fixed Sobel layer in
    front. ``small_input=True`` (see :func:`dctutor.models.small_input_for`) adapts the first layer
    and the pools to 32-96 px images at the same depth. ``width`` scales every layer's channels
    (0.5 is close to the smaller AlexNet of Mustapha et al., 2022); ``fc_dim`` defaults to 4096
    scaled by ``width``. ``seed`` makes the initialisation reproducible without touching torch's
    global RNG.
    """
    if fc_dim is None:
        fc_dim = max(1, round(4096 * check_float(width, "width", 0, "width=1.0", strict_low=True)))
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return AlexNet(num_classes, sobel=sobel, small_input=small_input, width=width, fc_dim=fc_dim)
