"""Command line for long runs outside notebooks: ``python -m dctutor train|probe|transfer|prepare ...``.

    python -m dctutor prepare cifar10 --download --out data/cifar10-jpeg
    python -m dctutor train --dataset shapes --n 2000 --epochs 5 --k 50 --out runs/x
    python -m dctutor probe --run runs/x --test-n 1000
    python -m dctutor transfer --run runs/x --voc data --image-size 64

``train`` runs :func:`dctutor.deepcluster.train_deepcluster` with every field of its config as an
option, on any registered backbone (``--arch``); running it again on the same ``--out`` resumes
(raise ``--epochs`` to go further), from any directory and after the run folder or a ``folder:``
data set moved: the checkpoint's pixel fingerprint, not the typed paths, says whether the data is the
same. Started by ``torchrun --nproc_per_node N -m dctutor train ...`` it shares every epoch between
N processes (:mod:`dctutor.distributed`), and a run resumes with any number of them. It writes ``run.json`` (the settings, so ``probe`` can rebuild
the data) and ``history.csv``/``history.json`` after every epoch (:mod:`dctutor.runs`). ``probe``
prints the linear probe per layer and the kNN accuracy beside a random-init twin (Sec. 4.3),
saving ``probe.json``; it refuses to score on the images the run trained on. ``transfer`` trains
the run's network and a random twin on VOC 2007 (Sec. 4.4) and saves ``transfer.json``. ``prepare``
writes CIFAR-10 or STL-10, from torchvision's copy of the public files, as the JPEG folder tree the
benchmarks read (:mod:`dctutor.prepare`). Every
error is one line naming the problem and the fix that fits it (free space, permissions, another
device, other options, changed data, or a rerun after a transient interruption); Ctrl-C says how to
resume. An option that would change nothing for the chosen architecture or mode (``--width`` of a
ResNet, ``--workers`` without ``--stream``) is refused, and every output path is checked before any
work starts.
"""
from __future__ import annotations

import argparse
import errno
import signal
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

import torch

from .data import DATASETS, MissingDataError, default_image_size, load_dataset
from .deepcluster import DeepClusterConfig, train_deepcluster
from .distributed import from_environment
from .evaluate import MIN_STEPS, compare_with_random, random_like
from .models import BACKBONES, small_input_for
from .prepare import SOURCES, prepare
from .runs import (CHECKPOINT, SETTINGS, format_history, load_checkpoint, load_model, model_from_state, read_json,
                   write_history, write_json)
from .transfer import CROPS, MODES, compare_transfer
from .voc import VOC_CLASSES, VOCClassification

# Options that may change when a run is resumed: they do not change what is computed.
_RESUMABLE = ("epochs", "device", "no_progress", "download", "world_size", "stream", "workers")
# What a run killed before its first complete save can leave besides run.json: temporary files the
# next save overwrites. They never make a folder foreign.
_LEFTOVERS = (CHECKPOINT + ".tmp", SETTINGS + ".tmp")
# Data sets torchvision reads from --data-root (and --download fetches); the others ignore both.
_ROOTED = ("cifar10", "stl10")
# Defaults of the options that apply only to some architectures or modes: None in the parser, so
# that an option given where it does nothing can be refused.
_WIDTH, _WORKERS, _DATA_ROOT = 0.5, 2, "data"
_TRANSFER_DEFAULTS = {"epochs_fc": 30, "epochs_all": 5, "views": 4}
# Where things are, not what they are: a run resumes from any working directory, after its folder or
# its data moved. Whether the images are the same is decided by the pixels' fingerprint that the
# checkpoint holds (train_deepcluster refuses other images), never by how a path was typed.
_PATHS = ("out", "data_root")


def _dataset_name(value: str) -> str:
    if value.startswith("folder:"):
        if not value[len("folder:"):].strip():
            raise argparse.ArgumentTypeError("folder: needs a path, e.g. --dataset folder:/data/cifar10-jpeg")
        return value
    if value in DATASETS:
        return value
    raise argparse.ArgumentTypeError(f"unknown dataset {value!r}; choose one of {', '.join(DATASETS)}")


def _folder(value: str) -> str:
    if not value.strip():
        raise argparse.ArgumentTypeError("needs a folder name, e.g. runs/cifar")
    return value


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


def _count_or_none(low: int):
    count = _count(low)

    def parse(value: str) -> int | None:
        return None if value.lower() == "none" else count(value)
    return parse


def _number(positive: bool):
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if not abs(number) < float("inf") or number < 0 or (positive and number == 0):
            raise argparse.ArgumentTypeError(f"{value} must be a finite {'positive' if positive else '>= 0'} number")
        return number
    return parse


def _device(value: str) -> str:
    kind, _, index = value.partition(":")
    if kind in ("auto", "cpu") and not index or kind == "cuda" and (not index or index.isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"{value!r} is not a device dctutor runs on; use auto, cpu, cuda or cuda:N "
                                     f"(mps, meta and other torch backends are not supported)")


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not true or false")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dctutor", description="DeepCluster (Caron et al., ECCV 2018) runs.",
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a network with DeepCluster (resumes from --out)", allow_abbrev=False)
    train.add_argument("--dataset", type=_dataset_name, default="shapes", help=f"one of {', '.join(DATASETS)}")
    train.add_argument("--split", default="train", help="split to train on (stl10: train or unlabeled)")
    train.add_argument("--n", "--n-images", dest="n", type=_count(2), default=None,
                       help="number of images (default: all; shapes: 2000); under torchrun spell it --n-images")
    train.add_argument("--image-size", type=_count(8), default=None, help="resize to this many pixels")
    train.add_argument("--data-root", default=None,
                       help=f"where cifar10/stl10 live or are downloaded to (default {_DATA_ROOT})")
    train.add_argument("--download", action="store_true", help="let torchvision download cifar10/stl10")
    train.add_argument("--stream", action="store_true",
                       help="folder: data only; decode each batch from disk (data larger than memory)")
    train.add_argument("--workers", type=_count(0), default=None,
                       help=f"decoding processes with --stream (default {_WORKERS})")
    train.add_argument("--out", type=_folder, required=True, help="output folder: checkpoint, history.csv/json")
    train.add_argument("--arch", choices=list(BACKBONES), default="alexnet", help="backbone (default alexnet)")
    train.add_argument("--width", type=_number(True), default=None,
                       help=f"AlexNet channel multiplier (default {_WIDTH}; 1.0 = paper)")
    train.add_argument("--rgb", action="store_true", help="no Sobel layer (raw RGB input)")
    train.add_argument("--small-input", choices=("auto", "yes", "no"), default="auto",
                       help="small-image stem (auto: yes below 128 px)")
    train.add_argument("--device", type=_device, default="auto", help="auto, cpu or cuda")
    train.add_argument("--threads", type=_count(1), default=None, help="CPU threads for torch (fixed per run)")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    optional = {f.name for f in fields(DeepClusterConfig) if f.type == "int | None"}
    for name, default in vars(DeepClusterConfig()).items():
        flag = "--" + name.replace("_", "-")
        if name in optional:  # e.g. --halt-clustering-after 5, or none (the default)
            train.add_argument(flag, type=_count_or_none(1), default=default, metavar="{N,none}",
                               help=f"(default {str(default).lower()})")
        elif isinstance(default, bool):
            train.add_argument(flag, type=_bool, default=default, metavar="{true,false}", help=f"(default {default})")
        elif isinstance(default, int):
            train.add_argument(flag, type=_count(0), default=default, help=f"(default {default})")
        elif isinstance(default, float):
            train.add_argument(flag, type=_number(name == "lr"), default=default, help=f"(default {default})")
        else:
            train.add_argument(flag, default=default, help=f"(default {default!r})")
    probe = sub.add_parser("probe", help="linear probes and kNN of a trained run against random init",
                           allow_abbrev=False)
    probe.add_argument("--run", type=_folder, required=True, help="a folder written by 'dctutor train'")
    probe.add_argument("--test-split", default="test", help="split to score on (never the training split)")
    probe.add_argument("--test-n", type=_count(2), default=None, help="number of test images (default: all)")
    probe.add_argument("--epochs", type=_count(1), default=10, help="epochs of the linear classifiers")
    probe.add_argument("--layers", nargs="+", default=None,
                       help="layers to probe (default: the backbone's conv layers)")
    probe.add_argument("--knn-layers", nargs="+", default=None, help="layers for kNN (default: the last one)")
    probe.add_argument("--min-steps", type=_count(1), default=MIN_STEPS,
                       help="at least this many steps per linear classifier")
    probe.add_argument("--knn-k", type=_count(1), default=20, help="neighbours of the kNN classifier")
    probe.add_argument("--device", type=_device, default="auto", help="auto, cpu or cuda")
    transfer = sub.add_parser("transfer", help="VOC 2007 classification from a trained run and a random twin",
                              allow_abbrev=False)
    transfer.add_argument("--run", type=_folder, required=True, help="a folder written by 'dctutor train'")
    transfer.add_argument("--voc", type=_folder, default="data", help="the folder that holds VOCdevkit/")
    transfer.add_argument("--train-split", default="train", help="VOC split to train on")
    transfer.add_argument("--test-split", default="val", help="VOC split to score on")
    transfer.add_argument("--image-size", type=_count(16), default=64, help="side in pixels (the paper: 224)")
    transfer.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="Table 2 settings")
    transfer.add_argument("--epochs-fc", type=_count(1), default=None, help="epochs of FC6-8 (cached features; "
                          f"default {_TRANSFER_DEFAULTS['epochs_fc']})")
    transfer.add_argument("--epochs-all", type=_count(1), default=None,
                          help=f"epochs of ALL (default {_TRANSFER_DEFAULTS['epochs_all']})")
    transfer.add_argument("--views", type=_count(1), default=None, help="augmented views cached per image for FC6-8 "
                          f"(default {_TRANSFER_DEFAULTS['views']})")
    transfer.add_argument("--crops", type=int, choices=CROPS, default=10, help="test-time crops")
    transfer.add_argument("--seed", type=_count(0), default=0, help="seed of the random twin and the transfer")
    transfer.add_argument("--device", type=_device, default="auto", help="auto, cpu or cuda")
    transfer.add_argument("--json", default=None, help="where to save the numbers (default <run>/transfer.json)")
    make = sub.add_parser("prepare", help="write CIFAR-10 or STL-10 as the JPEG folder tree the benchmarks read",
                          allow_abbrev=False)
    make.add_argument("name", choices=SOURCES, help="the data set")
    make.add_argument("--out", type=_folder, required=True,
                      help="the folder to create (train/<class>/*.jpg, test/...)")
    make.add_argument("--data-root", default="data", help="where torchvision keeps (or downloads) the public files")
    make.add_argument("--download", action="store_true", help="fetch the public files first (needs internet)")
    return parser


def _load(settings: dict, split: str, n: int | None):
    return load_dataset(settings["dataset"], split, n=n, image_size=settings["image_size"], seed=settings["seed"],
                        root=settings["data_root"], download=settings["download"],
                        stream=settings.get("stream", False), workers=settings.get("workers", 2))


def _model(settings: dict, image_size: int):
    small = {"auto": small_input_for(image_size), "yes": True, "no": False}[settings["small_input"]]
    # --width scales AlexNet only; its factory derives fc_dim from it, as everywhere else.
    options = {"width": settings["width"]} if settings["arch"] == "alexnet" else {}
    return BACKBONES[settings["arch"]](settings["k"], sobel=not settings["rgb"], small_input=small,
                                       seed=settings["seed"], **options)


def _identity(settings: dict, key: str):
    """The part of a setting that defines the run: a folder data set is 'folder:' wherever it lives,
    and the width of a backbone that has none (older run.json files recorded AlexNet's default) is nothing."""
    value = settings[key]
    if key == "width" and settings.get("arch", "alexnet") != "alexnet":
        return None
    return "folder:" if key == "dataset" and isinstance(value, str) and value.startswith("folder:") else value


def _saved_settings(out: Path) -> dict | None:
    """The settings of the run in ``out`` that a resume must keep, or None when nothing was trained there.

    A run writes ``run.json`` before its first checkpoint, so a kill at any instant leaves one of: no
    folder or an empty one; only temporary files (``_LEFTOVERS``); ``run.json`` without a checkpoint
    (nothing trained yet: the run starts afresh, with any settings); both (a resume). A checkpoint
    without ``run.json`` (a kill between the two in an older dctutor, or a run started from Python)
    resumes too: the checkpoint's own configuration, architecture and pixel fingerprint are checked
    against this run's. Any other non-empty folder is refused, so nothing foreign is overwritten.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder")
    if not out.is_dir():
        return None
    names = {entry.name for entry in out.iterdir()}
    if CHECKPOINT in names:
        return read_json(out / SETTINGS) if SETTINGS in names else None
    foreign = sorted(names - {SETTINGS, *_LEFTOVERS})
    if foreign and SETTINGS not in names:
        raise ValueError(f"--out {out} is not empty and holds no dctutor run (it has {', '.join(foreign[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''} but no {SETTINGS} or {CHECKPOINT}); pick a new or "
                         f"empty folder so nothing there is overwritten")
    return None


def _check_writable(path: Path, option: str) -> None:
    """Refuse, before any work, an output folder (created later if missing) that cannot be written:
    a file in the way, no permission, a read-only file system."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{option} {path}: {existing} is a file, not a folder; pass another path")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise OSError(err.errno, f"{option} {path} cannot be written ({err.strerror})", str(existing)) from None


def _check_train_options(args: argparse.Namespace) -> None:
    """Refuse an option that would change nothing in this run (for its architecture, data set or
    mode), then fill in the defaults of those that apply."""
    if args.width is not None and args.arch != "alexnet":
        raise ValueError(f"--width scales AlexNet's channels; {args.arch} has a fixed width, so --width {args.width:g} "
                         f"would change nothing: drop it (or use --arch alexnet)")
    if args.workers is not None and not args.stream:
        raise ValueError(f"--workers sets the decoding processes of --stream; without --stream the images are "
                         f"decoded once in this process, so drop --workers {args.workers} (or add --stream)")
    if args.stream and not args.dataset.startswith("folder:"):
        raise ValueError(f"--stream reads a folder: data set from disk; {args.dataset} is held in memory, so drop "
                         f"--stream (or pass --dataset folder:<path> for an ImageFolder tree)")
    if args.dataset not in _ROOTED:
        for flag, given in (("--data-root", args.data_root is not None), ("--download", args.download)):
            if given:
                raise ValueError(f"{flag} is for {' and '.join(_ROOTED)} (read through torchvision); {args.dataset} "
                                 f"does not use it, so drop {flag}")
    if args.width is None and args.arch == "alexnet":
        args.width = _WIDTH
    args.workers = _WORKERS if args.workers is None else args.workers
    args.data_root = _DATA_ROOT if args.data_root is None else args.data_root


def _check_same_run(out: Path, before: dict, settings: dict, defaults: dict) -> None:
    # A setting missing from an older run.json had its default then, as options added later do.
    before = defaults | before
    changed = {key: (before.get(key), settings[key]) for key in settings
               if key not in _RESUMABLE + _PATHS and _identity(before, key) != _identity(settings, key)}
    if changed:
        raise ValueError(f"{out} holds a run with other settings "
                         f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in changed.items())}); "
                         f"use a new --out or the same options")


def _absolute(settings: dict) -> dict:
    """``settings`` with its data paths made absolute, so ``probe`` finds the data from any directory."""
    dataset = settings["dataset"]
    if dataset.startswith("folder:"):
        dataset = "folder:" + str(Path(dataset[len("folder:"):]).expanduser().resolve())
    return settings | {"dataset": dataset, "data_root": str(Path(settings["data_root"]).expanduser().resolve())}


def train(args: argparse.Namespace) -> int:
    group = from_environment()  # torchrun's processes, or this one alone
    _check_train_options(args)
    out = Path(args.out)
    before = _saved_settings(out)
    if group.is_main:  # the one process that writes; another's probe file could look foreign to it
        _check_writable(out, "--out")
    # Results depend on the thread count (float sums are ordered per thread), so a run keeps its own:
    # a resume without --threads takes the saved one.
    threads = args.threads or (before or {}).get("threads")
    if isinstance(threads, int) and threads >= 1:
        torch.set_num_threads(threads)
    settings = _absolute({key: value for key, value in vars(args).items() if key != "command"})
    settings["threads"] = torch.get_num_threads()
    settings["world_size"] = group.world_size
    if before is not None:
        # A run.json older than the thread rule does not say; the run keeps today's count.
        defaults = vars(_parser().parse_args(["train", "--out", str(out)])) | {"threads": settings["threads"]}
        _check_same_run(out, before, settings, defaults)
    config = DeepClusterConfig(**{name: getattr(args, name) for name in vars(DeepClusterConfig())})
    # The network first: a stem too coarse for the images, or a width too large for memory, fails
    # before minutes of decoding.
    size = args.image_size or default_image_size(args.dataset)
    model = _model(settings, size)
    model.check_image_size(size)
    dataset = _load(settings, args.split, args.n)

    def record() -> None:
        # Before the first checkpoint (atomically), so a kill at any instant leaves a folder that resumes
        # or starts afresh; on a resume, after the checkpoint has confirmed the pixels are the same, so it
        # records where the data is now.
        write_json(out / SETTINGS, settings)

    def log(history: list[dict]) -> None:
        row = history[-1]
        write_history(history, out)
        print(f"epoch {row['epoch']}: loss {row['loss']:.3f}  NMI labels {row['nmi_labels']:.3f}  NMI t-1 "
              f"{row['nmi_prev']:.3f}  largest {row['largest']:.1%}  effective k {row['n_effective']:.1f}  "
              f"({row['time_extract']:.1f} s extract, {row['time_cluster']:.1f} s cluster, "
              f"{row['time_train']:.1f} s train)", flush=True)

    run = train_deepcluster(model, dataset, config, out_dir=out, device=args.device,
                            progress=not args.no_progress and group.is_main, on_epoch_end=log, group=group,
                            on_start=record)
    if not group.is_main:  # rank 0 writes the files and prints the table
        return 0
    write_history(run.history, out)
    print(format_history(run.history))
    return 0


def _run_settings(run: Path) -> dict:
    if not (run / SETTINGS).is_file() or not (run / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{run} has no {SETTINGS} and {CHECKPOINT}; train first with "
                                f"'dctutor train --out {run}'")
    settings = read_json(run / SETTINGS)
    # What probe reads to rebuild the data; data_root and download fall back to train's defaults.
    fields = {"dataset": (str,), "split": (str,), "n": (int, type(None)), "image_size": (int, type(None)),
              "seed": (int,), "data_root": (str,), "download": (bool,)}
    settings = {"data_root": "data", "download": False} | settings
    for key, types in fields.items():
        if key not in settings:
            raise ValueError(f"{run / SETTINGS} lacks {key!r} (written by another dctutor, or edited); run "
                             f"'dctutor train --out {run}' with the run's options to write it again")
        value = settings[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ValueError(f"{run / SETTINGS}: {key!r} must be {wanted}, got {value!r}; restore the file or "
                             f"run 'dctutor train --out {run}' with the run's options to write it again")
    return settings


def _check_held_out(settings: dict, split: str) -> None:
    if split == settings["split"]:
        raise ValueError(f"--test-split {split} is the split the run trained on; probes must score held-out "
                         f"images: pass another --test-split (e.g. test)")
    if settings["dataset"].startswith("folder:"):
        root = Path(settings["dataset"][len("folder:"):])
        if not (root / split).is_dir():
            raise ValueError(f"{root} has no {split}/ folder, so every split is the same images; give the tree "
                             f"train/ and {split}/ folders to probe on held-out images")


def probe(args: argparse.Namespace) -> int:
    run = Path(args.run)
    settings = _run_settings(run)
    _check_held_out(settings, args.test_split)
    _check_writable(run, "--run")
    state = load_checkpoint(run)
    model, epochs_done = model_from_state(state), state["epoch"] + 1
    train_ds = _load(settings, settings["split"], settings["n"])
    test_ds = _load(settings, args.test_split, args.test_n)
    rows = compare_with_random(model, train_ds, test_ds, layers=args.layers, knn_layers=args.knn_layers,
                               epochs=args.epochs, knn_k=args.knn_k, min_steps=args.min_steps, device=args.device)
    print(f"test accuracy (%) after {epochs_done} epochs, {len(test_ds)} {args.test_split} images")
    print(f"{'layer':>10} {'dim':>6} {'trained':>8} {'random':>8} {'gain':>7}")
    for r in rows:
        print(f"{r['layer']:>10} {r['dim'] or '':>6} {100 * r['trained']:>8.1f} {100 * r['random']:>8.1f} "
              f"{100 * r['gain']:>+7.1f}")
    write_json(run / "probe.json", rows)
    return 0


def transfer(args: argparse.Namespace) -> int:
    run = Path(args.run)
    if args.train_split == args.test_split:
        raise ValueError(f"--train-split and --test-split are both {args.train_split}; score on held-out images "
                         f"(train on train, report on val)")
    _check_transfer_options(args)
    pretrained = load_model(run)  # first: a missing run is named as such, not as a missing output folder
    target = Path(args.json) if args.json else run / "transfer.json"
    if target.is_dir():
        raise ValueError(f"--json {target} is a folder; pass a file name, e.g. {target / 'transfer.json'}")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"--json {target}: the folder {target.parent} does not exist; create it or pass "
                                f"another path (checked before training, so no result is lost)")
    _check_writable(target.parent, "--json" if args.json else "--run")
    train_set = VOCClassification(args.voc, args.train_split, image_size=args.image_size, progress=False)
    test_set = VOCClassification(args.voc, args.test_split, image_size=args.image_size, progress=False)
    rows = compare_transfer({"DeepCluster": pretrained, "Random": random_like(pretrained, args.seed)}, train_set,
                            test_set, modes=tuple(args.modes), epochs={"fc6-8": args.epochs_fc, "all": args.epochs_all},
                            n_crops=args.crops, views=args.views, seed=args.seed, device=args.device, progress=False)
    print(f"VOC 2007 {args.train_split} ({len(train_set)}) -> {args.test_split} ({len(test_set)}), "
          f"{args.image_size} px, {args.crops} crops")
    print(f"{'init':12s} {'setting':8s} {'mAP':>6s} {'VOC07':>6s} {'train s':>8s}")
    for r in rows:
        r["epochs"] = args.epochs_fc if r["mode"] == "fc6-8" else args.epochs_all
        print(f"{r['init']:12s} {r['mode'].upper():8s} {100 * r['map']:6.1f} {100 * r['map_voc07']:6.1f} "
              f"{r['train_s']:8.0f}")
    write_json(target, {"args": vars(args), "arch": pretrained.arch, "classes": list(VOC_CLASSES), "rows": rows})
    return 0


def _check_transfer_options(args: argparse.Namespace) -> None:
    """Refuse an option of a setting that is not run (``--epochs-all`` without ALL, ``--views`` without
    FC6-8), then fill in the defaults of those that apply."""
    used = {"epochs_fc": "fc6-8" in args.modes, "epochs_all": "all" in args.modes, "views": "fc6-8" in args.modes}
    for name, applies in used.items():
        value = getattr(args, name)
        if value is not None and not applies:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} {value} is for the {'FC6-8' if name != 'epochs_all' else 'ALL'} setting, which "
                             f"--modes {' '.join(args.modes)} does not run; drop {flag} or add that mode")
        if value is None:
            setattr(args, name, _TRANSFER_DEFAULTS[name])


# errno values by what fixes them.
_NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_NOT_ALLOWED = {errno.EACCES, errno.EPERM, errno.EROFS}
# Fragments of torch's messages, by what fixes them (torch raises RuntimeError for all of them).
_TORCH_CAUSES = (
    (("can't allocate memory", "not enough memory", "defaultcpuallocator"), "memory"),
    (("unexpected pos", "file write failed", "pytorchstreamwriter"), "space"),
    (("output size is too small", "kernel size can't be greater", "padded input size per channel"), "size"),
    (("meta tensor", "mps backend", "no kernel image", "invalid device ordinal"), "device"),
)


def prepare_command(args: argparse.Namespace) -> int:
    out = prepare(args.name, args.out, root=args.data_root, download=args.download)
    print(f"wrote {args.name} to {out}; benchmarks read it with --data {out}, load_dataset with "
          f"'folder:{out}'")
    return 0


def _explain(err: BaseException, command: str) -> str:
    """One line for a failure: what went wrong and the fix that fits it (free space, permissions,
    another device, other options, changed data), and "run the same command again" only where a
    rerun can help: after a transient interruption, or once the cause is fixed."""
    again = "run the same command again to resume" if command == "train" else "run the same command again"
    memory = ("lower --batch-size, --width or --n-images (with a new --out once a checkpoint exists: a run "
              "keeps its settings), or stream folder: data with --stream" if command == "train"
              else "lower --image-size (transfer) or --test-n (probe)")
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return f"the device ran out of memory; {memory}, or run on a device with more memory"
    if isinstance(err, MemoryError):  # ours already say what to lower; numpy's only how much it wanted
        if "stream" in str(err):
            return str(err)
        return f"{str(err) or 'out of memory'}; this machine ran out of memory: {memory}"
    if isinstance(err, MissingDataError):
        instead = ", or train on an ImageFolder copy with --dataset folder:<path>" if command == "train" else ""
        return (f"{err.name} is not under {err.root} (expected {err.expected}); pass --download to fetch it "
                f"(needs internet), point --data-root at the folder that holds it, or copy the files there{instead}")
    if isinstance(err, OSError) and err.strerror is not None:
        where = f"{err.strerror} ({err.filename or 'the output folder'})"
        if err.errno in _NO_SPACE:
            return (f"{where}; the disk is full or the file too large for it: free space there (or use a folder "
                    f"on another disk), then {again}")
        if err.errno in _NOT_ALLOWED:
            return f"{where}; change its permissions, or pick a path this user can read and write"
        if err.errno == errno.ENOENT:
            return f"{where}; check the path (a folder that vanished while running means the data changed)"
        return f"{where}; check the disk and the path, then {again}"
    if isinstance(err, RuntimeError) and not isinstance(err, NotImplementedError):
        text = str(err).strip()
        first = text.splitlines()[0][:300] if text else type(err).__name__
        cause = next((kind for parts, kind in _TORCH_CAUSES if any(part in text.lower() for part in parts)), None)
        if cause == "memory":
            return f"{first}; this machine ran out of memory: {memory}"
        if cause == "space":
            return f"{first}; writing failed, usually because the disk is full: free space, then {again}"
        if cause == "size":
            return f"{first}; the images are too small for this network: raise --image-size or use --small-input auto"
        if cause == "device":
            return f"{first}; this device cannot run dctutor: use --device cpu or cuda"
        return f"{first}; if it was a passing interruption, {again}; report it with the command line if it repeats"
    if isinstance(err, NotImplementedError):  # a torch operation the chosen device lacks
        return f"{str(err).splitlines()[0][:300] if str(err) else 'not implemented'}; use --device cpu or cuda"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m dctutor`` and the ``dctutor`` script."""
    parser = _parser()
    args = parser.parse_args(argv)
    command = {"train": train, "probe": probe, "transfer": transfer, "prepare": prepare_command}[args.command]
    # Both signals are set explicitly: a process started in the background inherits SIGINT ignored.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return command(args)
    except KeyboardInterrupt:
        where = getattr(args, "out", None) or getattr(args, "run", "")
        resume = ""
        if args.command == "train" and (Path(where) / CHECKPOINT).is_file():
            try:
                resume = f" from epoch {load_checkpoint(where)['epoch'] + 1}"
            except (ValueError, FileNotFoundError):
                resume = ""
        advice = f"run the same command again to resume{resume}" if args.command == "train" else "nothing was saved"
        print(f"\ndctutor {args.command}: interrupted; {advice}", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FloatingPointError, ImportError, MemoryError, OSError, RuntimeError) as err:
        parser.exit(2, f"dctutor {args.command}: error: {_explain(err, args.command)}\n")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
