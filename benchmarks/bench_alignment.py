"""Does the initial alignment (IA) of a random network predict DeepCluster's final accuracy? CIFAR-10.

    PYTHONPATH=.:benchmarks python benchmarks/bench_alignment.py --data ../shared/data/cifar10-jpeg.tar.gz

Mustapha, Khreich and Masri (2022, Sec. 4.1) define IA as the NMI between the true labels and k-means
on the features of a randomly initialised network, and find that across seeds it tracks the accuracy
the trained network reaches on CIFAR-10 (their Fig. 3c, Appendix A.1). This script: (1) samples the IA
distribution over ``--ia-seeds`` random AlexNets for every k of ``--ia-ks`` (one forward pass and one
k-means each, :func:`dctutor.alignment.initial_alignment`); (2) picks ``--runs`` seeds spread over the
distribution at ``--k``, trains DeepCluster from each for ``--epochs`` epochs and probes conv5 linearly
on the test images (chapter 6's :func:`dctutor.labs.alignment.train_and_probe`); (3) prints Pearson's
r between IA and accuracy with its Fisher interval, and a markdown table. ``--data`` is the CIFAR-10
JPEG tarball, an unpacked ImageFolder tree with train/ and test/, or ``shapes`` (offline, for a quick
test). Saves numbers only (no image) to ``--json``.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from dctutor.alignment import initial_alignment
from dctutor.data import load_dataset
from dctutor.deepcluster import DeepClusterConfig
from dctutor.labs.alignment import spread_seeds, train_and_probe
from dctutor.metrics import correlation
from dctutor.models import alexnet, small_input_for
from dctutor.runs import write_json

from bench_deepcluster import data_folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz", help="tarball, folder or 'shapes'")
    ap.add_argument("--n", type=int, default=10000, help="training images (random subset of train)")
    ap.add_argument("--n-test", type=int, default=2000, help="test images for the linear probe")
    ap.add_argument("--k", type=int, default=300, help="clusters of the trained runs")
    ap.add_argument("--ia-ks", type=int, nargs="+", default=[10, 100, 300, 1000], help="k of the IA distributions")
    ap.add_argument("--ia-seeds", type=int, default=50, help="random networks per k for the IA distributions")
    ap.add_argument("--runs", type=int, default=8, help="seeds trained, spread over the IA distribution at --k")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--passes", type=int, default=1, help="passes over the images per clustering")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--pca-dim", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--probe-epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="benchmarks/results/alignment_cifar10.json")
    args = ap.parse_args()
    if args.runs < 2:
        ap.error("--runs must be at least 2 (a correlation needs two points; the study's question needs 5 or more)")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.data == "shapes":
        train = load_dataset("shapes", "train", n=args.n, seed=0)
        test = load_dataset("shapes", "test", n=args.n_test, seed=0)
    else:
        root = data_folder(args.data)
        train = load_dataset(f"folder:{root}", "train", n=args.n, seed=0)
        test = load_dataset(f"folder:{root}", "test", n=args.n_test, seed=0)
    small = small_input_for(train.image_size)
    pca_dim = min(args.pca_dim, len(train) // 4)

    def factory(k: int):
        return lambda seed: alexnet(k, small_input=small, width=args.width, seed=seed)

    ks = sorted(set(args.ia_ks) | {args.k})
    ia_rows = []
    for k in ks:
        rows = initial_alignment(factory(k), train, k, range(args.ia_seeds), dim=pca_dim, device=args.device)
        ia = np.array([r["ia"] for r in rows])
        print(f"IA at k = {k}: median {np.median(ia):.4f}, range {ia.min():.4f} - {ia.max():.4f} "
              f"({np.mean([r['seconds'] for r in rows]):.1f} s per seed)", flush=True)
        ia_rows += rows
    at_k = [r for r in ia_rows if r["k"] == args.k]
    runs = []
    for seed in spread_seeds(at_k, min(args.runs, len(at_k))):
        config = DeepClusterConfig(k=args.k, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                                   pca_dim=pca_dim, train_passes=args.passes, seed=seed)
        row = train_and_probe(factory(args.k), train, test, config, probe_epochs=args.probe_epochs,
                              device=args.device)
        runs.append({"ia": next(r["ia"] for r in at_k if r["seed"] == seed), **row})
        print(f"seed {seed}: IA {runs[-1]['ia']:.4f} -> accuracy {100 * row['accuracy']:.1f}% "
              f"(NMI last epoch {row['nmi_last']:.3f}, "
              f"{(row['seconds_clustering'] + row['seconds_training']) / 60:.1f} min)", flush=True)
    corr = correlation([r["ia"] for r in runs], [r["accuracy"] for r in runs])
    minutes = (time.perf_counter() - start) / 60
    print(f"\n{len(train)} training / {len(test)} test images, AlexNet width {args.width}, k = {args.k}, "
          f"{args.epochs} epochs, {args.threads} threads ({platform.processor() or platform.machine()}), "
          f"{minutes:.0f} min\n")
    print("| k | seeds | median IA | min IA | max IA |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for k in ks:
        ia = np.array([r["ia"] for r in ia_rows if r["k"] == k])
        print(f"| {k} | {len(ia)} | {np.median(ia):.4f} | {ia.min():.4f} | {ia.max():.4f} |")
    print("\n| seed | IA | NMI epoch 0 | NMI last | conv5 probe accuracy |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in sorted(runs, key=lambda r: r["ia"]):
        print(f"| {r['seed']} | {r['ia']:.4f} | {r['nmi_first']:.4f} | {r['nmi_last']:.4f} | "
              f"{100 * r['accuracy']:.1f}% |")
    print(f"\nPearson r(IA, accuracy) = {corr['r']:.2f}, 95% interval [{corr['low']:.2f}, {corr['high']:.2f}] "
          f"(Fisher z, n = {corr['n']})")
    write_json(args.json, {"args": vars(args) | {"data": args.data.rsplit("/", 1)[-1]}, "n_train": len(train),
                           "n_test": len(test), "pca_dim": pca_dim, "ia": ia_rows, "runs": runs,
                           "correlation": corr, "minutes": minutes,
                           "machine": f"{args.threads} threads, {platform.processor() or platform.machine()}"})
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
