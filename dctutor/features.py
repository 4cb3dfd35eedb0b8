"""Images to feature vectors: the first arrow of DeepCluster's loop (paper Sec. 3.2)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from .progress import tqdm

from .data import ImageDataset, eval_transform
from .device import pick_device
from .models import AlexNet


@torch.no_grad()
def extract_features(model: AlexNet, dataset: ImageDataset, layer: str = "fc7", *, batch_size: int = 256,
                     device: str | torch.device | None = None, pool: int | None = None,
                     progress: bool = True) -> np.ndarray:
    """Return ``layer``'s activations for every image of ``dataset`` as a float32 ``(N, D)`` array.

    The network runs in eval mode (BatchNorm statistics frozen, no dropout) on un-augmented
    images, as DeepCluster does before clustering (Sec. 3.4), whatever transform the data set
    carries for training. Convolutional maps are flattened; ``pool=p`` first average-pools them
    to ``p x p`` so probes on conv layers stay a few thousand dimensions wide.
    """
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be a dctutor ImageDataset (from load_dataset), got {type(dataset).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    model.layer(layer)
    dev = pick_device(device)
    was_training = model.training
    model.eval().to(dev)
    to_input = eval_transform()
    chunks = []
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc=f"features {layer}", disable=not progress, leave=False):
        x = to_input(dataset.images[start:start + batch_size].to(dev, non_blocking=True))
        out = model.activations(x, layer)
        if pool is not None and out.dim() == 4:
            out = F.adaptive_avg_pool2d(out, pool)
        chunks.append(out.flatten(1).float().cpu())
    model.train(was_training)
    return torch.cat(chunks).numpy()
