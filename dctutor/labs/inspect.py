"""Chapter 4's lab: what a DeepCluster network has learned, and the contrast shortcut of ``shapes``.

* :func:`effective_filters` composes the fixed Sobel layer with the first convolution, so filters
  can be drawn as RGB images (paper Fig. 3);
* :func:`top_activating` finds the images that excite a unit most (Fig. 4-5);
* :func:`knn_by_layer` asks how well each layer predicts the pseudo-labels or the true labels;
* :func:`polarity_labels` and :func:`same_polarity` measure and remove a shortcut of the offline
  data: whether an object is lighter or darker than its background.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import ImageDataset, eval_transform
from ..evaluate import knn_from_features
from ..features import layer_features
from ..models import Backbone


def effective_filters(model: Backbone) -> np.ndarray:
    """The first convolution's filters as seen from the RGB pixels, shape (out, 3, h, w).

    Without Sobel these are its weights. With Sobel, conv1 sees gradients: composing the fixed
    grayscale + Sobel layer with each filter (one linear map after the other) gives the RGB filter
    it really applies, the same in the three channels since the grayscale step drops colour.
    """
    weight = model.first_conv.weight.detach().cpu()
    if model.sobel is None:
        return weight.numpy()
    sobel_kernel = model.sobel.sobel_weight.detach().cpu()  # (2, 1, 3, 3): Gx and Gy
    # A full convolution of each conv1 filter with the Sobel kernels, summed over the two gradients.
    combined = F.conv_transpose2d(weight, sobel_kernel)  # (out, 1, h + 2, w + 2)
    return (combined / 3).expand(-1, 3, -1, -1).numpy()


@torch.no_grad()
def top_activating(model: Backbone, dataset: ImageDataset, units: Sequence[int], layer: str = "conv5",
                   top: int = 9, batch_size: int = 256) -> np.ndarray:
    """Indices (len(units), top) of the images that excite each unit of ``layer`` most (spatial max),
    as in the paper's Fig. 4-5 (eval mode, un-augmented images)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    to_input = eval_transform()
    scores = []
    for start in range(0, len(dataset), batch_size):
        x = to_input(dataset.images[start:start + batch_size].to(device))
        scores.append(model.forward_layers(x, [layer])[layer][:, list(units)].amax(dim=(2, 3)).cpu())
    model.train(was_training)
    return torch.cat(scores).topk(top, dim=0).indices.T.numpy()


def polarity_labels(images: torch.Tensor, margin: int = 4) -> np.ndarray:
    """1 where the centre of an image is brighter than its border, else 0: a contrast "label".

    The Sobel layer removes colour but keeps the sign of every edge, so whether an object is
    lighter or darker than its background survives it. On ``shapes`` (half the shapes are light
    on dark, half dark on light) clusters that agree with this label follow contrast, not shape.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be a uint8 (N, 3, H, W) tensor, got {images.dtype} {tuple(images.shape)}")
    gray = images.float().mean(dim=1)
    side = gray.shape[-1]
    centre = gray[:, side // 2 - margin:side // 2 + margin, side // 2 - margin:side // 2 + margin].mean((1, 2))
    border = torch.cat([gray[:, :margin].flatten(1), gray[:, -margin:].flatten(1)], dim=1).mean(1)
    return (centre > border).long().numpy()


def same_polarity(dataset: ImageDataset) -> ImageDataset:
    """``dataset`` with every dark-on-light image inverted, so all objects are light on dark.

    Removes the contrast shortcut that :func:`polarity_labels` measures, keeping everything else.
    """
    images = dataset.images.clone()
    dark = torch.from_numpy(polarity_labels(dataset.images) == 0).to(images.device)
    images[dark] = 255 - images[dark]
    return ImageDataset(images, dataset.targets, dataset.classes, dataset.name + " (same polarity)",
                        dataset.transform)


def knn_by_layer(model: Backbone, dataset: ImageDataset, targets: np.ndarray, layers: Sequence[str], *,
                 k: int = 20, seed: int = 0) -> dict[str, float]:
    """kNN accuracy of each layer for predicting ``targets`` (true labels, or the last pseudo-labels),
    with one random half of ``dataset`` as the memory and the other half scored.

    With the pseudo-labels as targets it measures how far a layer has specialised in the pretext task
    the loop trains it on; with the true labels, how much of that carries over to the classes."""
    targets = np.asarray(targets)
    if len(targets) != len(dataset):
        raise ValueError(f"targets has {len(targets)} entries but the dataset has {len(dataset)} images")
    features = layer_features(model, dataset, list(layers))
    order = np.random.default_rng(seed).permutation(len(dataset))
    memory, scored = order[: len(order) // 2], order[len(order) // 2:]
    return {layer: knn_from_features(f[memory], targets[memory], f[scored], targets[scored], k)
            for layer, f in features.items()}
