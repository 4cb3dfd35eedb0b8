"""Transfer to VOC 2007 classification: the paper's test of what unsupervised features are worth.

Sec. 4.4 and Table 2 of the paper take a network trained without labels, give it a new 20-way
output layer and train it on the 2 500 images of VOC 2007 ``train`` (hyper-parameters chosen on
``val``), in two settings:

* ``"fc6-8"``: the body (Sobel and convolutional layers) is frozen, weights *and* BatchNorm
  statistics, and only the backbone's ``head`` (AlexNet's fc6 and fc7; nothing for ResNet-18)
  and the new top layer learn: a direct test of the convolutional features;
* ``"all"``: every layer is fine-tuned: the features are only an initialisation.

The score is the mean over the 20 classes of the average precision (mAP, :mod:`dctutor.metrics`)
of the class scores, averaged over several crops of each test image. A randomly initialised
network trained the same way is the floor (the "Random" rows of Table 2). The book's protocol
page lists where this departs from the paper's transfer recipe; each departure is a setting of
:func:`train_transfer` and :func:`predict` (``head_init``, ``train_batchnorm``, ``freeze_bn_stats``,
``crop_scale``, ``crop_ratio``, ``clip_grad``, ``random_crops``), so that ``benchmarks/bench_voc_protocol.py``
can measure it.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from .augment import BatchAugment
from .data import MEAN, STD
from .device import pick_device
from .metrics import average_precisions, mean_average_precision
from .models import Backbone, check_backbone
from .progress import tqdm
from .validation import check_bool, check_choice, check_float, check_int

MODES = ("fc6-8", "all")
# Learning rates that train within a few epochs on 2 500 images (chosen on the stand-in's val split):
# the freshly initialised head needs a large step; fine-tuning every layer needs a smaller one.
DEFAULT_LR = {"fc6-8": 0.1, "all": 0.05}
CROPS = (1, 2, 10)
HEAD_INITS = ("he", "reference")
# Training crops: the loop's (30-100 % of the area, aspect 3/4-4/3), and eval_voc_classif.py's
# (square, 10-50 % of the image, for training and for its random test views).
BOOK_CROPS = {"crop_scale": (0.3, 1.0), "crop_ratio": (3 / 4, 4 / 3)}
REFERENCE_CROPS = {"crop_scale": (0.1, 0.5), "crop_ratio": (1.0, 1.0)}


def prepare_transfer(model: Backbone, mode: str, num_classes: int = 20, *, reinit_fc: bool = True,
                     head_init: str = "he", train_batchnorm: bool = False, seed: int = 0) -> Backbone:
    """A copy of ``model`` ready for transfer in ``mode`` (``"fc6-8"`` or ``"all"``).

    The top layer is replaced by a fresh ``feature_dim -> num_classes`` linear layer (weights
    N(0, 0.01)). With ``reinit_fc`` (the default) the linear layers of the ``head`` start afresh
    too, so that FC6-8 measures the convolutional features alone and pretrained and random
    networks get the same head; pass False to keep the pretrained fc6/fc7. ``head_init="he"``
    draws them with He's scale and zero biases (unit-scale outputs, so a few epochs train);
    ``"reference"`` is what ``eval_voc_classif.py`` does: N(0, 0.01) and biases of 0.1, the top
    layer's included. In ``"fc6-8"`` every parameter outside the head and the top layer gets
    ``requires_grad=False``, except the BatchNorm scales and shifts when ``train_batchnorm``
    (the reference's ``--train_batchnorm``, behind the paper's 72.0); :func:`train_transfer`
    keeps the body in eval mode so its BatchNorm statistics never move. The input ``model`` is
    never modified.
    """
    check_backbone(model)
    check_choice(mode, "mode", MODES)
    check_choice(head_init, "head_init", HEAD_INITS)
    net = copy.deepcopy(model).cpu()
    gen = torch.Generator().manual_seed(seed)
    net.top_layer = net.new_top_layer(num_classes, gen)
    bias = 0.1 if head_init == "reference" else 0.0
    with torch.no_grad():
        net.top_layer.bias.fill_(bias)
        for linear in (m for m in net.head.modules() if isinstance(m, nn.Linear) and reinit_fc):
            std = 0.01 if head_init == "reference" else math.sqrt(2.0 / linear.in_features)
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=gen) * std)
            linear.bias.fill_(bias)
    trained = {id(p) for p in [*net.head.parameters(), *net.top_layer.parameters()]}
    if train_batchnorm:
        trained |= {id(p) for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                    for p in m.parameters()}
    for p in net.parameters():
        p.requires_grad_(mode == "all" or id(p) in trained)
    return net


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits averaged over the entries where ``mask`` is 1 (VOC's
    "difficult"-only classes are 0 there and contribute nothing)."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * mask
    return loss.sum() / mask.sum().clamp_min(1.0)


def eval_views(images: torch.Tensor, n_crops: int, fraction: float = 0.875) -> list[torch.Tensor]:
    """Normalised test-time views of a uint8 batch, each at the full size: 1 (the image), 2 (+ its
    flip) or 10 (torchvision's ten-crop of ``fraction`` of the side: corners, centre and their flips)."""
    check_choice(n_crops, "n_crops", CROPS)
    size = images.shape[-1]
    x = v2.functional.to_dtype(images, torch.float32, scale=True)
    if n_crops == 10:
        crops = v2.functional.ten_crop(x, [round(size * fraction)] * 2)
        views = [v2.functional.resize(c, [size, size], antialias=True) for c in crops]
    else:
        views = [x, v2.functional.horizontal_flip(x)][:n_crops]
    return [v2.functional.normalize(v.clamp(0, 1), MEAN, STD) for v in views]


@torch.no_grad()
def predict(model: Backbone, images: torch.Tensor, *, n_crops: int = 10, batch_size: int = 128,
            random_crops: BatchAugment | None = None, seed: int = 0,
            device: str | torch.device | None = None) -> np.ndarray:
    """Class probabilities (N, C) for uint8 ``images`` (N, 3, S, S), averaged over ``n_crops`` views,
    network in eval mode. The views are fixed (1, 2 or 10: the usual ten-crop protocol of AlexNet
    evaluations) unless ``random_crops`` is given: then they are ``n_crops`` draws of that
    augmentation, seeded by ``seed`` (``eval_voc_classif.py``'s default, ``--eval_random_crops 1``)."""
    if random_crops is None:
        check_choice(n_crops, "n_crops", CROPS)
    else:
        check_int(n_crops, "n_crops", 1, "n_crops=10")
    dev = pick_device(device)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval().to(dev)
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        views = (eval_views(batch, n_crops) if random_crops is None
                 else (random_crops(batch.to(dev), gen) for _ in range(n_crops)))
        out.append(torch.stack([torch.sigmoid(model(v.to(dev))).float().cpu() for v in views]).mean(0))
    model.train(was_training)
    return torch.cat(out).numpy()


@dataclass
class TransferResult:
    """What :func:`train_transfer` returns: the trained ``model``, the per-epoch mean ``losses``,
    and ``seconds`` of training (prediction not included)."""

    model: Backbone
    mode: str
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _set_train_mode(model: Backbone, mode: str, freeze_bn_stats: bool = False) -> None:
    if mode == "all" and not freeze_bn_stats:
        model.train()
        return
    model.eval()  # the body keeps its BatchNorm running statistics (its weights may still train)
    model.head.train()
    model.top_layer.train()


def _check_crops(scale, ratio) -> tuple[tuple[float, float], tuple[float, float]]:
    """``crop_scale`` and ``crop_ratio`` as (low, high) float pairs, each checked as an increasing pair."""
    for name, value, high, example in (("crop_scale", scale, 1.0, "(0.3, 1.0)"),
                                       ("crop_ratio", ratio, None, "(3/4, 4/3)")):
        if not (isinstance(value, (tuple, list)) and len(value) == 2):
            raise ValueError(f"{name} must be a pair (low, high), e.g. {name}={example}; got {value!r}")
        check_float(value[0], f"{name}[0]", 0, f"{name}={example}", strict_low=True, high=high)
        check_float(value[1], f"{name}[1]", value[0], f"{name}={example}", high=high)
    return (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))


def _check_trainable(dataset) -> None:
    # Batches of one image are skipped (BatchNorm needs two), so fewer than 2 images take no step at all.
    if len(dataset.images) < 2:
        raise ValueError(f"the training set has {len(dataset.images)} image(s), so transfer would take no step "
                         f"(each batch needs at least 2 images for BatchNorm) and report an untrained head; "
                         f"train on a split with at least 2 images")


def train_transfer(model: Backbone, dataset, mode: str, *, epochs: int = 30, lr: float | None = None,
                   batch_size: int = 64, weight_decay: float = 1e-6, momentum: float = 0.9, views: int = 4,
                   reinit_fc: bool = True, head_init: str = "he", train_batchnorm: bool = False,
                   freeze_bn_stats: bool = False, crop_scale: tuple[float, float] = BOOK_CROPS["crop_scale"],
                   crop_ratio: tuple[float, float] = BOOK_CROPS["crop_ratio"],
                   clip_grad: float | None = None, seed: int = 0, device: str | torch.device | None = None,
                   progress: bool = True) -> TransferResult:
    """Train a copy of ``model`` on ``dataset`` (a :class:`dctutor.voc.VOCClassification`) in ``mode``.

    The copy gets a new top layer (:func:`prepare_transfer`, which also reads ``reinit_fc``,
    ``head_init`` and ``train_batchnorm``) and is trained with SGD (momentum, weight decay,
    learning rate divided by 10 for the last third of the epochs) on the masked binary
    cross-entropy, on random crops (area fraction in ``crop_scale``, aspect ratio in
    ``crop_ratio``) and flips of the training images, made for a whole batch at once by
    :class:`dctutor.augment.BatchAugment`. ``lr=None`` takes :data:`DEFAULT_LR` for the mode;
    ``clip_grad`` clips the gradient norm as the reference code does (at 10). In ``"all"``,
    ``freeze_bn_stats`` keeps the body's BatchNorm statistics as pre-training left them while every
    weight trains, as ``eval_voc_classif.py`` does (``model.features.eval()``); by default they
    follow the VOC batches, as in standard fine-tuning.

    In ``"fc6-8"`` the frozen body is a fixed function, so its output is computed once for
    ``views`` random crops of every image and the head then trains on those cached features, each
    epoch drawing one of the views per image: the same training as recomputing the body, with a
    finite set of ``views`` augmentations, and many times faster. ``"all"``, and ``"fc6-8"`` with
    ``train_batchnorm``, draw a new crop for every image at every epoch. Everything random (new
    layers, order, crops, dropout) is seeded by ``seed``; torch's global random state is left as it
    was. The input ``model`` is not changed.
    """
    check_backbone(model)
    check_choice(mode, "mode", MODES)
    check_int(epochs, "epochs", 1, "epochs=30")
    check_int(batch_size, "batch_size", 2, "batch_size=64")
    check_int(views, "views", 1, "views=4")
    check_choice(head_init, "head_init", HEAD_INITS)
    check_bool(train_batchnorm, "train_batchnorm")
    check_bool(freeze_bn_stats, "freeze_bn_stats")
    if not all(hasattr(dataset, a) for a in ("images", "targets", "mask")):
        raise TypeError(f"dataset must be a dctutor.voc.VOCClassification (images, targets, mask), "
                        f"got {type(dataset).__name__}")
    _check_trainable(dataset)
    lr = DEFAULT_LR[mode] if lr is None else check_float(lr, "lr", 0, "lr=0.05", strict_low=True, high=10)
    check_float(weight_decay, "weight_decay", 0, "weight_decay=1e-6", high=1)
    check_float(momentum, "momentum", 0, "momentum=0.9", high=1, strict_high=True)
    if clip_grad is not None:
        check_float(clip_grad, "clip_grad", 0, "clip_grad=10 or None", strict_low=True)
    crops = _check_crops(crop_scale, crop_ratio)
    dev = pick_device(device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed + 1)  # crops, flips, order and dropout
        return _train_transfer(model, dataset, mode, epochs, lr, batch_size, weight_decay, momentum, views,
                               dict(reinit_fc=reinit_fc, head_init=head_init, train_batchnorm=train_batchnorm),
                               crops, clip_grad, freeze_bn_stats, seed, dev, progress)


def _train_transfer(model, dataset, mode, epochs, lr, batch_size, weight_decay, momentum, views, head, crops,
                    clip_grad, freeze_bn_stats, seed, dev, progress) -> TransferResult:
    net = prepare_transfer(model, mode, dataset.targets.shape[1], seed=seed, **head).to(dev)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    drop_at = max(1, round(epochs * 2 / 3))
    n = len(dataset.images)
    augment = BatchAugment(dataset.images.shape[-1], *crops)
    targets, mask = dataset.targets.to(dev), dataset.mask.to(dev)
    losses = []
    t0 = time.perf_counter()
    cache = None
    if mode == "fc6-8" and not head["train_batchnorm"]:
        net.eval()
        with torch.no_grad():
            cache = torch.stack([torch.cat([net.forward_body(augment(dataset.images[s:s + 256].to(dev)))
                                            for s in range(0, n, 256)])
                                 for _ in tqdm(range(views), desc="body features", disable=not progress,
                                               leave=False)])
    for epoch in tqdm(range(epochs), desc=f"transfer {mode}", disable=not progress, leave=False):
        if epoch == drop_at:
            for group in optimizer.param_groups:
                group["lr"] = lr / 10
        _set_train_mode(net, mode, freeze_bn_stats)
        order = torch.randperm(n)
        view = torch.randint(0, views, (n,))
        total, count = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:
                continue
            if cache is not None:
                logits = net.top_layer(net.head(cache[view[idx].to(dev), idx.to(dev)]))
            else:
                logits = net(augment(dataset.images[idx].to(dev)))
            loss = masked_bce(logits, targets[idx.to(dev)], mask[idx.to(dev)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_grad)
            optimizer.step()
            total += loss.item() * len(idx)
            count += len(idx)
        losses.append(total / max(count, 1))
        if not math.isfinite(losses[-1]) or not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
            raise FloatingPointError(f"transfer {mode}, epoch {epoch}: training diverged (mean loss "
                                     f"{losses[-1]:.3g}); lower lr (now {lr}, e.g. lr={lr / 10:g})")
    net.eval()
    return TransferResult(model=net, mode=mode, losses=losses, seconds=time.perf_counter() - t0)


def evaluate(model: Backbone, dataset, *, n_crops: int = 10, method: str = "sklearn",
             device: str | torch.device | None = None) -> dict:
    """mAP and per-class AP of ``model`` on ``dataset`` with ``n_crops`` test-time crops."""
    scores = predict(model, dataset.images, n_crops=n_crops, device=device)
    aps = average_precisions(scores, dataset.targets.numpy(), dataset.mask.numpy(), method=method)
    return {"map": float(np.nanmean(aps)), "ap": aps, "scores": scores}


def compare_transfer(networks: dict[str, Backbone], train, test, *, modes: tuple[str, ...] = MODES,
                     epochs: dict[str, int] | None = None, n_crops: int = 10, random_test_crops: bool = False,
                     views: int = 4, seed: int = 0, device: str | torch.device | None = None,
                     progress: bool = True, **recipe) -> list[dict]:
    """Transfer every network of ``networks`` (name -> backbone) in every mode; one row per pair.

    Each row has ``init``, ``mode``, ``map`` (scikit-learn AP, the one comparable with the paper's
    Table 2), ``map_voc07`` (the devkit's 11-point AP, for reference), ``ap`` (per class),
    ``train_s`` and ``eval_s``. ``epochs`` maps a mode to its number of epochs (default 30 for
    FC6-8, 5 for ALL). ``recipe`` holds further settings of :func:`train_transfer` (``lr``,
    ``head_init``, ``crop_scale``, ...); with ``random_test_crops`` the ``n_crops`` test views
    are random draws of the training crops instead of the fixed ten-crop.
    """
    epochs = {"fc6-8": 30, "all": 5, **(epochs or {})}
    check_bool(random_test_crops, "random_test_crops")
    for mode in modes:
        check_choice(mode, "modes[...]", MODES)
        check_int(epochs[mode], f"epochs[{mode!r}]", 1, f"epochs={{{mode!r}: 5}}")
    for name, split in (("train", train), ("test", test)):
        if not all(hasattr(split, a) for a in ("images", "targets", "mask")):
            raise TypeError(f"{name} must be a dctutor.voc.VOCClassification (images, targets, mask), "
                            f"got {type(split).__name__}")
    _check_trainable(train)
    if len(test.images) == 0:
        raise ValueError("the test set has no images, so there is nothing to score; check its split's list "
                         "(ImageSets/Main/<split>.txt)")
    crops = _check_crops(*({**BOOK_CROPS, **recipe}[key] for key in BOOK_CROPS))
    test_crops = BatchAugment(test.images.shape[-1], *crops) if random_test_crops else None
    rows = []
    for name, net in networks.items():
        for mode in modes:
            result = train_transfer(net, train, mode, epochs=epochs[mode], views=views, seed=seed, device=device,
                                    progress=progress, **recipe)
            t0 = time.perf_counter()
            scores = predict(result.model, test.images, n_crops=n_crops, random_crops=test_crops, seed=seed,
                             device=device)
            targets, mask = test.targets.numpy(), test.mask.numpy()
            aps = average_precisions(scores, targets, mask)
            rows.append({"init": name, "mode": mode, "map": float(np.nanmean(aps)),
                         "map_voc07": mean_average_precision(scores, targets, mask, method="voc07"),
                         "ap": aps, "train_s": result.seconds, "eval_s": time.perf_counter() - t0})
    return rows
