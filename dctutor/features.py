"""Images to feature vectors: the first arrow of DeepCluster's loop (paper Sec. 3.2).

The network runs in eval mode (BatchNorm statistics frozen, no dropout) on un-augmented images,
as DeepCluster does before clustering (Sec. 3.4), whatever transform the data set carries for
training, and the caller's train/eval mode is restored afterwards. The images are whole by
default; ``crop`` feeds their central part instead, as the paper's "central cropped images".
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .augment import augment_batch
from .data import ImageDataset, eval_transform
from .device import pick_device
from .models import Backbone, check_backbone
from .progress import tqdm
from .stream import batches
from .validation import check_float, check_int


def _check(model: Backbone, dataset: ImageDataset, batch_size: int) -> None:
    check_backbone(model)
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be a dctutor ImageDataset (from load_dataset), got {type(dataset).__name__}")
    check_int(batch_size, "batch_size", 1, "batch_size=256")
    if len(dataset) == 0:
        raise ValueError(f"dataset {dataset.name!r} holds no images, so there are no features to extract; "
                         f"check its split and n")


@torch.no_grad()
def _run(model: Backbone, dataset: ImageDataset, forward: Callable[[torch.Tensor], dict[str, torch.Tensor]],
         batch_size: int, device, progress: bool, desc: str, on_device: bool = False, crop: float = 1.0) -> dict:
    dev = pick_device(device)
    was_training = model.training
    model.eval().to(dev)
    to_input = eval_transform() if crop == 1.0 else central_crop(dataset.image_size, crop)
    chunks: dict[str, list[torch.Tensor]] = {}
    try:
        spans = [slice(start, start + batch_size) for start in range(0, len(dataset), batch_size)]
        pixels = batches(dataset.images, spans, pin_memory=dev.type == "cuda")
        for chunk in tqdm(pixels, total=len(spans), desc=desc, disable=not progress, leave=False):
            outputs = forward(to_input(chunk.to(dev, non_blocking=True)))
            for name, out in outputs.items():
                out = out.flatten(1).float()
                chunks.setdefault(name, []).append(out if on_device else out.cpu())
    finally:
        model.train(was_training)
    return {name: torch.cat(parts) if on_device else torch.cat(parts).numpy() for name, parts in chunks.items()}


def _check_crop(crop: float) -> float:
    return check_float(crop, "crop", 0, "crop=0.875 (the paper's 224 of 256) or 1.0 (the whole image)",
                       strict_low=True, high=1)


def central_crop(size: int, fraction: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 images -> the normalised network input of their central ``fraction`` (of each side),
    resized back to ``size`` pixels: what the paper clusters (Sec. 3.4, "central cropped images":
    the reference resizes to 256 and crops 224, ``fraction=0.875``). The crop is resampled as
    :func:`dctutor.augment.augment_batch` resamples a training crop, so both see the same pixels."""
    fraction = _check_crop(fraction)
    side = max(1, round(fraction * size))
    box = torch.tensor([[(size - side) // 2, (size - side) // 2, side, side]])

    def to_input(images: torch.Tensor) -> torch.Tensor:
        n = len(images)
        return augment_batch(images, box.expand(n, 4).to(images.device),
                             torch.zeros(n, dtype=torch.bool, device=images.device), size)
    return to_input


def extract_features(model: Backbone, dataset: ImageDataset, layer: str | None = None, *, batch_size: int = 256,
                     device: str | torch.device | None = None, pool: int | None = None,
                     progress: bool = True, as_numpy: bool = True, crop: float = 1.0) -> np.ndarray | torch.Tensor:
    """The features of every image of ``dataset`` as a float32 ``(N, D)`` array.

    ``as_numpy=False`` returns a tensor left on the compute device instead, so that the loop can
    whiten and cluster on a GPU without a round trip through host memory.

    ``layer=None`` returns the backbone's ``embedding``, the features DeepCluster clusters (for
    AlexNet, fc7 before its ReLU). A layer name (one of ``model.layers``) returns that layer's
    output; convolutional maps are flattened, after average-pooling to ``pool x pool`` when given
    (``pool`` applies to maps only: with the embedding or a fully connected layer it is refused, so
    that it never silently does nothing). ``crop`` < 1 feeds the network the central crop of that
    fraction of each side, resized to the full size (:func:`central_crop`), instead of the image.
    """
    _check(model, dataset, batch_size)
    crop = _check_crop(crop)
    if pool is not None:
        check_int(pool, "pool", 1, "pool=2 (or None to keep the whole map)")
    if layer is None:
        if pool is not None:
            raise ValueError(f"pool={pool} average-pools a convolutional map, but layer=None is the embedding, "
                             f"a vector; drop pool or name a conv layer, one of {list(model.probe_layers)}")

        def forward(x):
            return {"embedding": model.embedding(x)}
    else:
        model.check_layers([layer])

        def forward(x):
            out = model.forward_layers(x, [layer])[layer]
            if pool is not None and out.dim() != 4:
                raise ValueError(f"pool={pool} average-pools a convolutional map, but layer {layer!r} gives "
                                 f"vectors; drop pool or name a conv layer, one of {list(model.probe_layers)}")
            return {layer: F.adaptive_avg_pool2d(out, pool) if pool is not None else out}
    features = _run(model, dataset, forward, batch_size, device, progress, f"features {layer or 'embedding'}",
                    on_device=not as_numpy, crop=crop)
    return next(iter(features.values()))


def pool_size(channels: int, spatial: int, target_dim: int) -> int:
    """Side p of the average pool that keeps ``channels * p * p`` near (at most) ``target_dim``."""
    return max(1, min(spatial, int(math.sqrt(target_dim / channels))))


def layer_features(model: Backbone, dataset: ImageDataset, layers: Sequence[str], *, target_dim: int = 4096,
                   batch_size: int = 256, device: str | torch.device | None = None,
                   progress: bool = False) -> dict[str, np.ndarray]:
    """Features of several layers from one forward pass per batch, as ``{layer: (N, D) array}``.

    Convolutional maps are average-pooled by :func:`pool_size` to at most about ``target_dim``
    values (the probes of Sec. 4.3 need a few thousand dimensions, not a full map).
    """
    _check(model, dataset, batch_size)
    wanted = model.check_layers(list(layers))
    check_int(target_dim, "target_dim", 1, "target_dim=4096")

    def forward(x):
        outputs = model.forward_layers(x, wanted)
        return {name: F.adaptive_avg_pool2d(out, pool_size(out.shape[1], out.shape[-1], target_dim))
                if out.dim() == 4 else out for name, out in outputs.items()}
    features = _run(model, dataset, forward, batch_size, device, progress, "layer features")
    return {name: features[name] for name in wanted}
