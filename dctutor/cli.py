"""Command line for long runs outside notebooks: ``python -m dctutor train|probe ...``.

    python -m dctutor train --dataset shapes --n 2000 --epochs 5 --k 50 --out runs/x
    python -m dctutor probe --run runs/x --test-n 1000

``train`` runs :func:`dctutor.deepcluster.train_deepcluster` with every field of its config as an
option; running it again on the same ``--out`` resumes (raise ``--epochs`` to go further). It
writes ``history.csv`` and ``history.json`` after every epoch and ``run.json`` (the arguments, so
``probe`` can rebuild the model and data). ``probe`` loads the checkpoint and prints the linear
probe per layer and the kNN accuracy beside a random-init twin (paper Sec. 4.3), saving ``probe.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import torch

from .data import DATASETS, load_dataset
from .deepcluster import HISTORY_COLUMNS, DeepClusterConfig, train_deepcluster
from .evaluate import CONV_LAYERS, MIN_STEPS, compare_with_random
from .models import alexnet


def _dataset_name(value: str) -> str:
    if value.startswith("folder:") or value in DATASETS:
        return value
    raise argparse.ArgumentTypeError(f"unknown dataset {value!r}; choose one of {', '.join(DATASETS)}")


def _count(low: int):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"{number} must be >= {low}")
        return number
    return parse


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0 or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{value} must be a positive number")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dctutor", description="DeepCluster (Caron et al., ECCV 2018) runs.")
    sub = parser.add_subparsers(dest="command", required=True)
    defaults = DeepClusterConfig()
    train = sub.add_parser("train", help="train AlexNet with DeepCluster (resumes from --out)")
    train.add_argument("--dataset", type=_dataset_name, default="shapes",
                       help=f"one of {', '.join(DATASETS)}")
    train.add_argument("--split", default="train", help="split to train on (stl10: train or unlabeled)")
    train.add_argument("--n", type=_count(2), default=None, help="number of images (default: all; shapes: 2000)")
    train.add_argument("--image-size", type=_count(8), default=None, help="resize to this many pixels")
    train.add_argument("--data-root", default="data", help="where cifar10/stl10 live or are downloaded to")
    train.add_argument("--download", action="store_true", help="let torchvision download cifar10/stl10")
    train.add_argument("--out", required=True, help="output folder: checkpoint, history.csv/json")
    train.add_argument("--width", type=_positive, default=0.5, help="AlexNet channel multiplier (1.0 = paper)")
    train.add_argument("--rgb", action="store_true", help="no Sobel layer (raw RGB input)")
    train.add_argument("--small-input", choices=("auto", "yes", "no"), default="auto",
                       help="small-image AlexNet (auto: yes below 128 px)")
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--threads", type=_count(1), default=None, help="CPU threads for torch")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    for name, default in vars(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            train.add_argument(flag, type=_bool, default=default, metavar="{true,false}",
                               help=f"(default {default})")
        elif isinstance(default, int):
            train.add_argument(flag, type=_count(0), default=default, help=f"(default {default})")
        elif isinstance(default, float):
            train.add_argument(flag, type=float, default=default, help=f"(default {default})")
        else:
            train.add_argument(flag, default=default, help=f"(default {default!r})")
    probe = sub.add_parser("probe", help="linear probes and kNN of a trained run against random init")
    probe.add_argument("--run", required=True, help="a folder written by 'dctutor train'")
    probe.add_argument("--test-split", default="test", help="split to score on")
    probe.add_argument("--test-n", type=_count(2), default=None, help="number of test images (default: all)")
    probe.add_argument("--epochs", type=_count(1), default=10, help="epochs of the linear classifiers")
    probe.add_argument("--layers", nargs="+", default=list(CONV_LAYERS), choices=list(CONV_LAYERS),
                       help="conv layers to probe (default: all five)")
    probe.add_argument("--min-steps", type=_count(1), default=MIN_STEPS,
                       help="at least this many steps per linear classifier")
    probe.add_argument("--knn-k", type=_count(1), default=20, help="neighbours of the kNN classifier")
    probe.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return parser


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def jsonable(value):
    """``value`` with NaN and infinities replaced by None, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def write_history(history: list[dict], out: Path) -> None:
    """history.json (all columns, NaN as null) and history.csv (sizes space-separated), atomically."""
    tmp = out / "history.json.tmp"
    tmp.write_text(json.dumps(jsonable(history), indent=1))
    tmp.replace(out / "history.json")
    tmp = out / "history.csv.tmp"
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for row in history:
            writer.writerow(row | {"sizes": " ".join(map(str, row["sizes"]))})
    tmp.replace(out / "history.csv")


def _load(args: dict, split: str, n: int | None):
    return load_dataset(args["dataset"], split, n=n, image_size=args["image_size"], seed=args["seed"],
                        root=args["data_root"], download=args["download"])


def _model(args: dict, image_size: int):
    small = {"auto": image_size < 128, "yes": True, "no": False}[args["small_input"]]
    return alexnet(args["k"], sobel=not args["rgb"], small_input=small, width=args["width"], seed=args["seed"])


def train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder")
    settings = {key: value for key, value in vars(args).items() if key not in ("command", "no_progress", "threads")}
    saved = out / "run.json"
    if saved.exists():
        before = json.loads(saved.read_text())
        changed = {k: (before.get(k), v) for k, v in settings.items() if k not in ("epochs", "device")
                   and before.get(k) != v}
        if changed:
            raise ValueError(f"{out} holds a run with other settings "
                             f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in changed.items())}); "
                             f"use a new --out or the same options")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = DeepClusterConfig(**{name: getattr(args, name) for name in vars(DeepClusterConfig())})
    dataset = _load(settings, args.split, args.n)
    model = _model(settings, dataset.image_size)

    def log(history: list[dict]) -> None:
        row = history[-1]
        if not saved.exists():  # written with the first checkpoint, so a run that failed leaves nothing
            saved.write_text(json.dumps(settings, indent=1))
        write_history(history, out)
        print(f"epoch {row['epoch']}: loss {row['loss']:.3f}  NMI labels {row['nmi_labels']:.3f}  NMI t-1 "
              f"{row['nmi_prev']:.3f}  effective k {row['n_effective']:.1f}  ({row['time_extract']:.1f} s "
              f"extract, {row['time_cluster']:.1f} s cluster, {row['time_train']:.1f} s train)", flush=True)

    run = train_deepcluster(model, dataset, config, out_dir=out, device=args.device,
                            progress=not args.no_progress, on_epoch_end=log)
    write_history(run.history, out)
    print_table(run.history)
    return 0


def print_table(history: list[dict]) -> None:
    """The history as a fixed-width table."""
    print(f"{'epoch':>5} {'loss':>7} {'NMI lab':>7} {'NMI t-1':>7} {'empty':>5} {'min':>5} {'max':>5} "
          f"{'eff. k':>7} {'s/epoch':>8}")
    for r in history:
        seconds = r["time_extract"] + r["time_cluster"] + r["time_train"]
        print(f"{r['epoch']:>5} {r['loss']:>7.3f} {r['nmi_labels']:>7.3f} {r['nmi_prev']:>7.3f} {r['n_empty']:>5} "
              f"{r['size_min']:>5} {r['size_max']:>5} {r['n_effective']:>7.1f} {seconds:>8.1f}")


def probe(args: argparse.Namespace) -> int:
    run = Path(args.run)
    if not (run / "run.json").is_file() or not (run / "checkpoint.pt").is_file():
        raise FileNotFoundError(f"{run} has no run.json and checkpoint.pt; train first with "
                                f"'dctutor train --out {run}'")
    settings = json.loads((run / "run.json").read_text())
    train_ds = _load(settings, settings["split"], settings["n"])
    test_ds = _load(settings, args.test_split, args.test_n)
    model = _model(settings, train_ds.image_size)
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    model.top_layer = torch.nn.Linear(model.fc_dim, state["config"]["k"])
    model.load_state_dict(state["model"])
    rows = compare_with_random(model, train_ds, test_ds, layers=args.layers, epochs=args.epochs, knn_k=args.knn_k,
                               min_steps=args.min_steps, device=args.device)
    print(f"test accuracy (%) after {state['epoch'] + 1} epochs, {len(test_ds)} {args.test_split} images")
    print(f"{'layer':>8} {'dim':>6} {'trained':>8} {'random':>8} {'gain':>7}")
    for r in rows:
        print(f"{r['layer']:>8} {r['dim'] or '':>6} {100 * r['trained']:>8.1f} {100 * r['random']:>8.1f} "
              f"{100 * r['gain']:>+7.1f}")
    (run / "probe.json").write_text(json.dumps(jsonable(rows), indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dctutor`` and the ``dctutor`` script."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return train(args) if args.command == "train" else probe(args)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as err:
        parser.exit(2, f"dctutor {args.command}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
