"""The DeepCluster loop: cluster the features, train on the clusters, repeat (paper Sec. 3.2-3.4).

Every epoch of :func:`train_deepcluster` does what the paper (Sec. 3.4) and its reference code do:

1. extract the penultimate-layer (fc7) features of every image, network in eval mode, on
   un-augmented inputs (:func:`dctutor.features.extract_features`);
2. PCA-whiten and L2-normalise them, run k-means: the assignments are the pseudo-labels (Sec. 3.2);
3. give the network a fresh top layer (k outputs, weights N(0, 0.01), bias 0) with its own SGD
   optimiser: cluster ids mean nothing from one epoch to the next, so its weights cannot be kept;
4. train one epoch on the pseudo-labels with random crops and flips, images drawn uniformly over
   the clusters (Sec. 3.3), SGD with momentum and weight decay, dropout in fc6/fc7;
5. write an atomic checkpoint, so a run killed at any moment resumes exactly.

``history`` has one row per epoch with these columns:

* ``epoch`` (0-based), ``loss`` (mean cross-entropy on the pseudo-labels during step 4);
* ``nmi_labels``: NMI(clusters, true labels) (paper Fig. 2a), NaN when the data set has no labels;
* ``nmi_prev``: NMI(clusters of epoch t-1, clusters of epoch t) (Fig. 2b), NaN at epoch 0;
* ``n_empty``, ``size_min``, ``size_max``: cluster sizes; ``sizes``: the k sizes themselves;
* ``n_effective``: exp of the entropy of the size distribution, the number of clusters effectively
  used (k when all are equal, 1 when one cluster holds everything);
* ``time_extract``, ``time_cluster``, ``time_train``: seconds spent in steps 1, 2 and 4.

NMI is the paper's, I(A;B)/sqrt(H(A)H(B)) (Sec. 4.1), i.e. scikit-learn's ``average_method="geometric"``.

Randomness: everything random in epoch ``e`` (k-means seeding, top-layer init, sampling order,
crops, flips, dropout) comes from generators seeded with ``(seed, e)``, never from leftover global
state. The checkpoint's epoch number therefore pins the random state, and a run resumed from a
checkpoint replays exactly what an uninterrupted run would have done.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import normalized_mutual_info_score
from torch import nn

from .clustering import BACKENDS, kmeans, preprocess
from .data import ImageDataset, train_transform
from .device import pick_device
from .features import extract_features
from .models import AlexNet
from .progress import tqdm
from .sampling import UniformLabelSampler

HISTORY_COLUMNS = ("epoch", "loss", "nmi_labels", "nmi_prev", "n_empty", "size_min", "size_max", "n_effective",
                   "time_extract", "time_cluster", "time_train", "sizes")
CHECKPOINT = "checkpoint.pt"


@dataclass
class DeepClusterConfig:
    """Hyper-parameters of :func:`train_deepcluster`; defaults follow the paper (Sec. 3.4).

    ``uniform_sampling`` and ``reassign_empty`` switch off the two defences of Sec. 3.3 (chapter 3
    turns them off to show the collapse they prevent). ``train_passes`` is the number of passes
    over the images on each set of pseudo-labels (the reference code's ``--reassign``; the paper
    reclusters every pass): small data sets need several, because the fresh top layer must be
    learned from scratch within them before it can send useful gradients to the features.
    """

    k: int = 100
    epochs: int = 10
    batch_size: int = 256
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-5
    pca_dim: int = 256
    kmeans_iters: int = 20
    kmeans_backend: str = "torch"
    uniform_sampling: bool = True
    reassign_empty: bool = True
    seed: int = 0
    train_passes: int = 1

    def __post_init__(self) -> None:
        for name, low in (("k", 2), ("epochs", 0), ("batch_size", 1), ("pca_dim", 1), ("kmeans_iters", 1),
                          ("seed", 0), ("train_passes", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
            if value < low:
                raise ValueError(f"{name}={value} must be >= {low}")
        for name, low in (("lr", 0.0), ("momentum", 0.0), ("weight_decay", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"{name} must be a finite number, got {value!r}")
            if value < low or (name == "lr" and value == 0) or (name == "momentum" and value >= 1):
                raise ValueError(f"{name}={value} is out of range; the paper uses lr=0.05, momentum=0.9, "
                                 f"weight_decay=1e-5")
        if self.kmeans_backend not in BACKENDS:
            raise ValueError(f"kmeans_backend={self.kmeans_backend!r} is unknown; use one of {list(BACKENDS)}")
        if self.kmeans_backend == "faiss" and not self.reassign_empty:
            raise ValueError("reassign_empty=False needs kmeans_backend='torch' (faiss always splits empty clusters)")
        for name in ("uniform_sampling", "reassign_empty"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")


@dataclass
class DeepClusterRun:
    """What :func:`train_deepcluster` returns: the trained ``model``, the last pseudo-``labels``
    (None when no epoch ran), the per-epoch ``history`` (columns in the module docstring) and
    ``labels_per_epoch``, the pseudo-labels of every epoch run by this call (epochs restored from a
    checkpoint are not in it), for analyses that follow single images across epochs."""

    model: AlexNet
    labels: np.ndarray | None
    history: list[dict] = field(default_factory=list)
    config: DeepClusterConfig | None = None
    out_dir: Path | None = None
    labels_per_epoch: list[np.ndarray] = field(default_factory=list)


def _epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A CPU generator for one purpose (``stream``) of one epoch, independent of all others."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


def _fingerprint(dataset: ImageDataset) -> str:
    """A hash of the pixels, so a checkpoint is never resumed on other images."""
    return hashlib.sha1(dataset.images.cpu().numpy().tobytes()).hexdigest()[:16]


def _arch(model: AlexNet) -> dict:
    return {"config": model.config, "width": model.width, "fc_dim": model.fc_dim, "sobel": model.sobel is not None}


def cluster_stats(labels: np.ndarray, k: int) -> dict:
    """Sizes of the k clusters and how many are effectively used (exp of the size entropy)."""
    sizes = np.bincount(labels, minlength=k)
    p = sizes[sizes > 0] / sizes.sum()
    return {"n_empty": int((sizes == 0).sum()), "size_min": int(sizes.min()), "size_max": int(sizes.max()),
            "n_effective": float(np.exp(-(p * np.log(p)).sum())), "sizes": sizes.tolist()}


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """The paper's NMI (Sec. 4.1): I(A;B) / sqrt(H(A) H(B))."""
    return float(normalized_mutual_info_score(a, b, average_method="geometric"))


def _validate(model: AlexNet, dataset: ImageDataset, config: DeepClusterConfig, out_dir) -> Path | None:
    if not isinstance(model, AlexNet):
        raise TypeError(f"model must be a dctutor AlexNet (dctutor.models.alexnet), got {type(model).__name__}")
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be a dctutor ImageDataset (load_dataset), got {type(dataset).__name__}")
    if not isinstance(config, DeepClusterConfig):
        raise TypeError(f"config must be a DeepClusterConfig, got {type(config).__name__}")
    if config.k >= len(dataset):
        raise ValueError(f"k={config.k} but the dataset has only {len(dataset)} images; k must be smaller "
                         f"(the paper over-segments, but with many images per cluster)")
    if config.pca_dim > min(len(dataset), model.fc_dim):
        raise ValueError(f"pca_dim={config.pca_dim} exceeds min(n_images={len(dataset)}, fc_dim={model.fc_dim}); "
                         f"lower pca_dim")
    if out_dir is None:
        return None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir={str(out)!r} is a file; pass a folder for the checkpoint and history")
    return out


def _check_resume(state: dict, config: DeepClusterConfig, model: AlexNet, dataset: ImageDataset, path: Path):
    old = asdict(DeepClusterConfig()) | dict(state["config"])  # fields added later take their defaults
    new = asdict(config)
    diff = {key: (old.get(key), new[key]) for key in new if key != "epochs" and old.get(key) != new[key]}
    if diff:
        changes = ", ".join(f"{key}: {a!r} -> {b!r}" for key, (a, b) in diff.items())
        raise ValueError(f"{path} was written with another configuration ({changes}); use a new out_dir or "
                         f"the same settings (only epochs may change)")
    if state["arch"] != _arch(model):
        raise ValueError(f"{path} holds a model {state['arch']} but this model is {_arch(model)}; "
                         f"use a new out_dir or the same architecture")
    if state["data"] != {"n": len(dataset), "hash": _fingerprint(dataset)}:
        raise ValueError(f"{path} was trained on other images ({state['data']['n']} images); use a new out_dir")


def _save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill leaves either the old or the new checkpoint, never half of one


def _new_top_layer(model: AlexNet, k: int, gen: torch.Generator, device: torch.device) -> nn.Linear:
    """A fresh classifier for this epoch's pseudo-labels: weights N(0, 0.01), bias 0 (Sec. 3.4 code)."""
    top = nn.Linear(model.fc_dim, k)
    with torch.no_grad():
        top.weight.copy_(torch.randn(top.weight.shape, generator=gen) * 0.01)
        top.bias.zero_()
    return top.to(device)


def _batches(dataset: ImageDataset, labels: np.ndarray, config: DeepClusterConfig, epoch: int):
    """Mini-batches (augmented images, pseudo-labels) for one epoch, straight from the in-memory
    uint8 tensor: uniform over clusters (Sec. 3.3) or plain shuffling. Crops and flips use torch's
    RNG, which the caller has seeded for this epoch."""
    gen = _epoch_generator(config.seed, epoch, 2)
    if config.uniform_sampling:
        order = torch.tensor(list(UniformLabelSampler(labels, config.train_passes * len(labels), generator=gen)))
    else:
        order = torch.cat([torch.randperm(len(labels), generator=gen) for _ in range(config.train_passes)])
    augment = train_transform(dataset.image_size)
    targets = torch.from_numpy(labels)
    for start in range(0, len(order), config.batch_size):
        idx = order[start:start + config.batch_size]
        if len(idx) < 2:  # BatchNorm cannot train on a single image
            continue
        images = dataset.images[idx.to(dataset.images.device)]
        yield torch.stack([augment(image) for image in images]), targets[idx]


def _train_epoch(model: AlexNet, dataset: ImageDataset, labels: np.ndarray, optimizer, config, epoch: int,
                 device: torch.device, progress: bool) -> float:
    top = _new_top_layer(model, config.k, _epoch_generator(config.seed, epoch, 1), device)
    model.top_layer = top
    top_opt = torch.optim.SGD(top.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    total, count = 0.0, 0
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # crops, flips and dropout, seeded per epoch
        torch.manual_seed(config.seed * 1_000_003 + epoch * 101 + 3)
        n_batches = math.ceil(config.train_passes * len(labels) / config.batch_size)
        for x, y in tqdm(_batches(dataset, labels, config, epoch), total=n_batches, desc=f"train {epoch}",
                         disable=not progress, leave=False):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            top_opt.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            top_opt.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
    return total / max(count, 1)


def train_deepcluster(model: AlexNet, dataset: ImageDataset, config: DeepClusterConfig, *,
                      out_dir: str | Path | None = None, device: str | torch.device | None = None,
                      progress: bool = True,
                      on_epoch_end: Callable[[list[dict]], None] | None = None) -> DeepClusterRun:
    """Train ``model`` on ``dataset`` with DeepCluster for ``config.epochs`` epochs (Sec. 3).

    The model is trained in place. With ``out_dir``, a checkpoint is written there after every
    epoch (with ``history.csv``/``history.json`` written by the CLI) and an existing checkpoint
    is resumed, so calling again with more ``epochs`` continues the run; resuming with another
    configuration, architecture or data set is an error. ``on_epoch_end(history)`` is called
    after each checkpoint with the history so far (the CLI writes it; the tests raise in it to
    simulate a crash).
    """
    out = _validate(model, dataset, config, out_dir)
    dev = pick_device(device)
    model.to(dev)
    if dev.type == "cuda":  # keep the uint8 pixels resident on the GPU: no data loader in the way
        dataset = ImageDataset(dataset.images.to(dev), dataset.targets, dataset.classes, dataset.name)
    feature_params = [p for name, p in model.named_parameters() if not name.startswith("top_layer")]
    optimizer = torch.optim.SGD(feature_params, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    truth = dataset.targets.cpu().numpy()
    has_labels = bool((truth >= 0).all())
    history: list[dict] = []
    labels: np.ndarray | None = None
    labels_per_epoch: list[np.ndarray] = []
    start_epoch = 0
    ckpt = out / CHECKPOINT if out is not None else None
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        _check_resume(state, config, model, dataset, ckpt)
        model.top_layer = nn.Linear(model.fc_dim, config.k).to(dev)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history, labels, start_epoch = state["history"], state["labels"], state["epoch"] + 1
    elif out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        feats = extract_features(model, dataset, "fc7", batch_size=config.batch_size, device=dev, progress=progress)
        t1 = time.perf_counter()
        result = kmeans(preprocess(feats, config.pca_dim), config.k, n_iter=config.kmeans_iters,
                        seed=config.seed * 1_000_003 + epoch, backend=config.kmeans_backend, device=dev,
                        reassign_empty=config.reassign_empty)
        t2 = time.perf_counter()
        loss = _train_epoch(model, dataset, result.labels, optimizer, config, epoch, dev, progress)
        t3 = time.perf_counter()
        # Checked before the checkpoint, so the file on disk always holds the last epoch that was still finite.
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise FloatingPointError(f"epoch {epoch}: the weights are no longer finite (mean loss {loss:.3g}), so "
                                     f"training diverged; lower lr (now {config.lr}) and start again in a new out_dir")
        row = {"epoch": epoch, "loss": loss,
               "nmi_labels": nmi(truth, result.labels) if has_labels else float("nan"),
               "nmi_prev": nmi(labels, result.labels) if labels is not None else float("nan")}
        row.update(cluster_stats(result.labels, config.k))
        row.update(time_extract=t1 - t0, time_cluster=t2 - t1, time_train=t3 - t2)
        row = {key: row[key] for key in HISTORY_COLUMNS}
        history.append(row)
        labels = result.labels
        labels_per_epoch.append(labels)
        if ckpt is not None:
            _save(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                         "history": history, "labels": labels, "config": asdict(config), "arch": _arch(model),
                         "data": {"n": len(dataset), "hash": _fingerprint(dataset)}})
        if on_epoch_end is not None:
            on_epoch_end(history)
    return DeepClusterRun(model=model, labels=labels, history=history, config=config, out_dir=out,
                          labels_per_epoch=labels_per_epoch)

