"""How good are the learned features? Linear probes per layer and kNN, always beside random init.

The paper measures its features by training a linear classifier on each frozen convolutional
layer (Sec. 4.3, Table 1, following Zhang et al.), with hyper-parameters chosen by
cross-validation on the training set. :func:`linear_probe` does the same at small scale: each
conv layer is average-pooled to a few thousand dimensions (the reference code pools to about 9k
for 224-px inputs), standardised with the training statistics, and fed to a softmax classifier
whose weight decay is chosen on a held-out part of *train*; the test split is only scored.
:func:`reference_probe` trains the probes the reference code's way instead (augmented views, SGD,
about 9k dimensions), to measure what the faster recipe changes.
:func:`knn_accuracy` is the cheaper cosine k-nearest-neighbour score on the penultimate features.
A number without a baseline says little, so :func:`compare_with_random` runs the same probes on
a randomly initialised network of the same architecture.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .augment import augment_batch
from .data import ImageDataset
from .device import pick_device
from .features import layer_features, pool_size
from .models import Backbone, build, check_backbone
from .validation import check_float, check_int

WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2)
MIN_STEPS = 200


def _fit_softmax(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decays: Sequence[float], epochs: int,
                 lr: float, seed: int, min_steps: int = MIN_STEPS) -> list[torch.nn.Linear]:
    """One softmax classifier per weight decay, trained side by side on the same batches: each gets
    exactly the steps it would get alone (its own loss, Adam state and decay), for one pass of the
    data instead of one per candidate."""
    gen = torch.Generator().manual_seed(seed)
    heads = [torch.nn.Linear(x.shape[1], n_classes).to(x.device) for _ in weight_decays]
    for head in heads:
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    opt = torch.optim.Adam([{"params": head.parameters(), "weight_decay": wd}
                            for head, wd in zip(heads, weight_decays)], lr=lr)
    # Small training sets get extra passes: at least min_steps steps, or Adam stops far from the optimum.
    passes = max(epochs, math.ceil(min_steps / math.ceil(len(x) / 256)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, passes * math.ceil(len(x) / 256))
    for _ in range(passes):
        for idx in torch.randperm(len(x), generator=gen).to(x.device).split(256):
            batch, targets = x[idx], y[idx]
            loss = sum(F.cross_entropy(head(batch), targets) for head in heads)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return heads


def _accuracy(clf: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((clf(x).argmax(1) == y).float().mean())


def _standardise(train: np.ndarray, *others: np.ndarray, device: torch.device) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return [torch.from_numpy((a - mean) / std).float().to(device) for a in (train, *others)]


def _check_features(train_x, train_y, test_x, test_y) -> None:
    """Features and labels a classifier can be trained and scored on: one label per row, the same
    feature width, and test labels that occur in training (otherwise no classifier fitted on train
    can be right once and the accuracy is 0 by construction). A few unseen labels are allowed here,
    as arrays may hold pseudo-labels whose rare clusters miss a random half; data sets with named
    classes are held to every class (:func:`linear_probe`)."""
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise TypeError(f"{name}_x and {name}_y must be numpy arrays, got {type(x).__name__} and "
                            f"{type(y).__name__}")
        if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
            raise ValueError(f"{name}_x {x.shape} and {name}_y {y.shape} must be (n, d) features and n >= 1 labels")
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x has {train_x.shape[1]} features per image but test_x {test_x.shape[1]}; "
                         f"extract both with the same layer and pooling")
    if not np.isin(test_y, train_y).any():
        raise ValueError(f"no test label ({sorted(np.unique(test_y).tolist())[:10]}) occurs in the training labels "
                         f"({sorted(np.unique(train_y).tolist())[:10]}), so the accuracy would be 0 by construction; "
                         f"score on labels of the same classes")


def _check_label_sets(train_ds: ImageDataset, test_ds: ImageDataset) -> None:
    unseen = sorted(set(test_ds.targets.unique().tolist()) - set(train_ds.targets.unique().tolist()))
    if unseen:
        names = [train_ds.classes[i] if 0 <= i < len(train_ds.classes) else i for i in unseen[:10]]
        raise ValueError(f"test_ds has classes {names} that train_ds lacks, so no classifier trained on train_ds "
                         f"can be right there; give train_ds images of every test class (a larger n), or drop "
                         f"those test images")


def probe_features(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, *,
                   epochs: int = 10, lr: float = 1e-3, weight_decays: Sequence[float] = WEIGHT_DECAYS,
                   holdout: float = 0.1, seed: int = 0, min_steps: int = MIN_STEPS,
                   device: str | torch.device | None = None) -> dict:
    """Train a softmax classifier on ``train_x`` and score it on ``test_x``.

    The weight decay is chosen among ``weight_decays`` by accuracy on a random ``holdout``
    fraction of train (Sec. 4.3: "cross-validation on the training set"); the classifier is then
    refitted on all of train with that choice. Each fit runs ``epochs`` passes of Adam with a cosine
    schedule, and at least ``min_steps`` steps, on ``device`` (:func:`dctutor.device.pick_device`).
    Returns test/holdout accuracy and the choice.
    """
    check_float(holdout, "holdout", 0, "holdout=0.1", high=1, strict_low=True, strict_high=True)
    _check_features(train_x, train_y, test_x, test_y)
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_x))
    n_hold = max(1, int(round(holdout * len(train_x))))
    fit, hold = order[n_hold:], order[:n_hold]
    dev = pick_device(device)
    fx, hx = _standardise(train_x[fit], train_x[hold], device=dev)
    fy, hy = torch.from_numpy(train_y[fit]).long().to(dev), torch.from_numpy(train_y[hold]).long().to(dev)
    heads = _fit_softmax(fx, fy, n_classes, weight_decays, epochs, lr, seed, min_steps)
    scores = {wd: _accuracy(head, hx, hy) for wd, head in zip(weight_decays, heads)}
    best = max(scores, key=lambda wd: (scores[wd], -wd))
    ax, tx = _standardise(train_x, test_x, device=dev)
    clf, = _fit_softmax(ax, torch.from_numpy(train_y).long().to(dev), n_classes, [best], epochs, lr, seed,
                        min_steps)
    return {"accuracy": _accuracy(clf, tx, torch.from_numpy(test_y).long().to(dev)), "holdout_accuracy": scores[best],
            "weight_decay": best, "dim": int(train_x.shape[1])}


def _check_labelled(ds: ImageDataset, name: str) -> None:
    if not isinstance(ds, ImageDataset):
        raise TypeError(f"{name} must be a dctutor ImageDataset, got {type(ds).__name__}")
    if bool((ds.targets < 0).any()):
        raise ValueError(f"{name} has unlabelled images (targets -1); probes need labels, e.g. STL-10 'train'")


def linear_probe(model: Backbone, train_ds: ImageDataset, test_ds: ImageDataset,
                 layers: Sequence[str] | None = None, *, target_dim: int = 4096, epochs: int = 10,
                 lr: float = 1e-3, holdout: float = 0.1, seed: int = 0, device: str | torch.device | None = None,
                 features: tuple[dict, dict] | None = None, min_steps: int = MIN_STEPS) -> list[dict]:
    """Test accuracy of a linear classifier on each frozen layer of ``model`` (Sec. 4.3, Table 1).

    ``layers`` defaults to the backbone's ``probe_layers`` (AlexNet: conv1..conv5). One row per
    layer: ``layer``, ``dim`` (after pooling), ``accuracy`` (on ``test_ds``), ``holdout_accuracy``
    and ``weight_decay`` (chosen on a ``holdout`` part of ``train_ds``).
    """
    _check_labelled(train_ds, "train_ds")
    _check_labelled(test_ds, "test_ds")
    _check_label_sets(train_ds, test_ds)
    layers = model.check_layers(list(model.probe_layers if layers is None else layers))
    if features is None:
        features = (layer_features(model, train_ds, layers, target_dim=target_dim, device=device),
                    layer_features(model, test_ds, layers, target_dim=target_dim, device=device))
    train_f, test_f = features
    rows = []
    for layer in layers:
        row = probe_features(train_f[layer], train_ds.targets.numpy(), test_f[layer], test_ds.targets.numpy(),
                             epochs=epochs, lr=lr, holdout=holdout, seed=seed, min_steps=min_steps, device=device)
        rows.append({"layer": layer, **row})
    return rows


def _crop_boxes(n: int, size: int, crop: int, generator: torch.Generator | None) -> torch.Tensor:
    """(n, 4) boxes (top, left, height, width) of ``crop x crop`` squares at random places, or at the
    centre when ``generator`` is None."""
    if generator is None:
        corner = torch.full((n, 2), (size - crop) // 2, dtype=torch.long)
    else:
        corner = torch.randint(0, size - crop + 1, (n, 2), generator=generator)
    return torch.cat([corner, torch.full((n, 2), crop, dtype=torch.long)], 1)


def reference_probe(model: Backbone, train_ds: ImageDataset, test_ds: ImageDataset,
                    layers: Sequence[str] | None = None, *, epochs: int = 30, batch_size: int = 256,
                    lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 1e-4, target_dim: int = 9216,
                    seed: int = 0, device: str | torch.device | None = None) -> list[dict]:
    """Linear probes trained as the reference code's ``eval_linear.py`` trains them (Table 1), scaled down.

    Where :func:`linear_probe` fits a classifier to fixed, standardised features (fast, one view),
    this recipe shows the frozen network new random crops every epoch: a square of 7/8 of the side
    at a random place (the reference's 224 out of 256) resized back, flipped half of the time.
    Each layer's map is average-pooled to about ``target_dim`` values (the reference: 9 216-9 600),
    not standardised, and one linear layer per layer is trained by SGD with momentum and weight
    decay 1e-4, its learning rate decayed as ``lr / sqrt(1 + lr * weight_decay * step)`` as in the
    reference's ``learning_rate_decay``. Test images are scored on their centre crop. The network,
    BatchNorm statistics included, is never changed. One row per layer: ``layer``, ``dim``, ``accuracy``.
    """
    _check_labelled(train_ds, "train_ds")
    _check_labelled(test_ds, "test_ds")
    _check_label_sets(train_ds, test_ds)
    check_backbone(model)
    layers = model.check_layers(list(model.probe_layers if layers is None else layers))
    check_int(epochs, "epochs", 1, "epochs=30")
    check_int(batch_size, "batch_size", 1, "batch_size=256")
    check_int(target_dim, "target_dim", 1, "target_dim=9216")
    check_float(lr, "lr", 0, "lr=0.01", strict_low=True)
    check_float(momentum, "momentum", 0, "momentum=0.9", high=1, strict_high=True)
    check_float(weight_decay, "weight_decay", 0, "weight_decay=1e-4", high=1)
    dev = pick_device(device)
    size = train_ds.image_size
    crop = max(1, round(size * 7 / 8))
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval().to(dev)

    def pooled(images: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor) -> dict[str, torch.Tensor]:
        x = augment_batch(images.to(dev), boxes.to(dev), flips.to(dev), size)
        with torch.no_grad():
            out = model.forward_layers(x, layers)
        return {name: F.adaptive_avg_pool2d(o, pool_size(o.shape[1], o.shape[-1], target_dim)).flatten(1)
                if o.dim() == 4 else o for name, o in out.items()}

    n_classes = int(max(train_ds.targets.max(), test_ds.targets.max())) + 1
    first = pooled(train_ds.images[:2], _crop_boxes(2, size, crop, None), torch.zeros(2, dtype=torch.bool))
    with torch.random.fork_rng(devices=[]):  # nn.Linear draws its default init from the global RNG
        heads = {name: torch.nn.Linear(f.shape[1], n_classes).to(dev) for name, f in first.items()}
    for head in heads.values():  # zeros: the problem is convex, so no random start is needed
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    params = [p for head in heads.values() for p in head.parameters()]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    targets = train_ds.targets.to(dev)
    step = 0
    try:
        for _ in range(epochs):
            order = torch.randperm(len(train_ds), generator=gen)
            for idx in order.split(batch_size):
                feats = pooled(train_ds.images[idx], _crop_boxes(len(idx), size, crop, gen),
                               torch.rand(len(idx), generator=gen) < 0.5)
                loss = sum(F.cross_entropy(heads[name](f), targets[idx.to(dev)]) for name, f in feats.items())
                for group in opt.param_groups:
                    group["lr"] = lr / math.sqrt(1 + lr * weight_decay * step)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
        correct = dict.fromkeys(layers, 0)
        with torch.no_grad():
            for start in range(0, len(test_ds), batch_size):
                images = test_ds.images[start:start + batch_size]
                y = test_ds.targets[start:start + batch_size].to(dev)
                feats = pooled(images, _crop_boxes(len(images), size, crop, None),
                               torch.zeros(len(images), dtype=torch.bool))
                for name, f in feats.items():
                    correct[name] += int((heads[name](f).argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return [{"layer": name, "dim": int(first[name].shape[1]), "accuracy": correct[name] / len(test_ds)}
            for name in layers]


def knn_from_features(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                      k: int = 20, chunk: int = 1024, device: str | torch.device | None = None) -> float:
    """Accuracy of a majority vote among the ``k`` most cosine-similar training images."""
    _check_features(train_x, train_y, test_x, test_y)
    check_int(k, "k", 1, "k=20", high=len(train_x))
    dev = pick_device(device)
    train = F.normalize(torch.from_numpy(train_x).float().to(dev), dim=1)
    test = F.normalize(torch.from_numpy(test_x).float().to(dev), dim=1)
    labels = torch.from_numpy(train_y).long().to(dev)
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    correct = 0
    for start in range(0, len(test), chunk):
        nearest = (test[start:start + chunk] @ train.T).topk(k, dim=1).indices
        votes = F.one_hot(labels[nearest], n_classes).sum(1)
        correct += int((votes.argmax(1).cpu() == torch.from_numpy(test_y[start:start + chunk])).sum())
    return correct / len(test)


def knn_accuracy(model: Backbone, train_ds: ImageDataset, test_ds: ImageDataset, k: int = 20,
                 layer: str | None = None, *, device: str | torch.device | None = None) -> float:
    """Cosine kNN accuracy on ``test_ds`` with ``layer`` features of ``train_ds`` as the memory
    (default: the backbone's last layer, fc7 for AlexNet)."""
    _check_labelled(train_ds, "train_ds")
    _check_labelled(test_ds, "test_ds")
    _check_label_sets(train_ds, test_ds)
    layer = model.layers[-1] if layer is None else model.check_layers([layer])[0]
    train_f = layer_features(model, train_ds, [layer], device=device)[layer]
    test_f = layer_features(model, test_ds, [layer], device=device)[layer]
    return knn_from_features(train_f, train_ds.targets.numpy(), test_f, test_ds.targets.numpy(), k, device=device)


def random_like(model: Backbone, seed: int = 0) -> Backbone:
    """A randomly initialised network with ``model``'s architecture (the baseline of every probe)."""
    return build(model.arch, num_classes=model.top_layer.out_features, seed=seed)


def evaluate_model(model: Backbone, train_ds: ImageDataset, test_ds: ImageDataset, *,
                   layers: Sequence[str] | None = None, knn_layers: Sequence[str] | None = None, knn_k: int = 20,
                   target_dim: int = 4096, epochs: int = 10, seed: int = 0,
                   device: str | torch.device | None = None, min_steps: int = MIN_STEPS) -> dict:
    """Linear probes on ``layers`` (default ``probe_layers``) and kNN on ``knn_layers`` (default the
    last layer) from a single feature pass per split: ``{"probe": {layer: row}, "knn": {layer: acc}}``."""
    _check_labelled(train_ds, "train_ds")
    _check_labelled(test_ds, "test_ds")
    _check_label_sets(train_ds, test_ds)
    layers = model.check_layers(list(model.probe_layers if layers is None else layers))
    knn_layers = model.check_layers(list(model.layers[-1:] if knn_layers is None else knn_layers))
    wanted = list(dict.fromkeys([*layers, *knn_layers]))
    train_f = layer_features(model, train_ds, wanted, target_dim=target_dim, device=device)
    test_f = layer_features(model, test_ds, wanted, target_dim=target_dim, device=device)
    probes = linear_probe(model, train_ds, test_ds, layers, epochs=epochs, seed=seed, features=(train_f, test_f),
                          min_steps=min_steps, device=device)
    knn = {layer: knn_from_features(train_f[layer], train_ds.targets.numpy(), test_f[layer],
                                    test_ds.targets.numpy(), knn_k, device=device) for layer in knn_layers}
    return {"probe": {row["layer"]: row for row in probes}, "knn": knn}


def compare_with_random(model: Backbone, train_ds: ImageDataset, test_ds: ImageDataset, *, seed: int = 0,
                        **kwargs) -> list[dict]:
    """The same evaluation for ``model`` and for a random-init twin: a table with one row per
    probed layer and one per kNN layer (``"knn fc7"``), columns ``layer``, ``dim``, ``trained``,
    ``random`` (accuracy, 0-1) and ``gain`` (trained - random). ``seed`` builds the twin and seeds
    the probes: pass the seed ``model`` was built with, so the twin is its own starting point."""
    results = {name: evaluate_model(net, train_ds, test_ds, seed=seed, **kwargs)
               for name, net in (("trained", model), ("random", random_like(model, seed)))}
    trained, random = results["trained"], results["random"]
    rows = [{"layer": layer, "dim": row["dim"], "trained": row["accuracy"],
             "random": random["probe"][layer]["accuracy"]} for layer, row in trained["probe"].items()]
    rows += [{"layer": f"knn {layer}", "dim": None, "trained": accuracy, "random": random["knn"][layer]}
             for layer, accuracy in trained["knn"].items()]
    for row in rows:
        row["gain"] = row["trained"] - row["random"]
    return rows
