"""Random crops and flips of a whole batch in one operation, on the batch's device (paper Sec. 3.4).

DeepCluster trains on random crops of random size and aspect ratio, flipped half of the time.
torchvision's ``RandomResizedCrop`` draws and resizes one image at a time, which on a GPU leaves
the device waiting for a Python loop. :class:`BatchAugment` draws the same crop parameters for
every image of the batch at once (torchvision's rule: ten tries, then the centre crop) and samples
all crops with a single ``grid_sample``. Bilinear sampling with the source coordinates clamped to
the crop equals torchvision's resize of the cropped image whenever the crop is not larger than
the output, which always holds here (output size = image size); ``tests/test_augment.py`` checks
both the pixels and the statistics of scales, aspect ratios and flips.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import MEAN, STD
from .validation import check_float, check_int

# torchvision's RandomResizedCrop tries this many random boxes before falling back to the centre.
_TRIES = 10


def crop_params(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` random crop boxes as an ``(n, 4)`` long tensor of (top, left, height, width).

    The rule of ``torchvision.transforms.RandomResizedCrop.get_params``, vectorised: an area
    fraction uniform in ``scale`` and a log-uniform aspect ratio in ``ratio``, the first of ten
    tries that fits in the image, else the largest centred box within ``ratio``.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand(n, _TRIES, generator=generator,
                                                                     dtype=torch.float64))
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, _TRIES, generator=generator, dtype=torch.float64))
    w = torch.round(torch.sqrt(target * aspect)).long()
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.long().argmax(1)
    found = fits.any(1)
    w, h = w.gather(1, first[:, None])[:, 0], h.gather(1, first[:, None])[:, 0]
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    top = torch.where(found, (u[:, 0] * (height - h + 1)).long(), (height - fh) // 2)
    left = torch.where(found, (u[:, 1] * (width - w + 1)).long(), (width - fw) // 2)
    return torch.stack([top, left, h, w], 1)


def _axis(start: torch.Tensor, length: torch.Tensor, size: int, out: int) -> torch.Tensor:
    """Normalised grid coordinates (n, out) that resize [start, start + length) to ``out`` samples."""
    step = length.double()[:, None] / out
    src = start.double()[:, None] + (torch.arange(out, dtype=torch.float64, device=start.device) + 0.5) * step - 0.5
    # Clamping to the crop is what resizing the cropped image does at its borders.
    src = torch.minimum(torch.maximum(src, start.double()[:, None]), (start + length - 1).double()[:, None])
    return (2 * src + 1) / size - 1


def augment_batch(images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, size: int,
                  mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD) -> torch.Tensor:
    """Crop ``boxes`` (n, 4: top, left, height, width) out of uint8 ``images`` (n, 3, H, W), resize
    each to ``size x size`` bilinearly, mirror where ``flips`` is True and normalise: the float
    network input, computed on ``images``' device (``boxes`` and ``flips`` may live elsewhere)."""
    n, _, height, width = images.shape
    xs = _axis(boxes[:, 1], boxes[:, 3], width, size)
    ys = _axis(boxes[:, 0], boxes[:, 2], height, size)
    xs = torch.where(flips[:, None], xs.flip(1), xs)
    grid = torch.stack([xs[:, None, :].expand(n, size, size), ys[:, :, None].expand(n, size, size)], -1)
    pixels = images.float().div_(255)
    out = F.grid_sample(pixels, grid.to(pixels), mode="bilinear", padding_mode="border", align_corners=False)
    m = torch.tensor(mean, device=out.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=out.device).view(1, -1, 1, 1)
    return out.sub_(m).div_(s)


class BatchAugment:
    """DeepCluster's training augmentation for a batch: random resized crops (area fraction in
    ``scale``, aspect ratio in ``ratio``) and horizontal flips with probability 0.5, then the
    ImageNet normalisation (Sec. 3.4). Random draws come from ``generator`` on the CPU, so a
    seed gives the same crops on any device."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.3, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        self.size = check_int(size, "size", 1, "size=32")
        check_float(scale[0], "scale[0]", 0, "scale=(0.3, 1.0)", strict_low=True, high=1)
        check_float(scale[1], "scale[1]", scale[0], "scale=(0.3, 1.0)", high=1)
        check_float(ratio[0], "ratio[0]", 0, "ratio=(3/4, 4/3)", strict_low=True)
        check_float(ratio[1], "ratio[1]", ratio[0], "ratio=(3/4, 4/3)")
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))

    def draw(self, n: int, height: int, width: int,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop boxes (n, 4) and flips (n,) for ``n`` images of ``height x width``, drawn on the CPU.
        The loop draws a whole epoch at once and moves it to the device in one copy, so that no
        training step waits for a host-to-device transfer."""
        return crop_params(n, height, width, self.scale, self.ratio, generator), torch.rand(n, generator=generator) < 0.5

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        boxes, flips = self.draw(len(images), images.shape[-2], images.shape[-1], generator)
        return augment_batch(images, boxes.to(images.device), flips.to(images.device), self.size)
