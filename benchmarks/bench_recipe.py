"""Search a DeepCluster recipe that learns on a CPU budget, choosing on held-out training images.

    PYTHONPATH=.:benchmarks python benchmarks/bench_recipe.py --data ../shared/data/cifar10-jpeg.tar.gz \
        --recipe paper --recipe k300 --json benchmarks/results/recipe_k300.json

The CIFAR-10 training split is shuffled once (seed 0): the first ``--n`` images train DeepCluster
(their labels are used only by the probe), the last ``--n-val`` are the validation set the choice is
made on. The test split is never read here, so the recipe ``bench_deepcluster.py`` then reports on
the test set was not chosen on it. Every recipe gets the same number of passes over the images
(``--passes``: epochs x train_passes), so a recipe that reclusters less often is not handed more
training. Each row: final loss against log k, NMI with the labels, the best conv layer's linear
probe on the validation images for the trained network and its random-init twin, and the gap.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from bench_deepcluster import data_folder
from dctutor.data import load_dataset
from dctutor.deepcluster import DeepClusterConfig, train_deepcluster
from dctutor.evaluate import compare_with_random
from dctutor.models import alexnet
from dctutor.runs import read_json, write_json
from recipes import RECIPES, recipe


def split_train(root: Path, n: int, n_val: int):
    """The first ``n`` and the last ``n_val`` images of one fixed shuffle of the training split."""
    full = load_dataset(f"folder:{root}", "train")
    if n + n_val > len(full):
        raise SystemExit(f"--n {n} + --n-val {n_val} exceed the {len(full)} training images; lower one")
    order = np.random.default_rng(0).permutation(len(full))
    return full.subset(order[:n]), full.subset(order[-n_val:])


def run_recipe(name: str, train, val, passes: int, width: float, seed: int, device: str) -> dict:
    settings = recipe(name)
    epochs = max(1, passes // settings["train_passes"])
    config = DeepClusterConfig(epochs=epochs, seed=seed, **settings)
    model = alexnet(settings["k"], sobel=True, small_input=True, width=width, seed=seed)
    start = time.perf_counter()
    run = train_deepcluster(model, train, config, device=device, progress=False)
    minutes = (time.perf_counter() - start) / 60
    table = compare_with_random(model, train, val, knn_layers=["fc7"], seed=seed, device=device)
    convs = [r for r in table if r["layer"].startswith("conv")]
    best = max(convs, key=lambda r: r["trained"])
    best_random = max(r["random"] for r in convs)
    return {"recipe": name, "settings": settings, "epochs": epochs, "seed": seed, "train_minutes": minutes,
            "loss": [r["loss"] for r in run.history], "nmi_labels": [r["nmi_labels"] for r in run.history],
            "log_k": math.log(settings["k"]), "probe": table, "best_layer": best["layer"],
            "best_trained": best["trained"], "best_random": best_random, "gap": best["trained"] - best_random}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    ap.add_argument("--recipe", action="append", choices=sorted(RECIPES), help="repeatable; default: all")
    ap.add_argument("--n", type=int, default=10000, help="training images")
    ap.add_argument("--n-val", type=int, default=5000, help="held-out training images the choice is made on")
    ap.add_argument("--passes", type=int, default=30, help="passes over the images, the same for every recipe")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="benchmarks/results/recipe_search_cifar10_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, val = split_train(data_folder(args.data), args.n, args.n_val)
    out = Path(args.json)
    rows = read_json(out, "recipe search")["rows"] if out.exists() else []
    for name in args.recipe or list(RECIPES):
        row = run_recipe(name, train, val, args.passes, args.width, args.seed, args.device)
        rows = [r for r in rows if (r["recipe"], r["seed"]) != (name, args.seed)] + [row]
        write_json(out, {"n_train": len(train), "n_val": len(val), "passes": args.passes, "width": args.width,
                         "threads": args.threads, "rows": rows})
        print(f"{name}: loss {row['loss'][-1]:.2f} (log k {row['log_k']:.2f}), NMI {row['nmi_labels'][-1]:.3f}, "
              f"best {row['best_layer']} {100 * row['best_trained']:.1f} vs random {100 * row['best_random']:.1f} "
              f"({100 * row['gap']:+.1f}), {row['train_minutes']:.1f} min", flush=True)


if __name__ == "__main__":
    main()
