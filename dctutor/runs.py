"""Everything on disk about a DeepCluster run, in one place.

A run folder (``out_dir`` of :func:`dctutor.deepcluster.train_deepcluster`, ``--out`` of the CLI)
holds ``checkpoint.pt`` (weights, optimiser, history, last pseudo-labels, configuration and the
backbone's ``arch``), ``run.json`` (the CLI's settings, so ``probe`` and ``transfer`` can rebuild the
data), and ``history.csv`` / ``history.json`` (one row per epoch). Every file is written to a
temporary name and renamed, so a run killed at any moment leaves the previous version whole.
A checkpoint carries a checksum of its payload, verified when it is read: a changed byte (a failing
disk, a bad copy) is refused rather than resumed with other weights. Damaged or foreign files are
reported with their path and what to do, never overwritten.
"""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import math
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch

from .models import Backbone, build
from .prototypes import PrototypeHead

CHECKPOINT = "checkpoint.pt"
SETTINGS = "run.json"
FORMAT = "dctutor-deepcluster"
# Format 1 (no tag) was written before backbones had a registry; load_checkpoint migrates it.
# Format 2 added the tag, the backbone's ``arch`` dict and labels as a tensor.
VERSION = 2
# Checkpoints written before checksums have none and are read unverified; every newer one is verified.
CHECKSUM = "checksum"
# What a checkpoint must hold to resume training (save_model writes only a network: model, arch).
RESUMABLE = ("model", "optimizer", "epoch", "history", "labels", "config", "arch", "data")


def jsonable(value):
    """``value`` with NaN and infinities replaced by None and tuples by lists, so it is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if hasattr(value, "tolist"):  # numpy and torch scalars and arrays
        return jsonable(value.tolist())
    return value


def _replace(tmp: Path, path: Path) -> None:
    try:
        os.replace(tmp, path)
    except BaseException:  # an error or Ctrl-C: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, value) -> None:
    """``value`` as strict, indented JSON at ``path``, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(jsonable(value), indent=1, allow_nan=False))
    except BaseException:  # an error or Ctrl-C: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)


def read_json(path: str | Path, what: str = "settings") -> dict:
    """The JSON object at ``path``; a clear ``ValueError`` when it is not one."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore it or start a new run folder") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} should hold a JSON object of {what}, got {type(value).__name__}; "
                         f"restore it or start a new run folder")
    return value


def payload_checksum(state: dict) -> str:
    """A SHA-256 of everything in ``state`` but its checksum: every tensor's dtype, shape and bytes, and
    every other value, in order. torch.load does not notice a changed byte in a tensor; this does."""
    digest = hashlib.sha256()
    _digest({key: value for key, value in state.items() if key != CHECKSUM}, digest)
    return digest.hexdigest()


def _digest(value, digest) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(value, np.ndarray):  # format 1 labels, or an extra entry of save_model
        array = np.ascontiguousarray(value)
        digest.update(f"A{array.dtype}{array.shape}".encode())
        digest.update(array.view(np.uint8).data if array.dtype != object else repr(array.tolist()).encode())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            _digest(key, digest)
            _digest(item, digest)
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _digest(item, digest)
    else:  # str, int, float (repr round-trips), bool, None
        text = repr(value)
        digest.update(f"{type(value).__name__}{len(text)}:{text}".encode())


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a kill leaves the old or the new file, never half of one.

    The file holds ``state`` with the format tag, its version and the :func:`payload_checksum` that
    :func:`load_checkpoint` verifies. A write that fails for lack of space raises ``OSError``
    (``ENOSPC``) naming the file, whatever way torch's writer put it.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    payload = {"format": FORMAT, "version": VERSION, **{k: v for k, v in state.items() if k != CHECKSUM}}
    payload[CHECKSUM] = payload_checksum(payload)
    try:
        torch.save(payload, tmp)
    except RuntimeError as err:  # torch's zip writer reports a full disk as "unexpected pos" or "file write failed"
        tmp.unlink(missing_ok=True)
        if not any(sign in str(err) for sign in ("unexpected pos", "write failed", "PytorchStreamWriter")):
            raise
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        free = shutil.disk_usage(path.parent).free / 2**20
        raise OSError(errno.ENOSPC, f"writing the checkpoint failed ({reason}); the disk holding it has "
                      f"{free:.0f} MiB free", str(path)) from None
    except BaseException:  # an error or Ctrl-C: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)


def _torch_load(path: Path):
    # Format 1 pickled its labels as a numpy array. Allowing the callables numpy pickles an int64
    # array with (asked from numpy itself, whatever its version calls them) keeps the weights-only
    # loader safe: they only rebuild arrays.
    labels = np.zeros(1, dtype=np.int64)
    rebuild = labels.__reduce__()[0]
    with torch.serialization.safe_globals([rebuild, np.ndarray, np.dtype, type(labels.dtype)]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _is_format_1(state: dict) -> bool:
    return ("format" not in state and isinstance(state.get("arch"), dict) and "config" in state["arch"]
            and isinstance(state.get("model"), dict))


def _migrate_format_1(state: dict) -> dict:
    """A format-1 checkpoint in today's layout: AlexNet's ``classifier.`` layers are now ``head.``, its
    arch ``{"config": "small"|"imagenet", ...}`` is the registry's ``{"name": "alexnet", ...}``, labels a
    tensor, and history rows gain ``largest``. Epochs resumed from it draw their random numbers with
    today's per-epoch seeds, so they continue the run but do not replay what format 1 would have done."""
    old = state["arch"]
    arch = {"name": "alexnet", "sobel": bool(old.get("sobel", True)), "small_input": old.get("config") == "small",
            "width": old.get("width", 1.0), "fc_dim": old.get("fc_dim", 4096)}
    model = {("head." + key[len("classifier."):] if key.startswith("classifier.") else key): value
             for key, value in state["model"].items()}
    history = [row | {"largest": row["size_max"] / max(sum(row["sizes"]), 1)}
               if isinstance(row, dict) and "largest" not in row and {"size_max", "sizes"} <= set(row) else row
               for row in state.get("history", [])]
    migrated = state | {"format": FORMAT, "version": VERSION, "arch": arch, "model": model, "history": history}
    if isinstance(state.get("labels"), np.ndarray):
        migrated["labels"] = torch.from_numpy(state["labels"].astype(np.int64))
    return migrated


def load_checkpoint(path: str | Path) -> dict:
    """The state saved by :func:`save_checkpoint` at ``path`` (a checkpoint file or a run folder).

    Raises ``FileNotFoundError`` when there is none and ``ValueError`` naming the file when it is
    damaged (truncated, empty), was not written by dctutor, or by a dctutor whose format this one
    does not read (a newer one: upgrade). Format 1 is migrated in memory (the file is left as it is;
    the next checkpoint of a resumed run is written in today's format). Fields this version does not
    know are ignored; missing ones are reported by the function that needs them.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        folder = path.parent if path.suffix == ".pt" else path
        raise FileNotFoundError(f"no DeepCluster checkpoint at {path}; train one first, e.g. "
                                f"python -m dctutor train --out {folder}")
    try:
        state = _torch_load(path)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise ValueError(f"{path} is damaged or not a dctutor checkpoint ({reason}); "
                         f"move it away to start again, or restore a copy") from None
    if isinstance(state, dict) and _is_format_1(state):
        return _migrate_format_1(state)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a dctutor DeepCluster checkpoint (no '{FORMAT}' format tag); "
                         f"use another run folder")
    version = state.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ValueError(f"{path} has no readable format version ({version!r}); it is damaged: move it away to "
                         f"start again, or restore a copy")
    if version > VERSION:
        raise ValueError(f"{path} was written by a newer dctutor (format {version}, this one reads up to "
                         f"{VERSION}); upgrade dctutor or use a new --out")
    if version < VERSION:
        raise ValueError(f"{path} was written by an older dctutor (format {version}) whose layout this one does "
                         f"not know; train again with a new --out, or use the dctutor that wrote it")
    if CHECKSUM in state and state.pop(CHECKSUM) != payload_checksum(state):
        raise ValueError(f"{path} fails its checksum: its contents changed after dctutor wrote it (a failing disk "
                         f"or a bad copy); restore a copy, or move it away to start again")
    return state


def check_resumable(state: dict, path: str | Path) -> None:
    """A ``ValueError`` naming ``path`` unless ``state`` holds every field a resume reads, with sane
    types, so a resume never fails halfway with a ``KeyError`` (e.g. on a network saved by
    :func:`save_model`, or a file edited by hand). The labels must match the image count the
    checkpoint records; whether that is the count of the data at hand is for the caller to say
    (other data is not a damaged file)."""
    missing = [key for key in RESUMABLE if key not in state]
    if missing:
        raise ValueError(f"{path} holds no resumable run (missing {', '.join(missing)}): it is a saved network, "
                         f"not a training checkpoint; use a new --out (load it with dctutor.runs.load_model)")
    epoch, history, labels = state["epoch"], state["history"], state["labels"]
    problems = []
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        problems.append(f"epoch={epoch!r}")
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        problems.append("history is not a list of rows")
    if not isinstance(state["model"], dict) or not isinstance(state["optimizer"], dict):
        problems.append("model or optimizer is not a state dict")
    data = state["data"]
    if not isinstance(state["config"], dict) or not isinstance(data, dict):
        problems.append("config or data is not a dict")
    elif not isinstance(data.get("n"), int) or not isinstance(labels, torch.Tensor) or labels.shape != (data["n"],):
        problems.append(f"labels are not {data.get('n')} cluster ids")
    if problems:
        raise ValueError(f"{path} is damaged ({'; '.join(problems)}); move it away to start again, "
                         f"or restore a copy")


def load_model(path: str | Path) -> Backbone:
    """The trained network of a run (its folder or its ``checkpoint.pt``), rebuilt from the saved
    ``arch`` with its weights, in eval mode. Its ``top_layer`` predicts the last pseudo-labels."""
    return model_from_state(load_checkpoint(path))


def model_from_state(state: dict) -> Backbone:
    """The network held by a checkpoint already read with :func:`load_checkpoint`, in eval mode."""
    weights, arch = state.get("model"), state.get("arch")
    top = weights.get("top_layer.weight") if isinstance(weights, dict) else None
    if not isinstance(top, torch.Tensor) or top.dim() != 2 or not isinstance(arch, dict):
        raise ValueError("the checkpoint holds no network (its 'model' weights with a top_layer, or its 'arch', "
                         "are missing); load a run folder written by dctutor train or dctutor.runs.save_model")
    model = build(arch, num_classes=int(top.shape[0]))
    if "top_layer.temperature" in weights:  # a DeepCluster-v2 run: its top layer is the prototypes
        model.top_layer = PrototypeHead(top, float(weights["top_layer.temperature"]))
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:  # weights of another shape or layer names: edited, or another arch
        first = str(err).splitlines()[0][:160]
        raise ValueError(f"the checkpoint's weights do not fit its arch {arch} ({first}); the file is damaged "
                         f"or edited: restore a copy") from None
    return model.eval()


def describe_run(run: str | Path) -> dict:
    """The settings that made a run's network, and the epochs its checkpoint holds: what a benchmark
    built on the run records, so its numbers say which network they measured. A ``dctutor train``
    folder is read from its ``run.json``; a folder that :func:`dctutor.deepcluster.train_deepcluster`
    wrote (``out_dir``, a checkpoint only) from the checkpoint's config and arch, its data set unnamed."""
    run = Path(run)
    state = load_checkpoint(run)
    keys = ("dataset", "split", "n", "image_size", "arch", "width", "rgb", "k", "batch_size", "lr", "seed",
            "crop_scale", "cluster_crop", "labeller", "head")
    if (run / SETTINGS).exists():
        settings = read_json(run / SETTINGS)
    else:
        arch = state.get("arch") or {}
        settings = dict(state.get("config") or {}) | {
            "arch": arch.get("name"), "width": arch.get("width"), "rgb": not arch.get("sobel", True),
            "n": (state.get("data") or {}).get("n")}
    dataset = str(settings.get("dataset") or "")
    return {key: settings.get(key) for key in keys} | {
        # A folder is named by its last two parts: where it lived on the machine that ran says nothing.
        "dataset": ("folder:" + "/".join(Path(dataset[len("folder:"):]).parts[-2:])
                    if dataset.startswith("folder:") else settings.get("dataset")),
        "epochs_done": int(state["epoch"]) + 1}


def save_model(path: str | Path, model: Backbone, **extra) -> Path:
    """Save ``model`` (weights and ``arch``) as ``path/checkpoint.pt``, with any JSON-like ``extra``
    entries (e.g. ``history``), so that :func:`load_model` can rebuild it: how one chapter hands its
    trained network to the next. Returns the checkpoint's path."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / CHECKPOINT
    save_checkpoint(target, {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                             "arch": model.arch, "epoch": -1, **extra})
    return target


def write_history(history: list[dict], out: str | Path) -> None:
    """``history.json`` (every column, NaN as null) and ``history.csv`` (sizes space-separated)."""
    out = Path(out)
    write_json(out / "history.json", history)
    if not history:
        return
    # Every column any row has (rows restored from an older checkpoint may lack newer ones), so the
    # CSV never fails halfway and stays in step with the checkpoint.
    columns = list(dict.fromkeys(key for row in history for key in row))
    tmp = out / "history.csv.tmp"
    try:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="nan")
            writer.writeheader()
            for row in history:
                sizes = row.get("sizes")
                writer.writerow(row | ({"sizes": " ".join(map(str, sizes))} if isinstance(sizes, list) else {}))
    except BaseException:  # an error or Ctrl-C: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, out / "history.csv")


def format_history(history: list[dict]) -> str:
    """The per-epoch history as a fixed-width table (what the CLI and the chapters print)."""
    lines = [f"{'epoch':>5} {'loss':>7} {'NMI lab':>7} {'NMI t-1':>7} {'empty':>5} {'largest':>7} "
             f"{'eff. k':>7} {'s/epoch':>7}"]
    for r in history:
        seconds = r["time_extract"] + r["time_cluster"] + r["time_train"]
        lines.append(f"{r['epoch']:>5} {r['loss']:>7.3f} {r['nmi_labels']:>7.3f} {r['nmi_prev']:>7.3f} "
                     f"{r['n_empty']:>5} {r['largest']:>7.1%} {r['n_effective']:>7.1f} {seconds:>7.1f}")
    return "\n".join(lines)
