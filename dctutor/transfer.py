"""Transfer to VOC 2007 classification: the paper's test of what unsupervised features are worth.

Sec. 4.4 and Table 2 of the paper take an AlexNet trained without labels, give it a new 20-way
output layer and train it on the 2 500 images of VOC 2007 ``train`` (hyper-parameters chosen on
``val``), in two settings:

* ``"fc6-8"``: the convolutional layers are frozen (weights *and* BatchNorm statistics, so they
  stay in eval mode) and only fc6, fc7 and the new top layer learn: a direct test of the conv
  features;
* ``"all"``: every layer is fine-tuned: the features are only an initialisation.

The score is the mean over the 20 classes of the average precision (mAP) of the class scores,
averaged over several crops of each test image. A randomly initialised network trained the same
way is the floor (the "Random" rows of Table 2).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from .data import MEAN, STD
from .device import pick_device
from .models import AlexNet, alexnet
from .progress import tqdm

MODES = ("fc6-8", "all")
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FC_LAYERS = ("fc6", "fc7")
# Learning rates that train within a few epochs on 2 500 images (chosen on the stand-in's val split):
# the freshly initialised head needs a large step; fine-tuning every layer needs a smaller one.
DEFAULT_LR = {"fc6-8": 0.1, "all": 0.05}


def check_transferable(model: nn.Module) -> None:
    """Raise ``ValueError`` unless ``model`` has AlexNet's named parts: ``features.conv1..conv5``,
    ``classifier.fc6``/``fc7`` and a linear ``top_layer`` (what :func:`dctutor.models.alexnet` builds)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module (dctutor.models.alexnet), got {type(model).__name__}")
    missing = [f"features.{n}" for n in CONV_LAYERS if not hasattr(getattr(model, "features", None), n)]
    missing += [f"classifier.{n}" for n in FC_LAYERS if not hasattr(getattr(model, "classifier", None), n)]
    if not isinstance(getattr(model, "top_layer", None), nn.Linear):
        missing.append("top_layer (nn.Linear)")
    if missing:
        raise ValueError(f"{type(model).__name__} has no layers named {missing}; transfer needs an AlexNet with "
                         f"features.conv1..conv5, classifier.fc6/fc7 and top_layer, as built by "
                         f"dctutor.models.alexnet")


def load_deepcluster_checkpoint(path: str | Path) -> AlexNet:
    """Rebuild the AlexNet saved by :func:`dctutor.deepcluster.train_deepcluster` at ``path``
    (its ``checkpoint.pt``, or the ``out_dir`` holding it), with the trained weights."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no DeepCluster checkpoint at {path}; train one with "
                                f"dctutor.deepcluster.train_deepcluster(..., out_dir=...) first")
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "model" not in state or "arch" not in state:
        raise ValueError(f"{path} is not a dctutor DeepCluster checkpoint (needs 'model' and 'arch' entries)")
    arch = state["arch"]
    k = state["model"]["top_layer.weight"].shape[0]
    model = alexnet(k, sobel=arch["sobel"], small_input=arch["config"] == "small", width=arch["width"],
                    fc_dim=arch["fc_dim"])
    model.load_state_dict(state["model"])
    return model


def prepare_transfer(model: AlexNet, mode: str, num_classes: int = 20, *, reinit_fc: bool = True,
                     seed: int = 0) -> AlexNet:
    """A copy of ``model`` ready for transfer in ``mode`` (``"fc6-8"`` or ``"all"``).

    The top layer is replaced by a fresh ``fc_dim -> num_classes`` linear layer (weights N(0, 0.01),
    bias 0). With ``reinit_fc`` (the default) fc6 and fc7 start afresh too, so that FC6-8 measures
    the conv features alone and pretrained and random networks get the same head; pass False to
    keep the pretrained fc6/fc7. In ``"fc6-8"`` the Sobel and conv
    parameters get ``requires_grad=False``; :func:`train_transfer` also keeps them in eval mode so
    their BatchNorm running statistics do not move. The input ``model`` is never modified.
    """
    check_transferable(model)
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is unknown; use 'fc6-8' (frozen conv layers) or 'all' (fine-tune all)")
    net = copy.deepcopy(model).cpu()
    gen = torch.Generator().manual_seed(seed)
    top = nn.Linear(net.top_layer.in_features, num_classes)
    with torch.no_grad():
        top.weight.copy_(torch.randn(top.weight.shape, generator=gen) * 0.01)
        top.bias.zero_()
    net.top_layer = top
    if reinit_fc:
        for name in FC_LAYERS:
            linear = next(m for m in getattr(net.classifier, name).modules() if isinstance(m, nn.Linear))
            with torch.no_grad():  # He initialisation: fc7 outputs of unit scale, so SGD moves at once
                linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen)
                                    * math.sqrt(2.0 / linear.in_features))
                linear.bias.zero_()
    frozen = mode == "fc6-8"
    for name, p in net.named_parameters():
        p.requires_grad_(not (frozen and not name.startswith(("classifier.", "top_layer."))))
    net.transfer_mode = mode
    return net


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits averaged over the entries where ``mask`` is 1 (VOC's
    "difficult"-only classes are 0 there and contribute nothing)."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * mask
    return loss.sum() / mask.sum().clamp_min(1.0)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return v2.functional.normalize(x.float() / 255.0, MEAN, STD)


def _augment(images: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Random crops (30-100 % of the area, aspect 3/4-4/3) resized to ``size``, random flips."""
    out = torch.empty(len(images), 3, size, size)
    h, w = images.shape[-2:]
    for i, image in enumerate(images):
        area = h * w * float(torch.empty(1).uniform_(0.3, 1.0, generator=gen))
        ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)))
        ch, cw = min(h, round(math.sqrt(area / ratio))), min(w, round(math.sqrt(area * ratio)))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        crop = image[:, top:top + ch, left:left + cw].float().unsqueeze(0)
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        if bool(torch.rand(1, generator=gen) < 0.5):
            crop = crop.flip(-1)
        out[i] = crop
    return _normalise(out.clamp(0, 255))


def _crops(images: torch.Tensor, n_crops: int, fraction: float = 0.875) -> list[torch.Tensor]:
    """Test-time views of a uint8 batch, each resized back to the full size: 1 (the image), 2 (+ flip),
    10 (four corners and centre of ``fraction`` of the side, and their flips)."""
    size = images.shape[-1]
    x = images.float()
    if n_crops in (1, 2):
        views = [x]
    else:
        c = round(size * fraction)
        offsets = [(0, 0), (0, size - c), (size - c, 0), (size - c, size - c), ((size - c) // 2, (size - c) // 2)]
        views = [F.interpolate(x[..., t:t + c, l:l + c], size=(size, size), mode="bilinear", align_corners=False,
                               antialias=True) for t, l in offsets]
    if n_crops != 1:
        views = views + [v.flip(-1) for v in views]
    return [_normalise(v.clamp(0, 255)) for v in views]


@torch.no_grad()
def predict(model: AlexNet, images: torch.Tensor, *, n_crops: int = 10, batch_size: int = 128,
            device: str | torch.device | None = None) -> np.ndarray:
    """Class probabilities (N, C) for uint8 ``images`` (N, 3, S, S), averaged over ``n_crops`` views
    (1, 2 or 10: the usual 10-crop protocol of AlexNet evaluations), network in eval mode."""
    if n_crops not in (1, 2, 10):
        raise ValueError(f"n_crops must be 1 (whole image), 2 (+ its flip) or 10 (corners, centre, flips); "
                         f"got {n_crops!r}")
    dev = pick_device(device)
    was_training = model.training
    model.eval().to(dev)
    out = []
    for start in range(0, len(images), batch_size):
        views = _crops(images[start:start + batch_size], n_crops)
        out.append(torch.stack([torch.sigmoid(model(v.to(dev))).float().cpu() for v in views]).mean(0))
    model.train(was_training)
    return torch.cat(out).numpy()


@dataclass
class TransferResult:
    """What :func:`train_transfer` returns: the trained ``model``, the per-epoch mean ``losses``,
    and ``seconds`` of training (prediction not included)."""

    model: AlexNet
    mode: str
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _set_train_mode(model: AlexNet, mode: str) -> None:
    model.train()
    if mode == "fc6-8":  # frozen conv layers keep their BatchNorm running statistics
        model.features.eval()
        if model.sobel is not None:
            model.sobel.eval()


def _conv_features(net: AlexNet, x: torch.Tensor) -> torch.Tensor:
    """Flattened pool5 output: the input of fc6."""
    if net.sobel is not None:
        x = net.sobel(x)
    return torch.flatten(net.features(x), 1)


def _head(net: AlexNet, feats: torch.Tensor) -> torch.Tensor:
    return net.top_layer(net.classifier(feats))


def train_transfer(model: AlexNet, dataset, mode: str, *, epochs: int = 30, lr: float | None = None,
                   batch_size: int = 64, weight_decay: float = 1e-6, momentum: float = 0.9, views: int = 4,
                   reinit_fc: bool = True, seed: int = 0, device: str | torch.device | None = None, progress: bool = True) -> TransferResult:
    """Train a copy of ``model`` on ``dataset`` (a :class:`dctutor.voc.VOCClassification`) in ``mode``.

    The copy gets a new 20-way top layer (:func:`prepare_transfer`) and is trained with SGD
    (momentum, weight decay, learning rate divided by 10 for the last third of the epochs) on the
    masked binary cross-entropy, on random crops and flips of the training images. ``lr=None``
    takes :data:`DEFAULT_LR` for the mode.

    In ``"fc6-8"`` the frozen conv layers are a fixed function, so their output is computed once for
    ``views`` random crops of every image and the fully connected layers then train on those cached
    features, each epoch drawing one of the views per image: the same training as recomputing the
    conv layers, with a finite set of ``views`` augmentations, and many times faster. ``"all"`` draws
    a new crop for every image at every epoch. Everything random (new layer, order, crops, dropout)
    is seeded by ``seed``. The input ``model`` is not changed.
    """
    check_transferable(model)
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is unknown; use 'fc6-8' (frozen conv layers) or 'all' (fine-tune all)")
    for name, value, low in (("epochs", epochs, 0), ("batch_size", batch_size, 2), ("views", views, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not all(hasattr(dataset, a) for a in ("images", "targets", "mask")):
        raise TypeError(f"dataset must be a dctutor.voc.VOCClassification (images, targets, mask), "
                        f"got {type(dataset).__name__}")
    if lr is None:
        lr = DEFAULT_LR[mode]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    dev = pick_device(device)
    net = prepare_transfer(model, mode, dataset.targets.shape[1], reinit_fc=reinit_fc, seed=seed).to(dev)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    drop_at = max(1, round(epochs * 2 / 3))
    gen = torch.Generator().manual_seed(seed + 1)
    size, n = dataset.images.shape[-1], len(dataset.images)
    targets, mask = dataset.targets.to(dev), dataset.mask.to(dev)
    losses = []
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed + 2)  # dropout
        cache = None
        if mode == "fc6-8":
            net.eval()
            with torch.no_grad():
                cache = torch.stack([torch.cat([
                    _conv_features(net, _augment(dataset.images[s:s + 256], size, gen).to(dev))
                    for s in range(0, n, 256)]) for _ in tqdm(range(views), desc="conv features",
                                                             disable=not progress, leave=False)])
        for epoch in tqdm(range(epochs), desc=f"transfer {mode}", disable=not progress, leave=False):
            if epoch == drop_at:
                for group in optimizer.param_groups:
                    group["lr"] = lr / 10
            _set_train_mode(net, mode)
            order = torch.randperm(n, generator=gen)
            view = torch.randint(0, views, (n,), generator=gen)
            total, count = 0.0, 0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                if len(idx) < 2:
                    continue
                if cache is not None:
                    logits = _head(net, cache[view[idx].to(dev), idx.to(dev)])
                else:
                    logits = net(_augment(dataset.images[idx], size, gen).to(dev))
                loss = masked_bce(logits, targets[idx.to(dev)], mask[idx.to(dev)])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                count += len(idx)
            losses.append(total / max(count, 1))
    net.eval()
    return TransferResult(model=net, mode=mode, losses=losses, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# Average precision
# --------------------------------------------------------------------------------------------------

def voc07_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """The VOC2007 devkit's 11-point interpolated AP of one class.

    Precision is interpolated (the best precision at any recall >= r) and averaged over the 11
    recall levels r = 0, 0.1, ..., 1. ``labels`` are 0/1; the entries to ignore must already be
    removed. NaN when there is no positive.
    """
    scores, labels = np.asarray(scores, float), np.asarray(labels) > 0
    if labels.sum() == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(labels[order])
    recall = tp / labels.sum()
    precision = tp / np.arange(1, len(scores) + 1)
    points = [precision[recall >= r].max() if (recall >= r).any() else 0.0 for r in np.linspace(0, 1, 11)]
    return float(np.mean(points))


def average_precisions(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None, *,
                       method: str = "sklearn") -> np.ndarray:
    """Per-class AP (C,) of ``scores`` (N, C) against 0/1 ``targets`` (N, C), skipping entries where
    ``mask`` is 0. ``method="sklearn"`` is scikit-learn's ``average_precision_score`` (no
    interpolation); ``"voc07"`` is :func:`voc07_ap`. A class with no positive left gets NaN."""
    from sklearn.metrics import average_precision_score

    scores, targets = np.asarray(scores, float), np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must be the same (N, C) shape")
    mask = np.ones_like(targets) if mask is None else np.asarray(mask)
    if mask.shape != targets.shape:
        raise ValueError(f"mask {mask.shape} must have the shape of targets {targets.shape}")
    if method not in ("sklearn", "voc07"):
        raise ValueError(f"method={method!r} is unknown; use 'sklearn' or 'voc07' (11-point)")
    aps = np.full(targets.shape[1], np.nan)
    for c in range(targets.shape[1]):
        keep = mask[:, c] > 0
        y, s = targets[keep, c] > 0, scores[keep, c]
        if y.sum() == 0:
            continue
        aps[c] = average_precision_score(y, s) if method == "sklearn" else voc07_ap(s, y)
    return aps


def mean_average_precision(scores: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None, *,
                           method: str = "sklearn") -> float:
    """mAP: the mean of :func:`average_precisions` over the classes that have a positive."""
    aps = average_precisions(scores, targets, mask, method=method)
    if np.isnan(aps).all():
        raise ValueError("no class has a positive example among the unmasked entries; mAP is undefined")
    return float(np.nanmean(aps))


def evaluate(model: AlexNet, dataset, *, n_crops: int = 10, method: str = "sklearn",
             device: str | torch.device | None = None) -> dict:
    """mAP and per-class AP of ``model`` on ``dataset`` with ``n_crops`` test-time crops."""
    scores = predict(model, dataset.images, n_crops=n_crops, device=device)
    targets, mask = dataset.targets.numpy(), dataset.mask.numpy()
    aps = average_precisions(scores, targets, mask, method=method)
    return {"map": float(np.nanmean(aps)), "ap": aps, "scores": scores}


def compare_transfer(networks: dict[str, AlexNet], train, test, *, modes: tuple[str, ...] = MODES,
                     epochs: dict[str, int] | None = None, n_crops: int = 10, views: int = 4, seed: int = 0,
                     device: str | torch.device | None = None, progress: bool = True) -> list[dict]:
    """Transfer every network of ``networks`` (name -> AlexNet) in every mode; one row per pair.

    Each row has ``init``, ``mode``, ``map`` (scikit-learn AP), ``map_voc07`` (11-point), ``ap``
    (per class), ``train_s`` and ``eval_s``: the rows of the paper's Table 2, classification
    columns. ``epochs`` maps a mode to its number of epochs (default 30 for FC6-8, 5 for ALL).
    """
    epochs = {"fc6-8": 30, "all": 5, **(epochs or {})}
    rows = []
    for name, net in networks.items():
        for mode in modes:
            result = train_transfer(net, train, mode, epochs=epochs[mode], views=views, seed=seed, device=device,
                                    progress=progress)
            t0 = time.perf_counter()
            scores = predict(result.model, test.images, n_crops=n_crops, device=device)
            targets, mask = test.targets.numpy(), test.mask.numpy()
            aps = average_precisions(scores, targets, mask)
            rows.append({"init": name, "mode": mode, "map": float(np.nanmean(aps)),
                         "map_voc07": mean_average_precision(scores, targets, mask, method="voc07"),
                         "ap": aps, "train_s": result.seconds, "eval_s": time.perf_counter() - t0})
    return rows
