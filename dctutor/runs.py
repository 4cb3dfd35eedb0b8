"""Everything on disk about a DeepCluster run, in one place.

A run folder (``out_dir`` of :func:`dctutor.deepcluster.train_deepcluster`, ``--out`` of the CLI)
holds ``checkpoint.pt`` (weights, optimiser, history, last pseudo-labels, configuration and the
backbone's ``arch``), ``run.json`` (the CLI's settings, so ``probe`` and ``transfer`` can rebuild the
data), and ``history.csv`` / ``history.json`` (one row per epoch). Every file is written to a
temporary name and renamed, so a run killed at any moment leaves the previous version whole.
Damaged or foreign files are reported with their path and what to do, never overwritten.
"""
from __future__ import annotations

import csv
import json
import math
import os
import pickle
import zipfile
from pathlib import Path

import torch

from .models import Backbone, build

CHECKPOINT = "checkpoint.pt"
SETTINGS = "run.json"
FORMAT = "dctutor-deepcluster"
VERSION = 2


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


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically: a kill leaves the old or the new file, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
    except BaseException:  # an error or Ctrl-C: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """The state saved by :func:`save_checkpoint` at ``path`` (a checkpoint file or a run folder).

    Raises ``FileNotFoundError`` when there is none and ``ValueError`` naming the file when it is
    damaged (truncated, empty) or was not written by dctutor.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no DeepCluster checkpoint at {path}; train one first, e.g. "
                                f"python -m dctutor train --out {path.parent}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        reason = (str(err).splitlines() or [type(err).__name__])[0][:120]
        raise ValueError(f"{path} is damaged or not a dctutor checkpoint ({reason}); "
                         f"move it away to start again, or restore a copy") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a dctutor DeepCluster checkpoint (no '{FORMAT}' format tag); "
                         f"use another run folder")
    if state.get("version") != VERSION:
        raise ValueError(f"{path} was written by another dctutor version (format {state.get('version')}, "
                         f"this one reads {VERSION}); train again in a new run folder")
    return state


def load_model(path: str | Path) -> Backbone:
    """The trained network of a run (its folder or its ``checkpoint.pt``), rebuilt from the saved
    ``arch`` with its weights, in eval mode. Its ``top_layer`` predicts the last pseudo-labels."""
    return model_from_state(load_checkpoint(path))


def model_from_state(state: dict) -> Backbone:
    """The network held by a checkpoint already read with :func:`load_checkpoint`, in eval mode."""
    weights = state["model"]
    model = build(state["arch"], num_classes=int(weights["top_layer.weight"].shape[0]))
    model.load_state_dict(weights)
    return model.eval()


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
    tmp = out / "history.csv.tmp"
    try:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(history[0]))
            writer.writeheader()
            for row in history:
                writer.writerow(row | {"sizes": " ".join(map(str, row["sizes"]))})
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
