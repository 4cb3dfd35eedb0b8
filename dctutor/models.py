"""AlexNet as DeepCluster trains it (paper Sec. 3.4), in an ImageNet and a small-image configuration."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .sobel import Sobel

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
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _fc(cin: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(cin, cout), nn.ReLU(inplace=True))


class AlexNet(nn.Module):
    """AlexNet with BatchNorm, optional Sobel input, and named layers.

    ``features`` holds ``conv1``..``conv5`` (conv-BN-ReLU blocks) and the pools ``pool1``,
    ``pool2``, ``pool5``; ``classifier`` holds ``fc6`` and ``fc7`` (dropout-linear-ReLU);
    ``top_layer`` maps fc7 to the ``num_classes`` pseudo-labels and is the only part DeepCluster
    replaces at every epoch. ``activations(x, "conv3")`` returns any named layer's output.
    """

    def __init__(self, num_classes: int = 1000, *, sobel: bool = True, config: str = "imagenet",
                 width: float = 1.0, fc_dim: int = 4096, dropout: float = 0.5) -> None:
        super().__init__()
        if config not in _CONVS:
            raise ValueError(f"config={config!r} is unknown; use one of {sorted(_CONVS)}")
        if not (isinstance(num_classes, int) and num_classes >= 1):
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not (isinstance(width, (int, float)) and width > 0):
            raise ValueError(f"width must be a positive number (1.0 is the paper's AlexNet), got {width!r}")
        if not (isinstance(fc_dim, int) and fc_dim >= 1):
            raise ValueError(f"fc_dim must be a positive int (4096 in the paper), got {fc_dim!r}")
        self.config, self.width, self.fc_dim = config, width, fc_dim
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
        self.classifier = nn.Sequential(OrderedDict(
            fc6=_fc(cin * _POOL5[config] ** 2, fc_dim, dropout),
            fc7=_fc(fc_dim, fc_dim, dropout),
        ))
        self.top_layer = nn.Linear(fc_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def layer(self, name: str) -> nn.Module:
        """The block called ``name`` (one of ``LAYERS``)."""
        if name not in LAYERS:
            raise ValueError(f"layer {name!r} is unknown; AlexNet layers are {list(LAYERS)}")
        parent = self.features if name.startswith("conv") else self.classifier
        return getattr(parent, name)

    def activations(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Run the network up to and including layer ``name`` and return its output."""
        self.layer(name)
        if self.sobel is not None:
            x = self.sobel(x)
        for block_name, block in self.features.named_children():
            x = block(x)
            if block_name == name:
                return x
        x = torch.flatten(x, 1)
        for block_name, block in self.classifier.named_children():
            x = block(x)
            if block_name == name:
                return x
        raise AssertionError("unreachable: layer() validated the name")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.top_layer(self.activations(x, "fc7"))


def alexnet(num_classes: int = 1000, *, sobel: bool = True, small_input: bool = False,
            width: float = 1.0, fc_dim: int | None = None, seed: int | None = None) -> AlexNet:
    """AlexNet as trained by DeepCluster (Caron et al., 2018, Sec. 3.4).

    Five convolutional layers with 96, 256, 384, 384 and 256 filters, BatchNorm instead of LRN,
    three fully connected layers with dropout, and, when ``sobel=True``, the fixed Sobel layer in
    front. ``small_input=True`` adapts the first layer and the pools to 32-96 px images (CIFAR-10,
    STL-10) at the same depth. ``width`` scales every layer's channels (0.5 is close to the
    smaller AlexNet of Mustapha et al., 2022); ``fc_dim`` defaults to 4096 scaled by ``width``.
    ``seed`` makes the random initialisation reproducible without touching torch's global RNG.
    """
    if fc_dim is None:
        fc_dim = max(1, round(4096 * width))
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        return AlexNet(num_classes, sobel=sobel, config="small" if small_input else "imagenet",
                       width=width, fc_dim=fc_dim)
