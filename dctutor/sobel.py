"""The fixed Sobel input layer of DeepCluster (paper Sec. 3.4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Sobel(nn.Module):
    """Turn an RGB batch into two channels of image gradients: ``(N, 3, H, W) -> (N, 2, H, W)``.

    DeepCluster applies "a fixed linear transformation based on Sobel filters to remove color
    and increase local contrast" (Caron et al., 2018, Sec. 3.4). Without it, k-means on a
    random network's features groups images by colour, and the network happily learns colour
    detectors (Fig. 3 of the paper). The layer is two convolutions:

    1. grayscale: a 1x1 convolution with every weight 1/3 (the channel mean);
    2. gradients: two 3x3 kernels, ``Gx = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]`` and ``Gy = Gx^T``,
       with zero padding so the spatial size is kept.

    The kernels are buffers, not parameters: they are saved with the model, follow ``.to()``,
    and are never seen by an optimiser, so they cannot drift during training.
    """

    def __init__(self) -> None:
        super().__init__()
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("gray_weight", torch.full((1, 3, 1, 1), 1.0 / 3.0))
        self.register_buffer("sobel_weight", torch.stack([gx, gx.t()]).unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"Sobel expects an RGB batch of shape (N, 3, H, W), got {tuple(x.shape)}")
        gray = F.conv2d(x, self.gray_weight)
        return F.conv2d(gray, self.sobel_weight, padding=1)


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(Gx^2 + Gy^2)`` of an RGB batch, as a ``(N, 1, H, W)`` tensor (for plots)."""
    g = Sobel().to(x.device)(x)
    return g.pow(2).sum(dim=1, keepdim=True).sqrt()
