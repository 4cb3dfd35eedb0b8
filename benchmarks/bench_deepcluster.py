"""DeepCluster on real images for a fixed CPU budget, then linear probes and kNN against random init.

    python benchmarks/bench_deepcluster.py --data ../shared/data/cifar10-jpeg.tar.gz --n 20000 --minutes 40

``--data`` is the CIFAR-10 JPEG tarball (unpacked to a temporary folder) or an already unpacked
ImageFolder tree with ``train/`` and ``test/``. Training runs epoch after epoch and stops after the
epoch that crosses ``--minutes``; the run folder (``--run-dir``) holds the checkpoint, so the same
command resumes. Then every conv layer is probed linearly and fc7 by kNN on the test split, for the
trained network and a random-init twin (paper Sec. 4.3, Table 1's pattern). Prints markdown tables
and saves numbers only (no image) to ``--json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from dctutor.runs import jsonable
from dctutor.data import load_dataset
from dctutor.evaluate import compare_with_random
from dctutor.deepcluster import DeepClusterConfig, train_deepcluster
from dctutor.models import alexnet


class _OutOfTime(Exception):
    pass


def data_folder(path: str) -> Path:
    """A folder with train/ and test/: ``path`` itself, or the tarball unpacked to a temp dir."""
    p = Path(path)
    if p.is_dir():
        return p
    if not p.is_file():
        raise FileNotFoundError(f"--data {path} is neither a folder nor a tarball")
    out = Path(tempfile.mkdtemp(prefix="cifar10-jpeg-"))
    with tarfile.open(p) as tar:
        tar.extractall(out, filter="data")
    tops = [d for d in out.iterdir() if d.is_dir()]
    return tops[0] if len(tops) == 1 and not (out / "train").exists() else out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/cifar10-jpeg")
    ap.add_argument("--n", type=int, default=20000, help="training images (random subset of train)")
    ap.add_argument("--n-test", type=int, default=None, help="test images (default: the whole split)")
    ap.add_argument("--minutes", type=float, default=40.0, help="training budget; stops after the epoch crossing it")
    ap.add_argument("--max-epochs", type=int, default=500)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rgb", action="store_true", help="no Sobel layer")
    ap.add_argument("--seed", type=int, default=0, help="seed of the network and the loop (the data subset keeps 0)")
    ap.add_argument("--crop-scale", type=float, default=0.3, help="smallest crop area (reference code: 0.08)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--run-dir", default="/tmp/bench_deepcluster_run", help="checkpoints ('' for none)")
    ap.add_argument("--json", default="benchmarks/results/deepcluster_cifar10_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if torch.cuda.is_available() and args.device in ("auto", "cuda"):
        torch.backends.cudnn.benchmark = True

    root = data_folder(args.data)
    train = load_dataset(f"folder:{root}", "train", n=args.n, seed=0)
    test = load_dataset(f"folder:{root}", "test", n=args.n_test, seed=0)
    config = DeepClusterConfig(k=args.k, epochs=args.max_epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               crop_scale=args.crop_scale, precision=args.precision,
                               channels_last=args.channels_last)
    model = alexnet(args.k, sobel=not args.rgb, small_input=True, width=args.width, seed=args.seed)
    start, history = time.perf_counter(), []

    def stop_when_out_of_time(so_far: list[dict]) -> None:
        row = so_far[-1]
        history[:] = so_far
        print(f"epoch {row['epoch']}: loss {row['loss']:.3f} nmi_labels {row['nmi_labels']:.3f} "
              f"nmi_prev {row['nmi_prev']:.3f} n_eff {row['n_effective']:.1f} "
              f"extract {row['time_extract']:.2f}s cluster {row['time_cluster']:.2f}s "
              f"train {row['time_train']:.2f}s", flush=True)
        if time.perf_counter() - start > args.minutes * 60:
            raise _OutOfTime

    try:
        run = train_deepcluster(model, train, config, out_dir=args.run_dir or None, device=args.device, progress=False,
                                on_epoch_end=stop_when_out_of_time)
        history = run.history
    except _OutOfTime:
        pass
    train_minutes = (time.perf_counter() - start) / 60

    t0 = time.perf_counter()
    table = compare_with_random(model, train, test, knn_layers=["conv5", "fc6", "fc7"], device=args.device)
    probe_minutes = (time.perf_counter() - t0) / 60

    hardware = (torch.cuda.get_device_name() if next(model.parameters()).is_cuda
                else platform.processor() or platform.machine())
    timing = {key: sum(r[key] for r in history) / len(history)
              for key in ("time_extract", "time_cluster", "time_train")}
    print(f"\nDeepCluster, {len(train)} CIFAR-10 train images, {len(history)} epochs, width {args.width}, "
          f"k {args.k}, lr {args.lr}, batch {args.batch_size}, {'RGB' if args.rgb else 'Sobel'}, "
          f"{args.threads} threads ({hardware}), {args.precision}")
    print(f"time per epoch (mean): extraction {timing['time_extract']:.2f} s, clustering "
          f"{timing['time_cluster']:.2f} s, training {timing['time_train']:.2f} s; "
          f"training this session {train_minutes:.1f} min, evaluation {probe_minutes:.1f} min\n")
    print("| epoch | loss | NMI(labels) | NMI(t-1,t) | effective k |\n|---|---|---|---|---|")
    for r in history:
        print(f"| {r['epoch']} | {r['loss']:.3f} | {r['nmi_labels']:.3f} | {r['nmi_prev']:.3f} | "
              f"{r['n_effective']:.1f} |")
    print(f"\nTest accuracy (%) on {len(test)} test images: linear probe per layer, kNN (k=20) on conv5, fc6 and fc7\n")
    print("| layer | dim | DeepCluster | random init | gain |\n|---|---|---|---|---|")
    for r in table:
        print(f"| {r['layer']} | {r['dim'] or ''} | {100 * r['trained']:.1f} | {100 * r['random']:.1f} | "
              f"{100 * r['gain']:+.1f} |")
    best = max((r for r in table if r["layer"].startswith("conv")), key=lambda r: r["trained"])
    print(f"\nbest layer {best['layer']}: {100 * best['trained']:.1f} vs random {100 * best['random']:.1f} "
          f"({100 * best['gain']:+.1f} points); best random layer "
          f"{100 * max(r['random'] for r in table if r['layer'].startswith('conv')):.1f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jsonable({"args": vars(args) | {"data": Path(args.data).name}, "history": history,
                               "probe": table, "time_per_epoch": timing, "train_minutes": train_minutes,
                               "eval_minutes": probe_minutes, "hardware": hardware, "n_train": len(train), "n_test": len(test)}),
                              indent=1, allow_nan=False))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
