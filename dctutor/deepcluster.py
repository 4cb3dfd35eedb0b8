"""The DeepCluster loop: cluster the features, train on the clusters, repeat (paper Sec. 3.2-3.4).

Every epoch of :func:`train_deepcluster` follows the paper (Sec. 3.4); the book's protocol page
lists where it departs from the reference code and why:

1. extract the backbone's ``embedding`` of every image (for AlexNet fc7 before its ReLU, as the
   reference code does), network in eval mode, on un-augmented inputs
   (:func:`dctutor.features.extract_features`);
2. PCA-whiten and L2-normalise them, run k-means: the assignments are the pseudo-labels (Sec. 3.2);
3. give the network a fresh top layer (k outputs, weights N(0, 0.01), bias 0) with its own SGD
   optimiser: cluster ids mean nothing from one epoch to the next, so its weights cannot be kept;
4. train one epoch on the pseudo-labels with random crops and flips (a whole batch at once on the
   compute device, :mod:`dctutor.augment`), images drawn uniformly over the clusters (Sec. 3.3),
   SGD with momentum and weight decay, dropout in fc6/fc7;
5. check that nothing diverged (loss, weights, BatchNorm statistics), then write an atomic
   checkpoint (:mod:`dctutor.runs`), so a run killed at any moment resumes exactly.

Steps 2 and 3 are the loop's two seams (``DeepClusterConfig.labeller`` and ``head``, chapter 7):
``labeller="sinkhorn"`` replaces k-means with equal-size clusters by optimal transport (SeLa), and
``head="prototypes"`` replaces the fresh top layer with the cluster means as a fixed cosine
classifier (DeepCluster-v2), the new ids renamed after the previous clustering's.

``history`` has one row per epoch with these columns:

* ``epoch`` (0-based), ``loss`` (mean cross-entropy on the pseudo-labels during step 4);
* ``nmi_labels``: NMI(clusters, true labels) (paper Fig. 2a), NaN when the data set has no labels;
* ``nmi_prev``: NMI(clusters of epoch t-1, clusters of epoch t) (Fig. 2b), NaN at epoch 0;
* ``n_empty``, ``size_min``, ``size_max``, ``largest`` (share of the images in the biggest
  cluster): cluster sizes (:func:`dctutor.metrics.cluster_stats`); ``sizes``: the k sizes;
* ``n_effective``: exp of the entropy of the size distribution, the number of clusters effectively
  used (k when all are equal, 1 when one cluster holds everything);
* ``spread``: the share of the raw features' energy that varies from image to image,
  trace(covariance) / mean squared norm, before any whitening: 1 for centred features, 0 when every
  image has the same features. Whitening rescales whatever variance is left, so the clusters can look
  balanced while this number says the features have collapsed;
* ``time_extract``, ``time_cluster``, ``time_train``: seconds spent in steps 1, 2 and 4.

With ``halt_clustering_after=E`` (Mustapha et al. 2022, Sec. 4.2) only epochs 0 to E-1 run steps 1
and 2; every later epoch trains again on epoch E-1's pseudo-labels and keeps its top layer (the
cluster ids now mean the same thing from one epoch to the next). Those rows repeat the label
columns, have ``nmi_prev`` 1, ``spread`` NaN and zero ``time_extract`` and ``time_cluster``.

NMI is the paper's (Sec. 4.1), :func:`dctutor.metrics.nmi`.

Randomness: everything random in epoch ``e`` (k-means seeding, top-layer init, sampling order,
crops, flips, dropout) comes from its own stream, seeded from ``(seed, e, purpose)`` through
numpy's ``SeedSequence`` (so no two epochs or purposes share a stream), never from leftover
global state; the caller's torch RNG is left as it was. The checkpoint's epoch number therefore
pins the random state, and a run resumed from a checkpoint replays exactly what an uninterrupted run would have done.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .clustering import BACKENDS, kmeans, preprocess
from .augment import BatchAugment, augment_batch
from .data import ImageDataset
from .device import pick_device
from .distributed import SINGLE, Group, average_buffers, barrier, broadcast, gather_rows, mean_over_ranks, shard
from .features import extract_features
from .metrics import cluster_stats, nmi
from .models import Backbone, check_backbone
from .progress import tqdm
from .prototypes import PrototypeHead, match_labels, prototypes_from_labels
from .runs import CHECKPOINT, check_resumable, load_checkpoint, save_checkpoint
from .sampling import UniformLabelSampler
from .sinkhorn import equal_partition
from .stream import batches, pixel_hash
from .validation import check_bool, check_choice, check_float, check_int

HISTORY_COLUMNS = ("epoch", "loss", "nmi_labels", "nmi_prev", "n_empty", "size_min", "size_max", "largest",
                   "n_effective", "spread", "time_extract", "time_cluster", "time_train", "sizes")
# Purposes of the per-epoch random streams.
_KMEANS, _TOP_LAYER, _SAMPLING, _DROPOUT, _CROPS = range(5)
PRECISIONS = ("fp32", "bf16")
LABELLERS = ("kmeans", "sinkhorn")
HEADS = ("reinit", "prototypes")


@dataclass
class DeepClusterConfig:
    """Hyper-parameters of :func:`train_deepcluster`; defaults follow the paper (Sec. 3.4).

    ``uniform_sampling`` and ``reassign_empty`` switch off the two defences of Sec. 3.3 (chapter 3
    turns them off to look for the collapse they prevent). ``train_passes`` is the number of passes
    over the images on each set of pseudo-labels (the paper reclusters after every pass; the
    reference code's ``--reassign`` sets how many epochs a clustering is kept): small data sets
    need several, because the fresh top layer must be learned from scratch within them before it
    can send useful gradients to the features. ``batch_size`` is at least 2, because BatchNorm
    cannot normalise a batch of one image. ``crop_scale`` is the smallest area fraction of a random
    crop (the reference code's ``RandomResizedCrop`` uses 0.08 on 224 px ImageNet images; 0.3 keeps
    a 32 px crop recognisable). ``cluster_crop`` is the central fraction of each side that is
    clustered, resized to the full image (the paper clusters "central cropped images", 224 of 256 px:
    0.875); 1.0, the default, clusters whole images, since a 32 px image has little border to
    spare. ``precision="bf16"`` runs extraction and training under bfloat16
    autocast and ``channels_last`` stores activations NHWC: both speed up GPUs with tensor cores
    and are off by default, so CPU results stay in float32. ``halt_clustering_after=E`` stops
    re-clustering after E clusterings (None: never): later epochs skip feature extraction and k-means
    and train on the last pseudo-labels, the cost saving of Mustapha et al. (2022, Sec. 4.2).

    Two seams choose what comes after DeepCluster (chapter 7); the defaults are the paper's loop.
    ``labeller`` turns the whitened features into pseudo-labels: ``"kmeans"`` (Sec. 3.2) or
    ``"sinkhorn"``, clusters of equal size by optimal transport as in SeLa (Asano et al. 2020,
    :mod:`dctutor.sinkhorn`; ``sinkhorn_epsilon`` is its entropy weight, ``sinkhorn_iters`` its
    scalings per iteration, ``kmeans_iters`` its iterations). ``head`` is the top layer the network
    trains through: ``"reinit"``, a new linear layer each clustering (Sec. 3.4), or
    ``"prototypes"``, the cluster means as a fixed cosine classifier divided by ``temperature``, as
    in DeepCluster-v2 (:mod:`dctutor.prototypes`), whose cluster ids are renamed after the previous
    clustering's. An option that would change nothing for the chosen seam is refused.
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
    halt_clustering_after: int | None = None
    crop_scale: float = 0.3
    cluster_crop: float = 1.0
    precision: str = "fp32"
    channels_last: bool = False
    labeller: str = "kmeans"
    head: str = "reinit"
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iters: int = 10
    temperature: float = 0.1

    def __post_init__(self) -> None:
        for name, low, example in (("k", 2, "k=100"), ("epochs", 0, "epochs=10"), ("batch_size", 2, "batch_size=256"),
                                   ("pca_dim", 1, "pca_dim=256"), ("kmeans_iters", 1, "kmeans_iters=20"),
                                   ("seed", 0, "seed=0"), ("train_passes", 1, "train_passes=1")):
            check_int(getattr(self, name), name, low, example)
        check_float(self.lr, "lr", 0, "lr=0.05 (the paper's)", strict_low=True, high=10)
        check_float(self.momentum, "momentum", 0, "momentum=0.9 (the paper's)", high=1, strict_high=True)
        check_float(self.weight_decay, "weight_decay", 0, "weight_decay=1e-5 (the paper's)", high=1)
        check_choice(self.kmeans_backend, "kmeans_backend", BACKENDS)
        check_bool(self.uniform_sampling, "uniform_sampling")
        check_bool(self.reassign_empty, "reassign_empty")
        if self.halt_clustering_after is not None:
            check_int(self.halt_clustering_after, "halt_clustering_after", 1,
                      "halt_clustering_after=5 (None clusters every epoch)")
        check_float(self.crop_scale, "crop_scale", 0, "crop_scale=0.3 (0.08 is the reference code's)",
                    strict_low=True, high=1)
        check_float(self.cluster_crop, "cluster_crop", 0, "cluster_crop=1.0 (0.875 is the paper's 224 of 256)",
                    strict_low=True, high=1)
        check_choice(self.precision, "precision", PRECISIONS)
        check_bool(self.channels_last, "channels_last")
        if self.kmeans_backend == "faiss" and not self.reassign_empty:
            raise ValueError("reassign_empty=False needs kmeans_backend='torch' (faiss always splits empty clusters)")
        self._check_seams()

    def _check_seams(self) -> None:
        check_choice(self.labeller, "labeller", LABELLERS)
        check_choice(self.head, "head", HEADS)
        check_float(self.sinkhorn_epsilon, "sinkhorn_epsilon", 0, "sinkhorn_epsilon=0.05 (SwAV's)", strict_low=True)
        check_int(self.sinkhorn_iters, "sinkhorn_iters", 1, "sinkhorn_iters=10")
        check_float(self.temperature, "temperature", 0, "temperature=0.1 (DeepCluster-v2's)", strict_low=True)
        default = DeepClusterConfig.__dataclass_fields__
        unused = {"kmeans": ("sinkhorn_epsilon", "sinkhorn_iters"), "sinkhorn": ("kmeans_backend", "reassign_empty")}
        idle = [name for name in unused[self.labeller] if getattr(self, name) != default[name].default]
        if self.head == "reinit" and self.temperature != default["temperature"].default:
            idle.append("temperature")
        if idle:
            raise ValueError(f"{idle[0]}={getattr(self, idle[0])!r} does nothing with labeller={self.labeller!r} and "
                             f"head={self.head!r}; leave it at its default, or choose the seam it belongs to")


@dataclass
class DeepClusterRun:
    """What :func:`train_deepcluster` returns: the trained ``model``, the last pseudo-``labels``
    (None when no epoch ran), the per-epoch ``history`` (columns in the module docstring) and
    ``labels_per_epoch``, the pseudo-labels of every epoch run by this call (epochs restored from a
    checkpoint are not in it), for analyses that follow single images across epochs."""

    model: Backbone
    labels: np.ndarray | None
    history: list[dict] = field(default_factory=list)
    config: DeepClusterConfig | None = None
    out_dir: Path | None = None
    labels_per_epoch: list[np.ndarray] = field(default_factory=list)


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed for one purpose (``stream``) of one epoch, independent of every other pair."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(epoch_seed(seed, epoch, stream))


def _validate(model: Backbone, dataset: ImageDataset, config: DeepClusterConfig, out_dir) -> Path | None:
    check_backbone(model)
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be a dctutor ImageDataset (load_dataset), got {type(dataset).__name__}")
    if not isinstance(config, DeepClusterConfig):
        raise TypeError(f"config must be a DeepClusterConfig, got {type(config).__name__}")
    if config.k >= len(dataset):
        raise ValueError(f"k={config.k} but the dataset has only {len(dataset)} images; k must be smaller "
                         f"(the paper over-segments, but with many images per cluster)")
    if config.pca_dim > min(len(dataset), model.feature_dim):
        raise ValueError(f"pca_dim={config.pca_dim} exceeds min(n_images={len(dataset)}, "
                         f"feature_dim={model.feature_dim}); lower pca_dim")
    if out_dir is None:
        return None
    if not isinstance(out_dir, (str, Path)) or not str(out_dir).strip():
        raise ValueError(f"out_dir={out_dir!r} must name a folder, e.g. out_dir='runs/cifar'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir={str(out)!r} is a file; pass a folder for the checkpoint and history")
    return out


def _check_resume(state: dict, config: DeepClusterConfig, model: Backbone, data: dict, files: list[str] | None,
                  path: Path):
    old = asdict(DeepClusterConfig()) | dict(state.get("config", {}))  # fields added later take their defaults
    new = asdict(config)
    diff = {key: (old.get(key), new[key]) for key in new if key != "epochs" and old.get(key) != new[key]}
    if diff:
        changes = ", ".join(f"{key}: {a!r} -> {b!r}" for key, (a, b) in diff.items())
        raise ValueError(f"{path} was written with another configuration ({changes}); use a new out_dir or "
                         f"the same settings (only epochs may change)")
    if state.get("arch") != model.arch:
        raise ValueError(f"{path} holds a model {state.get('arch')} but this model is {model.arch}; "
                         f"use a new out_dir or the same architecture")
    saved = state["data"]
    if (saved.get("n"), saved.get("hash")) != (data["n"], data["hash"]):
        raise ValueError(f"{path} was trained on other images: the data set changed since "
                         f"({_data_change(saved, data, state.get('files'), files)}); restore the data as it was, or "
                         f"use a new out_dir to train on it as it is now")


def _data_change(saved: dict, data: dict, saved_files: str | None, files: list[str] | None) -> str:
    """What differs between the images a checkpoint was trained on and these, in a few words, naming
    the first file that came or went when both lists are known."""
    count = f"{saved.get('n')} -> {data['n']} images" if saved.get("n") != data["n"] else "same count, other pixels"
    if not isinstance(saved_files, str) or files is None:
        return count
    before, now = saved_files.split("\n"), set(files)
    gone = next((name for name in before if name not in now), None)
    old = set(before)
    new = next((name for name in files if name not in old), None)
    named = [f"{gone} is gone"] * (gone is not None) + [f"{new} is new"] * (new is not None)
    return "; ".join([count, *named]) if named else f"{count}; the same files, other pixels"


def _batches(dataset: ImageDataset, labels: np.ndarray, config: DeepClusterConfig, epoch: int,
             group: Group = SINGLE, device: torch.device | None = None):
    """Mini-batches (augmented images, pseudo-labels) for one epoch: uniform over clusters
    (Sec. 3.3) or plain shuffling. The pixels come from the in-memory uint8 tensor, or from the
    workers that decode a streamed folder (:func:`dctutor.stream.batches`); each batch is cropped,
    flipped and normalised in one operation on ``device`` (default: where the pixels live) by
    :class:`BatchAugment`. Every rank of a distributed run draws the same order and keeps every
    ``world_size``-th image of each global batch, so that together the ranks train on exactly the
    single-process batches."""
    gen = _generator(config.seed, epoch, _SAMPLING)
    n_draws = config.train_passes * len(labels)
    if config.uniform_sampling:
        order = torch.tensor(list(UniformLabelSampler(labels, n_draws, generator=gen)))
    else:
        order = torch.cat([torch.randperm(len(labels), generator=gen) for _ in range(config.train_passes)])
    augment = BatchAugment(dataset.image_size, scale=(config.crop_scale, 1.0))
    boxes, flips = augment.draw(len(order), dataset.image_size, dataset.image_size,
                                _generator(config.seed, epoch, _CROPS))
    # One copy per epoch: per-step copies from host memory would make every step wait for the device.
    device = dataset.images.device if device is None else device
    order, boxes, flips = order.to(device), boxes.to(device), flips.to(device)
    targets = torch.from_numpy(labels).to(device)[order]
    # BatchNorm cannot train on a single image, so a tail too short to give every rank two is
    # dropped; every rank decides alike, so all of them take the same number of steps.
    bounds = [(start, min(start + config.batch_size, len(order))) for start in range(0, len(order), config.batch_size)]
    spans = [slice(start + group.rank, stop, group.world_size) for start, stop in bounds
             if stop - start >= 2 * group.world_size]
    pixels = batches(dataset.images, [order[span] for span in spans], pin_memory=device.type == "cuda")
    for span, chunk in zip(spans, pixels):
        yield augment_batch(chunk.to(device, non_blocking=True), boxes[span], flips[span], augment.size), \
            targets[span]


def _autocast(config: DeepClusterConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


def _top_layer(model: Backbone, config: DeepClusterConfig, epoch: int | None,
               prototypes: torch.Tensor | None = None) -> nn.Module:
    """The top layer for epoch ``epoch``'s clustering: a fresh linear layer (v1), or the prototypes
    (v2). ``epoch=None`` gives a placeholder of the right shape that a checkpoint's weights then fill."""
    if config.head == "prototypes":
        return PrototypeHead(torch.zeros(config.k, model.feature_dim) if prototypes is None else prototypes,
                             config.temperature)
    return model.new_top_layer(config.k, None if epoch is None else _generator(config.seed, epoch, _TOP_LAYER))


def _train_epoch(model: Backbone, dataset: ImageDataset, labels: np.ndarray, optimizer, config, epoch: int,
                 device: torch.device, progress: bool, top_layer: nn.Module | None, group: Group = SINGLE) -> float:
    if top_layer is not None:  # None once clustering has halted: the labels, and so the top layer, stay meaningful
        model.top_layer = top_layer.to(device)
    # The top layer is trained without momentum, as in the reference code: it starts afresh with each
    # clustering. Prototypes have no parameters: nothing trains them.
    top_params = list(model.top_layer.parameters())
    top_opt = torch.optim.SGD(top_params, lr=config.lr, weight_decay=config.weight_decay) if top_params else None
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    # A new wrapper each epoch: the top layer, one of the modules whose gradients it averages, is new.
    net = (nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
           if group.distributed else model)
    # Summed on the device: reading the loss back after every step would make the GPU wait for Python.
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0
    torch.manual_seed(epoch_seed(config.seed, epoch, _DROPOUT))
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    n_batches = math.ceil(config.train_passes * len(labels) / config.batch_size)
    for x, y in tqdm(_batches(dataset, labels, config, epoch, group, device), total=n_batches, desc=f"train {epoch}",
                     disable=not progress, leave=False):
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory)
        y = y.to(device, non_blocking=True)
        with _autocast(config, device):
            loss = loss_fn(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        if top_opt is not None:
            top_opt.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if top_opt is not None:
            top_opt.step()
        total += loss.detach().double() * len(y)
        count += len(y)
    average_buffers(model, group)
    return mean_over_ranks(float(total) / max(count, 1), group, device)


def check_diverged(model: Backbone, loss: float, k: int, epoch: int, lr: float) -> None:
    """Raise ``FloatingPointError`` when training has blown up: a loss that is not finite or far
    above log(k) (a random guess), or a weight or BatchNorm statistic that is no longer finite or
    absurdly large. Called before the checkpoint, so the file always holds a healthy epoch."""
    bad = [name for name, t in [*model.named_parameters(), *model.named_buffers()]
           if t.is_floating_point() and not (torch.isfinite(t).all() and t.abs().max() < 1e6)]
    if math.isfinite(loss) and loss <= 10 * math.log(k) + 10 and not bad:
        return
    where = f"; first bad tensor {bad[0]}" if bad else ""
    raise FloatingPointError(f"epoch {epoch}: training diverged (mean loss {loss:.3g}{where}); lower lr "
                             f"(now {lr}, e.g. lr={lr / 10:g}) and start again in a new out_dir")


def train_deepcluster(model: Backbone, dataset: ImageDataset, config: DeepClusterConfig, *,
                      out_dir: str | Path | None = None, device: str | torch.device | None = None,
                      progress: bool = True, on_epoch_end: Callable[[list[dict]], None] | None = None,
                      group: Group | None = None, on_start: Callable[[], None] | None = None) -> DeepClusterRun:
    """Train ``model`` (any :class:`dctutor.models.Backbone`) on ``dataset`` with DeepCluster for
    ``config.epochs`` epochs (Sec. 3).

    The model is trained in place. With ``out_dir``, a checkpoint is written there after every
    epoch and an existing checkpoint is resumed, so calling again with more ``epochs`` continues
    the run; resuming with another configuration, architecture or data set is an error.
    ``on_start()`` is called once ``out_dir`` exists and any checkpoint in it has been checked,
    before the first epoch: the CLI writes the run's settings there, so that they are on disk
    before the first checkpoint. ``on_epoch_end(history)`` is called after each checkpoint with the
    history so far (the CLI writes it; the tests raise in it to simulate a crash). torch's global random state is the same
    after the call as before it.

    ``group`` (:func:`dctutor.distributed.from_environment`) shares the epoch between the processes
    torchrun started (:mod:`dctutor.distributed` says how); every rank passes the same arguments,
    and only rank 0 writes ``out_dir`` and calls ``on_start`` and ``on_epoch_end``.
    """
    group = SINGLE if group is None else group
    if not isinstance(group, Group):
        raise TypeError(f"group must be a dctutor.distributed.Group (from_environment()), got {type(group).__name__}")
    out = _validate(model, dataset, config, out_dir)
    if config.batch_size < 2 * group.world_size:
        raise ValueError(f"batch_size={config.batch_size} is the global batch over {group.world_size} processes; "
                         f"each needs at least 2 images for BatchNorm: use batch_size >= {2 * group.world_size}")
    dev = pick_device(device)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        return _train(model, dataset, config, out, dev, progress, on_epoch_end, group, on_start)


def _train(model, dataset, config, out, dev, progress, on_epoch_end, group, on_start) -> DeepClusterRun:
    # A hash of the pixels, so a checkpoint is never resumed on other images (computed once per run).
    data_id = {"n": len(dataset), "hash": pixel_hash(dataset.images)}
    # A folder's file names, kept beside it, so a resume on a changed folder names what came or went.
    files = getattr(dataset, "files", None)
    model.to(dev, memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
    if dev.type == "cuda" and isinstance(dataset.images, torch.Tensor):  # resident pixels: no loader in the way
        dataset = ImageDataset(dataset.images.to(dev), dataset.targets, dataset.classes, dataset.name)
    body_params = [p for name, p in model.named_parameters() if not name.startswith("top_layer.")]
    optimizer = torch.optim.SGD(body_params, lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    truth = dataset.targets.cpu().numpy()
    has_labels = bool((truth >= 0).all())
    history: list[dict] = []
    labels: np.ndarray | None = None
    labels_per_epoch: list[np.ndarray] = []
    start_epoch = 0
    ckpt = out / CHECKPOINT if out is not None else None
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt)
        check_resumable(state, ckpt)
        _check_resume(state, config, model, data_id, files, ckpt)
        model.top_layer = _top_layer(model, config, None).to(dev)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:  # tensors of other shapes: the file was edited
            raise ValueError(f"{ckpt} does not fit this model ({str(err).splitlines()[0][:160]}); it is damaged: "
                             f"move it away to start again, or restore a copy") from None
        # Columns added since the checkpoint was written are NaN in its rows (unknown then).
        history = [{key: row.get(key, [] if key == "sizes" else float("nan")) for key in HISTORY_COLUMNS}
                   for row in state["history"]]
        start_epoch, labels = state["epoch"] + 1, state["labels"].numpy()
    elif out is not None and group.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if out is not None and on_start is not None and group.is_main:
        on_start()
    for epoch in range(start_epoch, config.epochs):
        if labels is not None and config.halt_clustering_after is not None and epoch >= config.halt_clustering_after:
            _train_halted(model, dataset, labels, optimizer, config, epoch, dev, progress, history, group)
        else:
            labels = _train_clustered(model, dataset, labels, optimizer, config, epoch, dev, progress, history,
                                      truth, has_labels, group)
        labels_per_epoch.append(labels)
        if ckpt is not None and group.is_main:
            save_checkpoint(ckpt, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                                   "history": history, "labels": torch.from_numpy(labels), "config": asdict(config),
                                   "arch": model.arch, "data": data_id}
                            | ({"files": "\n".join(files)} if files is not None else {}))
        if on_epoch_end is not None and group.is_main:
            on_epoch_end(history)
        barrier(group)  # the others wait for rank 0's checkpoint before the next epoch
    return DeepClusterRun(model=model, labels=labels, history=history, config=config, out_dir=out,
                          labels_per_epoch=labels_per_epoch)


def _train_halted(model, dataset, labels, optimizer, config, epoch, dev, progress, history, group) -> None:
    """One epoch after clustering has halted: train on the last pseudo-labels, top layer kept."""
    t0 = time.perf_counter()
    loss = _train_epoch(model, dataset, labels, optimizer, config, epoch, dev, progress, top_layer=None,
                        group=group)
    t1 = time.perf_counter()
    check_diverged(model, loss, config.k, epoch, config.lr)
    row = history[-1] | {"epoch": epoch, "loss": loss, "nmi_prev": 1.0, "spread": float("nan"),
                         "time_extract": 0.0, "time_cluster": 0.0, "time_train": t1 - t0}
    history.append({key: row[key] for key in HISTORY_COLUMNS})


def _label(feats: torch.Tensor, config: DeepClusterConfig, epoch: int, dev: torch.device) -> np.ndarray:
    """Pseudo-labels of the features by the configured labeller, on whitened, normalised features."""
    x = preprocess(feats, config.pca_dim)
    seed = epoch_seed(config.seed, epoch, _KMEANS)
    if config.labeller == "sinkhorn":
        return equal_partition(x, config.k, n_iter=config.kmeans_iters, seed=seed, epsilon=config.sinkhorn_epsilon,
                               sinkhorn_iters=config.sinkhorn_iters, device=dev).labels
    return kmeans(x, config.k, n_iter=config.kmeans_iters, seed=seed, backend=config.kmeans_backend, device=dev,
                  reassign_empty=config.reassign_empty).labels


def _train_clustered(model, dataset, labels, optimizer, config, epoch, dev, progress, history, truth,
                     has_labels, group) -> np.ndarray:
    """One epoch of the paper's loop: extract, cluster, train on the new pseudo-labels."""
    t0 = time.perf_counter()
    part = shard(len(dataset), group)  # a contiguous range: a view of the pixels, not a copy
    mine = ImageDataset(dataset.images[part.start:part.stop], dataset.targets[part.start:part.stop],
                        dataset.classes, dataset.name)
    with _autocast(config, dev):
        feats = extract_features(model, mine, batch_size=config.batch_size, device=dev, progress=progress,
                                 as_numpy=False, crop=config.cluster_crop)
    feats = gather_rows(feats, len(dataset), group)
    if not bool(torch.isfinite(feats).all()):
        raise FloatingPointError(f"epoch {epoch}: the features are no longer finite, so training diverged; "
                                 f"lower lr (now {config.lr}) and start again in a new out_dir")
    wide = feats.double()
    spread = float(wide.var(0, correction=0).sum() / wide.square().sum(1).mean().clamp(min=1e-300))
    del wide
    t1 = time.perf_counter()
    new = _label(feats, config, epoch, dev)
    # Rank 0's clustering is everyone's: k-means on GPUs may differ in the last bit between processes.
    new = broadcast(torch.from_numpy(new).to(dev), group).cpu().numpy()
    prototypes = None
    if config.head == "prototypes":
        new = new if labels is None else match_labels(labels, new, config.k)
        # relu(embedding) is what the top layer sees: AlexNet's head ends in the ReLU its embedding
        # leaves out, and ResNet's embedding is non-negative already (tests/test_prototypes.py).
        prototypes = prototypes_from_labels(torch.relu(feats), new, config.k)
    top_layer = _top_layer(model, config, epoch, prototypes)
    t2 = time.perf_counter()
    loss = _train_epoch(model, dataset, new, optimizer, config, epoch, dev, progress, top_layer, group=group)
    t3 = time.perf_counter()
    check_diverged(model, loss, config.k, epoch, config.lr)
    row = {"epoch": epoch, "loss": loss,
           "nmi_labels": nmi(truth, new) if has_labels else float("nan"),
           "nmi_prev": nmi(labels, new) if labels is not None else float("nan")}
    row.update(cluster_stats(new, config.k), spread=spread)
    row.update(time_extract=t1 - t0, time_cluster=t2 - t1, time_train=t3 - t2)
    history.append({key: row[key] for key in HISTORY_COLUMNS})
    return new
