"""Does the linear-probe recipe change the verdict? The protocol's probe row, measured on CIFAR-10.

    PYTHONPATH=.:benchmarks python benchmarks/bench_probe_recipe.py --run /tmp/dc_c20k \\
        --data ../shared/data/cifar10-jpeg.tar.gz --n 10000 --n-test 5000

``--run`` is a folder written by ``dctutor train`` on CIFAR-10. Its network and a random-init twin
are probed on every conv layer twice: with the book's recipe (:func:`dctutor.evaluate.linear_probe`:
Adam on fixed, standardised features pooled to at most 4 096 dimensions, one view, weight decay
chosen on a held-out tenth of train) and with the reference code's (:func:`dctutor.evaluate.reference_probe`:
SGD with momentum on about 9 000 dimensions, new random crops and flips every epoch, centre
crop at test). Prints test accuracy per layer and recipe; numbers only go to ``--json``.
"""
from __future__ import annotations

import argparse
import time

from bench_deepcluster import data_folder
from dctutor.data import load_dataset
from dctutor.evaluate import linear_probe, random_like, reference_probe
from dctutor.runs import describe_run, load_model, write_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a folder written by 'dctutor train' on CIFAR-10")
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    ap.add_argument("--n", type=int, default=10000, help="training images of the probes")
    ap.add_argument("--n-test", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=30, help="epochs of the reference recipe (it uses 90)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="benchmarks/results/probe_recipe_cifar10_cpu.json")
    args = ap.parse_args()
    root = data_folder(args.data)
    train = load_dataset(f"folder:{root}", "train", n=args.n, seed=args.seed)
    test = load_dataset(f"folder:{root}", "test", n=args.n_test, seed=args.seed)
    nets = {"DeepCluster": load_model(args.run)}
    nets["random"] = random_like(nets["DeepCluster"], args.seed)
    rows, seconds = [], {}
    for name, net in nets.items():
        t0 = time.perf_counter()
        book = linear_probe(net, train, test, seed=args.seed, device=args.device)
        t1 = time.perf_counter()
        ref = reference_probe(net, train, test, epochs=args.epochs, seed=args.seed, device=args.device)
        seconds[name] = {"book": t1 - t0, "reference": time.perf_counter() - t1}
        rows += [{"init": name, "recipe": "book", **r} for r in book]
        rows += [{"init": name, "recipe": "reference", **r} for r in ref]
    layers = [r["layer"] for r in rows if r["init"] == "DeepCluster" and r["recipe"] == "book"]
    acc = {(r["init"], r["recipe"], r["layer"]): 100 * r["accuracy"] for r in rows}
    print(f"{len(train)} train / {len(test)} test CIFAR-10 images; test accuracy (%)\n")
    print("| layer | book: DeepCluster | book: random | reference: DeepCluster | reference: random |")
    print("|---|---:|---:|---:|---:|")
    for layer in layers:
        cells = [acc[init, recipe, layer] for recipe in ("book", "reference") for init in ("DeepCluster", "random")]
        print(f"| {layer} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    print("\nseconds:", {k: {r: round(s) for r, s in v.items()} for k, v in seconds.items()})
    write_json(args.json, {"args": vars(args) | {"data": "cifar10-jpeg", "run": describe_run(args.run)},
                            "rows": rows, "seconds": seconds})
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
