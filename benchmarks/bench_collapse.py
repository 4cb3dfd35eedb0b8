"""Does DeepCluster's loop collapse without the defences of Sec. 3.3? A grid over regimes and seeds.

    python benchmarks/bench_collapse.py --data ../shared/data/cifar10-jpeg.tar.gz --n 2000 --seeds 0 1 2

For every regime (learning rate, k, passes per clustering, epochs) and seed, the same random AlexNet
is trained twice: with the paper's defences (uniform sampling over clusters and empty-cluster
reassignment) and with neither (plain shuffling, empty clusters left empty). Every epoch records
the share of the images in the largest cluster, the effective number of clusters exp(H), the
number of empty clusters and NMI with the labels. ``--data`` is the CIFAR-10 JPEG tarball, an
unpacked ImageFolder tree, or ``shapes`` (offline). Prints a markdown table; saves numbers only
(no image) to ``--json``.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from dctutor.data import load_dataset
from dctutor.labs.imbalance import defence_runs
from dctutor.runs import write_json

from bench_deepcluster import data_folder

# name -> (lr, k as a fraction of n, passes per clustering, epochs)
REGIMES = {
    "paper-like": (0.05, 1 / 30, 1, 15),
    "lr x10": (0.5, 1 / 30, 1, 15),
    "lr x40": (2.0, 1 / 30, 1, 15),
    "k = n / 3": (0.05, 1 / 3, 1, 15),
    "lr x10, k = n / 3, 4 passes": (0.5, 1 / 3, 4, 10),
}
KEYS = ("epoch", "loss", "nmi_labels", "n_empty", "largest", "n_effective", "spread")


def run_grid(data, regimes: dict[str, tuple], seeds, width, batch_size, device, log=print) -> list[dict]:
    """One row per (regime, defences, seed) of :func:`dctutor.labs.imbalance.defence_runs`, with the
    regime's settings (``regimes``: name -> (lr, k as a fraction of n, passes, epochs)) and the
    history cut to the KEYS columns."""
    rows = []
    for regime, (lr, k_frac, passes, epochs) in regimes.items():

        def report(run: dict) -> None:
            last = run["history"][-1] if run["history"] else None
            log(f"{regime:32s} {run['defences']:12s} seed {run['seed']}: " + (
                f"largest {last['largest']:.1%}, eff. k {last['n_effective']:.0f}/{run['k']}, "
                f"empty {last['n_empty']}, spread {last['spread']:.2g}, NMI {last['nmi_labels']:.3f} "
                f"({run['seconds']:.0f} s)" if last else "") + (f" stopped: {run['error']}" if run["error"] else ""))
        runs = defence_runs(data, seeds, k=max(2, round(len(data) * k_frac)), epochs=epochs, lr=lr, passes=passes,
                            batch_size=batch_size, width=width, device=device, on_run=report)
        rows += [{"regime": regime, **run, "lr": lr, "passes": passes, "epochs": epochs,
                  "history": [{key: row[key] for key in KEYS} for row in run["history"]]} for run in runs]
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per (regime, defences): over seeds, the final and the worst epoch's largest share, effective k
    as a fraction of k, empty clusters, the lowest feature spread and the final NMI (mean, min, max);
    how many runs diverged and how many collapsed (half the images or more in one cluster).
    A diverged run counts with the epochs before its divergence."""
    out = []
    for key in dict.fromkeys((r["regime"], r["defences"]) for r in rows):
        runs = [r for r in rows if (r["regime"], r["defences"]) == key and r["history"]]
        seeds = sum((r["regime"], r["defences"]) == key for r in rows)
        if not runs:
            continue

        def stat(values):
            return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}
        out.append({"regime": key[0], "defences": key[1], "k": runs[0]["k"], "seeds": seeds,
                    "final_largest": stat([r["history"][-1]["largest"] for r in runs]),
                    "worst_largest": stat([max(h["largest"] for h in r["history"]) for r in runs]),
                    "final_eff_frac": stat([r["history"][-1]["n_effective"] / r["k"] for r in runs]),
                    "worst_eff_frac": stat([min(h["n_effective"] for h in r["history"]) / r["k"] for r in runs]),
                    "max_empty": stat([max(h["n_empty"] for h in r["history"]) for r in runs]),
                    **({"min_spread": stat([min(h["spread"] for h in r["history"]) for r in runs])}
                       if all("spread" in r["history"][0] for r in runs) else {}),
                    "final_nmi": stat([r["history"][-1]["nmi_labels"] for r in runs]),
                    "diverged": sum(bool(r["error"]) for r in rows if (r["regime"], r["defences"]) == key),
                    "collapsed": sum(max(h["largest"] for h in r["history"]) >= 0.5 for r in runs)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz", help="tarball, folder or 'shapes'")
    ap.add_argument("--n", type=int, default=2000, help="training images")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    ap.add_argument("--epochs", type=int, help="epochs of every regime (default: each regime's own)")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--order", choices=("shuffled", "sorted"), default="shuffled",
                    help="image order: shuffled, or sorted by class as ImageFolder lists them")
    ap.add_argument("--json", default="benchmarks/results/collapse_cifar10_cpu.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.data == "shapes":
        data = load_dataset("shapes", n=args.n, seed=0)
    else:
        data = load_dataset(f"folder:{data_folder(args.data)}", "train", n=args.n, seed=0)
    if args.order == "shuffled":  # ImageFolder lists images class by class
        data = data.subset(np.random.default_rng(0).permutation(len(data)))
    regimes = {name: REGIMES[name][:3] + (REGIMES[name][3] if args.epochs is None else args.epochs,)
               for name in args.regimes}
    start = time.perf_counter()
    rows = run_grid(data, regimes, args.seeds, args.width, args.batch_size, args.device)
    table = summary(rows)
    print(f"\n{len(data)} images, AlexNet width {args.width}, seeds {args.seeds}, "
          f"{args.threads} threads ({platform.processor() or platform.machine()}), "
          f"{(time.perf_counter() - start) / 60:.0f} min\n")
    print("| regime | defences | k | seeds | collapsed | diverged | final largest share | worst largest share | "
          "min eff. k / k | max empty | min spread | final NMI |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for t in table:
        print(f"| {t['regime']} | {t['defences']} | {t['k']} | {t['seeds']} | {t['collapsed']} | {t['diverged']} | "
              f"{t['final_largest']['mean']:.1%} | {t['worst_largest']['max']:.1%} | "
              f"{t['worst_eff_frac']['min']:.2f} | {t['max_empty']['max']:.0f} | "
              f"{t.get('min_spread', {}).get('min', float('nan')):.2g} | "
              f"{t['final_nmi']['mean']:.3f} |")
    write_json(args.json, {"args": vars(args) | {"data": args.data.rsplit("/", 1)[-1]}, "n_train": len(data),
                           "regimes": {name: dict(zip(("lr", "k_frac", "passes", "epochs"), settings))
                                       for name, settings in regimes.items()},
                           "runs": rows, "summary": table})
    print(f"saved {args.json}")


if __name__ == "__main__":
    main()
