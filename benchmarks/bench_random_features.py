"""Chapters 1 and 2 on real images: what a random AlexNet's clusters follow, and what preprocessing does.

    python benchmarks/bench_random_features.py --data ../shared/data/cifar10-jpeg.tar.gz --n 5000

Chapter 1's measurement: k-means (k = 10) on the embedding of randomly initialised AlexNets, with and
without the Sobel layer, scored by NMI against the CIFAR-10 labels, one network per seed. Chapter 2's:
the same k-means (k = 100) on one network's raw, L2-normalised, PCA-whitened and whitened + L2 features,
scored by cluster sizes and NMI. Prints tables; saves numbers only (no image) to ``--json``.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from dctutor.data import load_dataset
from dctutor.features import extract_features
from dctutor.labs.alignment import random_init_nmi
from dctutor.labs.kmeans_steps import compare_preprocessing, preprocessing_variants
from dctutor.models import alexnet, small_input_for
from dctutor.runs import write_json

from bench_deepcluster import data_folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz", help="tarball or ImageFolder tree")
    ap.add_argument("--n", type=int, default=5000, help="training images (random subset)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/results/random_features_cifar10_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_dataset(f"folder:{data_folder(args.data)}", "train", n=args.n, seed=0)
    truth = data.targets.numpy()
    alignment = [row for sobel in (False, True)
                 for row in random_init_nmi(data, {"label": truth}, sobel=sobel, k=10, seeds=args.seeds,
                                            width=args.width)]
    print(f"chapter 1: NMI(k-means on a random AlexNet's features, CIFAR-10 labels), {len(data)} images, k = 10")
    print("| input | " + " | ".join(f"seed {s}" for s in args.seeds) + " | mean |")
    print("| --- |" + " ---: |" * (len(args.seeds) + 1))
    for sobel in (False, True):
        values = [r["nmi_label"] for r in alignment if r["sobel"] == sobel]
        print(f"| {'Sobel' if sobel else 'RGB'} | " + " | ".join(f"{v:.3f}" for v in values) +
              f" | {np.mean(values):.3f} |")
    net = alexnet(100, small_input=small_input_for(data.image_size), width=args.width, seed=args.seeds[0])
    features = extract_features(net, data, progress=False)
    rows = compare_preprocessing(preprocessing_variants(features, 256), truth, 100, seed=args.seeds[0])
    print(f"\nchapter 2: k-means (k = 100) on one random network's features, {len(data)} images")
    print("| features | dim | empty | largest | effective k | NMI |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['name']} | {r['dim']} | {r['n_empty']} | {r['largest']:.1%} | {r['n_effective']:.1f} | "
              f"{r['nmi']:.3f} |")
    minutes = (time.perf_counter() - start) / 60
    print(f"\n{args.threads} threads ({platform.processor() or platform.machine()}), {minutes:.1f} min")
    write_json(args.json, {"args": vars(args) | {"data": args.data.rsplit("/", 1)[-1]}, "n": len(data),
                           "alignment": alignment, "preprocessing": [{k: v for k, v in r.items() if k != "sizes"}
                                                                     | {"sizes": list(map(int, r["sizes"]))}
                                                                     for r in rows], "minutes": minutes})
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
