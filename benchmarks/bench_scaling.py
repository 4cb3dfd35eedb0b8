"""One process against several: the same DeepCluster run through ``dctutor train`` and through torchrun.

    python benchmarks/bench_scaling.py --nproc 2 --n 2000                    # CPU processes (gloo)
    python benchmarks/bench_scaling.py --nproc 4 --device cuda --n 50000 \\
        --data ../shared/data/cifar10-jpeg.tar.gz --width 1.0 --k 1000     # four GPUs (NCCL)

Trains the same configuration twice, in fresh folders: once as one process, once as ``--nproc``
processes started by ``torchrun --standalone``, with the same global batch. On CPUs the single
process gets all the threads the group gets (``--threads`` per process times ``--nproc``), so the
comparison is at equal cores. Prints seconds per epoch by phase (the first epoch, which pays for
warm-up, is left out) and how close the two runs' pseudo-labels stay (NMI with the labels and the
loss, per epoch), and saves the numbers to ``--json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from dctutor.runs import write_json

from bench_deepcluster import data_folder

PHASES = ("time_extract", "time_cluster", "time_train")


def train(launcher: list[str], out: Path, options: list[str], threads: int) -> list[dict]:
    """Run ``dctutor train`` under ``launcher`` into ``out``; its history."""
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([*launcher, "-m", "dctutor", "train", *options, "--threads", str(threads),
                           "--no-progress", "--out", str(out)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench_scaling: {' '.join(launcher)} failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "history.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--data", default="shapes", help="'shapes', or a CIFAR-10 JPEG tarball or folder")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None, help="default benchmarks/results/scaling_<device>.json")
    args = ap.parse_args()
    dataset = "shapes" if args.data == "shapes" else f"folder:{data_folder(args.data)}"
    options = ["--dataset", dataset, "--n-images", str(args.n), "--width", str(args.width), "--k", str(args.k),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--device", args.device]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc)]
    with tempfile.TemporaryDirectory() as tmp:
        one = train([sys.executable], Path(tmp) / "one", options, args.threads * args.nproc)
        many = train(torchrun, Path(tmp) / "many", options, args.threads)
    hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    if args.device.startswith("cuda"):
        import torch

        hardware = f"{torch.cuda.get_device_name()} x{args.nproc}"
    mean = {name: {p: sum(r[p] for r in h[1:]) / len(h[1:]) for p in PHASES} for name, h in (("one", one), ("many", many))}
    print(f"DeepCluster, {args.n} images ({args.data.rsplit('/', 1)[-1]}), AlexNet width {args.width}, k {args.k}, "
          f"global batch {args.batch_size}, {args.device}; {hardware}")
    print(f"1 process x {args.threads * args.nproc} threads against {args.nproc} processes x {args.threads}; "
          f"means of epochs 1-{args.epochs - 1}\n")
    print("| phase | 1 process (s) | " + f"{args.nproc} processes (s) | speed-up |\n|---|---:|---:|---:|")
    for p in (*PHASES, "epoch"):
        a = sum(mean["one"].values()) if p == "epoch" else mean["one"][p]
        b = sum(mean["many"].values()) if p == "epoch" else mean["many"][p]
        print(f"| {p.removeprefix('time_')} | {a:.2f} | {b:.2f} | {a / b:.2f}x |")
    print("\n| epoch | loss (1 / N) | NMI labels (1 / N) |\n|---|---|---|")
    for a, b in zip(one, many):
        print(f"| {a['epoch']} | {a['loss']:.3f} / {b['loss']:.3f} | {a['nmi_labels']:.3f} / {b['nmi_labels']:.3f} |")
    out = args.json or f"benchmarks/results/scaling_{args.device.split(':')[0]}.json"
    write_json(out, {"args": vars(args) | {"data": args.data.rsplit("/", 1)[-1]}, "hardware": hardware,
                     "one": one, "many": many, "mean": mean})
    print(f"saved {out}")


if __name__ == "__main__":
    main()
