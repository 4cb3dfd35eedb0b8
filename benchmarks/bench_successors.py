"""Chapter 7's four combinations on CIFAR-10 at equal budget: labeller (k-means or Sinkhorn) x head
(a fresh linear layer or the prototypes), several seeds, each probed against its random twin.

    PYTHONPATH=.:benchmarks python benchmarks/bench_successors.py --data ../shared/data/cifar10-jpeg.tar.gz \
        --seed 0 --seed 1 --seed 2

Each (combination, seed) trains on the first ``--n`` images of one fixed shuffle of the training
split, with the paper's recipe of ``recipes.py`` (so the four differ only in the two seams), and is
scored by linear probes on ``--n-test`` test images against the same network before training.
Results merge into one JSON per run of the script, so the seeds can run in separate processes; its
``summary`` is :func:`dctutor.labs.replicates.summarise_sweep`'s, as in chapter 7.
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
from dctutor.evidence import best_against_best
from dctutor.labs.replicates import summarise_sweep
from dctutor.labs.successors import SEAMS, id_changes
from dctutor.models import alexnet
from dctutor.runs import read_json, write_json
from recipes import recipe


def run_one(name: str, train, test, passes: int, width: float, seed: int, device: str) -> dict:
    settings = recipe("paper")
    config = DeepClusterConfig(epochs=passes // settings["train_passes"], seed=seed, **settings, **SEAMS[name])
    model = alexnet(config.k, sobel=True, small_input=True, width=width, seed=seed)
    start = time.perf_counter()
    run = train_deepcluster(model, train, config, device=device, progress=False)
    minutes = (time.perf_counter() - start) / 60
    table = compare_with_random(model, train, test, knn_layers=["fc7"], seed=seed, device=device)
    moves = id_changes(run.labels_per_epoch, config.k)
    return {"setting": name, "seed": seed, "train_minutes": minutes, "epochs": config.epochs,
            "loss": [r["loss"] for r in run.history], "nmi_labels": [r["nmi_labels"] for r in run.history],
            "largest": [r["largest"] for r in run.history], "seconds_cluster": [r["time_cluster"] for r in run.history],
            "k": config.k, "log_k": math.log(config.k), "probe": table, "gap": best_against_best(table),
            "best_trained": max(r["trained"] for r in table if r["layer"].startswith("conv")),
            "ids_changed": float(np.mean([m["changed"] for m in moves])),
            "ids_moved": float(np.mean([m["moved"] for m in moves]))}


def summarise(rows: list[dict]) -> dict:
    """The rows as :func:`dctutor.labs.replicates.summarise_sweep` compares settings everywhere in the
    book: per combination the did-it-train verdict and t intervals over the seeds (``trained``: the
    best trained conv layer; ``gain``: it minus the best random conv layer), and the best fitted
    combination's lead over each other one, paired by seed."""
    return summarise_sweep([{"setting": r["setting"], "seed": r["seed"], "k": r["k"], "loss": r["loss"][-1],
                             "nmi": r["nmi_labels"][-1], "trained": r["best_trained"], "gain": r["gap"]}
                            for r in rows], by="setting")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    ap.add_argument("--setting", action="append", choices=list(SEAMS), help="repeatable; default: all four")
    ap.add_argument("--seed", type=int, action="append", help="repeatable; default: 0")
    ap.add_argument("--n", type=int, default=5000, help="training images")
    ap.add_argument("--n-test", type=int, default=5000, help="test images scored by the probes")
    ap.add_argument("--passes", type=int, default=20, help="passes over the images, the same for every combination")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="benchmarks/results/successors_cifar10_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = data_folder(args.data)
    full = load_dataset(f"folder:{root}", "train")
    train = full.subset(np.random.default_rng(0).permutation(len(full))[:args.n])
    test = load_dataset(f"folder:{root}", "test", n=args.n_test, seed=0)
    out = Path(args.json)
    for seed in args.seed or [0]:
        for name in args.setting or list(SEAMS):
            row = run_one(name, train, test, args.passes, args.width, seed, args.device)
            # Re-read before writing: the seeds may run in parallel processes on the same file.
            rows = read_json(out, "successors")["rows"] if out.exists() else []
            rows = [r for r in rows if (r["setting"], r["seed"]) != (name, seed)] + [row]
            write_json(out, {"n_train": len(train), "n_test": len(test), "passes": args.passes,
                             "width": args.width, "threads": args.threads, "recipe": recipe("paper"),
                             "rows": rows, "summary": summarise(rows)})
            print(f"{name}, seed {seed}: loss {row['loss'][-1]:.2f} (log k {row['log_k']:.2f}), gap "
                  f"{100 * row['gap']:+.1f}, ids changed {row['ids_changed']:.2f} (moved {row['ids_moved']:.2f}), "
                  f"{row['train_minutes']:.1f} min", flush=True)


if __name__ == "__main__":
    main()
