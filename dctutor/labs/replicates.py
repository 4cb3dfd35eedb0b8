"""Chapter 4's replicate runs: the same DeepCluster run for several seeds, probed against random
twins, so that each comparison of the chapter comes with an interval over seeds."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from ..data import ImageDataset
from ..deepcluster import DeepClusterConfig, DeepClusterRun, train_deepcluster
from ..evaluate import compare_with_random, random_like
from ..models import alexnet, small_input_for
from ..evidence import did_it_train, t_interval, verdict
from .inspect import knn_by_layer


def train_run(data: ImageDataset, config: DeepClusterConfig, *, width: float, sobel: bool = True,
              device: str = "auto") -> DeepClusterRun:
    """A fresh AlexNet (seeded by ``config.seed``) trained by DeepCluster on ``data``."""
    net = alexnet(config.k, sobel=sobel, small_input=small_input_for(data.image_size), width=width,
                  seed=config.seed)
    return train_deepcluster(net, data, config, device=device, progress=False)


def replicate(train_set: ImageDataset, test_set: ImageDataset, config: DeepClusterConfig, seeds: Sequence[int], *,
              width: float, sobel: bool = True, probe_epochs: int = 10, knn_layers: Sequence[str] = ("conv5", "fc6", "fc7"),
              device: str = "auto") -> list[dict]:
    """For each seed: ``{"seed", "run", "table"}``, the run of :func:`train_run` with ``config.seed =
    seed`` and its :func:`dctutor.evaluate.compare_with_random` table on ``test_set``."""
    out = []
    for seed in seeds:
        run = train_run(train_set, replace(config, seed=seed), width=width, sobel=sobel, device=device)
        table = compare_with_random(run.model, train_set, test_set, knn_layers=list(knn_layers),
                                    epochs=probe_epochs, seed=seed, device=device)
        out.append({"seed": seed, "run": run, "table": table})
    return out


def knn_gaps(run: DeepClusterRun, train_set: ImageDataset, test_set: ImageDataset, table: list[dict],
             layers: Sequence[str], seed: int) -> list[dict]:
    """Where does kNN lose to the random twin? Per layer, trained minus random kNN accuracy (0-1) in
    four settings, each a half of one set as memory and the other half scored, except the last:

    * ``pseudo, train``: the last pseudo-labels on the training images (the pretext task);
    * ``labels, train``: the classes on the training images;
    * ``labels, test``: the classes on the test images only (images the network never saw);
    * ``labels, train->test``: the classes, training images as memory, test images scored (the
      test-set table's kNN rows).
    """
    twin = random_like(run.model, seed)
    gaps = {}
    for name, data, targets in (("pseudo, train", train_set, run.labels),
                                ("labels, train", train_set, train_set.targets.numpy()),
                                ("labels, test", test_set, test_set.targets.numpy())):
        trained = knn_by_layer(run.model, data, np.asarray(targets), layers, seed=seed)
        random = knn_by_layer(twin, data, np.asarray(targets), layers, seed=seed)
        gaps[name] = {layer: trained[layer] - random[layer] for layer in layers}
    gaps["labels, train->test"] = {layer: next(r["gain"] for r in table if r["layer"] == f"knn {layer}")
                                   for layer in layers}
    return [{"layer": layer, **{name: values[layer] for name, values in gaps.items()}} for layer in layers]


def knn_diagnosis(summary: dict) -> dict[str, str]:
    """Per layer, what the intervals of :func:`knn_gaps` (summarised over seeds) allow one to say
    about kNN against the random twin: chosen by the numbers, never typed by hand."""
    out = {}
    for layer, cells in summary.items():
        across, test, train = (verdict(cells[key]) for key in ("labels, train->test", "labels, test", "labels, train"))
        if across != "lower":
            out[layer] = f"test-set kNN is {'above random' if across == 'higher' else 'within noise of random'}"
        elif test == "lower":
            out[layer] = "below random on the test images alone too: not a train/test mismatch"
        elif train == "lower":
            out[layer] = "below random on the training images too"
        else:
            out[layer] = ("below random only with training images as memory for test images: "
                          "a train/test shift")
    return out


def sweep_k(train_set: ImageDataset, test_set: ImageDataset, config: DeepClusterConfig, ks: Sequence[int],
            seeds: Sequence[int], *, width: float, sobel: bool = True, probe_epochs: int = 10, layer: str = "conv5",
            device: str = "auto") -> list[dict]:
    """One short run per (k, seed), probed on ``layer`` against its random twin: the rows of
    :func:`sweep_settings` for the settings ``{k: {"k": k}}``."""
    return sweep_settings(train_set, test_set, config, {k: {"k": k} for k in ks}, seeds, width=width, sobel=sobel,
                          probe_epochs=probe_epochs, layer=layer, device=device)


def sweep_settings(train_set: ImageDataset, test_set: ImageDataset, config: DeepClusterConfig,
                   settings: Mapping[object, dict], seeds: Sequence[int], *, width: float, sobel: bool = True,
                   probe_epochs: int = 10, layer: str = "conv5", device: str = "auto") -> list[dict]:
    """One short run per (setting, seed), ``config`` changed by the setting's fields, probed on
    ``layer`` against its random twin: rows ``setting``, ``k``, ``seed``, ``loss`` (last epoch),
    ``nmi`` (last clustering against the labels), ``trained``, ``random``, ``gain`` and the run's
    ``history`` and ``labels_per_epoch``."""
    rows = []
    for name, fields in settings.items():
        for seed in seeds:
            run = train_run(train_set, replace(config, **fields, seed=seed), width=width, sobel=sobel, device=device)
            probe = compare_with_random(run.model, train_set, test_set, layers=[layer], epochs=probe_epochs,
                                        seed=seed, device=device)[0]
            rows.append({"setting": name, "k": run.config.k, "seed": seed, "loss": run.history[-1]["loss"],
                         "nmi": run.history[-1]["nmi_labels"], "trained": probe["trained"],
                         "random": probe["random"], "gain": probe["gain"], "history": run.history,
                         "labels_per_epoch": run.labels_per_epoch})
    return rows


def summarise_sweep(rows: list[dict], by: str = "k", *, trained: str = "trained", nmi: str = "nmi") -> dict:
    """Rows of one run per (setting, seed), e.g. :func:`sweep_k`'s (``by="k"``), each with ``seed``,
    ``k``, ``loss`` and ``gain``, the probe accuracy under ``trained`` and the last clustering's NMI
    with the labels under ``nmi``, summarised per setting over the seeds: ``per[setting]`` holds t
    intervals of ``nmi``, ``trained`` and ``gain`` and ``check``, the did-it-train verdict. Only
    settings whose runs fit their pseudo-labels are compared (a run that did not learn decides
    nothing): ``best`` is the one of them with the highest mean accuracy (None if none fits),
    ``lead[setting]`` the interval of its lead over each other one, paired by seed, and ``left_out``
    the settings that did not fit."""
    settings = list(dict.fromkeys(r[by] for r in rows))
    mine = {s: sorted((r for r in rows if r[by] == s), key=lambda r: r["seed"]) for s in settings}
    fields = {"nmi": nmi, "trained": trained, "gain": "gain"}
    per = {s: {key: t_interval([r[field] for r in mine[s]]) for key, field in fields.items()}
           | {"check": did_it_train([r["loss"] for r in mine[s]], mine[s][0]["k"], [r["gain"] for r in mine[s]])}
           for s in settings}
    fitted = [s for s in settings if per[s]["check"]["fits_labels"]]
    best = max(fitted, key=lambda s: per[s]["trained"]["mean"]) if fitted else None
    # Paired by seed, so that a setting still missing a seed is compared on the seeds both have.
    lead = {s: t_interval([b[trained] - other[b["seed"]][trained] for b in mine[best] if b["seed"] in other])
            for s in fitted if s != best for other in [{r["seed"]: r for r in mine[s]}]}
    return {"per": per, "best": best, "lead": lead, "left_out": [s for s in settings if s not in fitted]}
