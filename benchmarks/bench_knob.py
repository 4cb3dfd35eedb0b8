"""Does one setting matter? A protocol row measured on CIFAR-10: the same run with each value of one knob.

    PYTHONPATH=.:benchmarks python benchmarks/bench_knob.py --flag crop-scale --values 0.08 0.3
    PYTHONPATH=.:benchmarks python benchmarks/bench_knob.py --flag width --values 0.25 0.5 --minutes 9
    PYTHONPATH=.:benchmarks python benchmarks/bench_knob.py --flag cluster-crop --values 1 0.875
    PYTHONPATH=.:benchmarks python benchmarks/bench_knob.py --flag halt-clustering-after --values 5 20

``--flag`` names one option of ``bench_deepcluster.py`` and ``--values`` the settings to compare. For
each value and each ``--seeds`` seed this script runs that benchmark's loop (its evaluation against a
random twin included), with every other setting equal, and prints the linear-probe accuracy per conv
layer with the mean over seeds. The budget is ``--epochs`` per run, or with ``--minutes`` the same CPU
time per run (the fair budget when a value changes the cost of an epoch, such as the width), up to
``--epochs``. The defaults are the budget at which the paper's recipe trained in ``bench_successors.py``
(5 000 CIFAR-10 images, 20 epochs). ``--jobs`` runs that many trainings at once, each on ``--threads``
threads; with ``--minutes`` keep the machine otherwise idle. Numbers only (no image) go to ``--json``
(default ``benchmarks/results/<flag>_cifar10_cpu.json``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from dctutor.runs import write_json

FLAGS = ("crop-scale", "cluster-crop", "width", "k", "lr", "weight-decay", "batch-size", "train-passes",
         "halt-clustering-after")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    ap.add_argument("--flag", choices=FLAGS, required=True, help="the bench_deepcluster.py option to vary")
    ap.add_argument("--values", type=float, nargs="+", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=20, help="epochs per run (at most, with --minutes)")
    ap.add_argument("--minutes", type=float, default=None, help="equal training time per run instead")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once")
    ap.add_argument("--threads", type=int, default=1, help="threads per training")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if len(set(args.values)) < 2:
        raise SystemExit(f"--values {args.values}: give at least two different values of --{args.flag}")
    args.json = args.json or f"benchmarks/results/{args.flag.replace('-', '_')}_cifar10_cpu.json"
    fixed = {"k": args.k, "width": args.width}
    integer = args.flag in ("k", "batch-size", "train-passes", "halt-clustering-after")
    if integer and any(value != int(value) for value in args.values):
        raise SystemExit(f"--values {args.values}: --{args.flag} takes whole numbers, e.g. --values 10 100")
    with tempfile.TemporaryDirectory() as tmp:

        def run(value: float, seed: int) -> dict:
            out = Path(tmp) / f"{value}-{seed}.json"
            options = {f"--{key}": str(v) for key, v in fixed.items()} | {
                f"--{args.flag}": str(int(value) if integer else value)}
            subprocess.run([sys.executable, str(Path(__file__).with_name("bench_deepcluster.py")), "--data",
                            args.data, "--n", str(args.n), "--n-test", str(args.n_test), "--max-epochs",
                            str(args.epochs), "--minutes", str(args.minutes or 1e9), "--seed", str(seed),
                            "--threads", str(args.threads), "--run-dir", "", "--json", str(out),
                            *[part for pair in options.items() for part in pair]],
                           check=True, stdout=subprocess.DEVNULL)
            result = json.loads(out.read_text())["runs"][0]
            print(f"--{args.flag} {value:g}, seed {seed}: {len(result['history'])} epochs in "
                  f"{result['train_minutes']:.1f} min", flush=True)
            return {"value": value, "seed": seed, "probe": result["probe"], "epochs": len(result["history"]),
                    "loss_last": result["history"][-1]["loss"], "nmi_last": result["history"][-1]["nmi_labels"],
                    "train_minutes": result["train_minutes"]}

        with ThreadPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(run, *zip(*[(value, seed) for value in args.values for seed in args.seeds])))
    layers = [r["layer"] for r in runs[0]["probe"] if r["layer"].startswith("conv")]
    budget = f"{args.minutes:g} min (at most {args.epochs} epochs)" if args.minutes else f"{args.epochs} epochs"
    print(f"linear probe, test accuracy (%), {args.n} CIFAR-10 images, {budget}, seeds {args.seeds}\n")
    print(f"| --{args.flag} | " + " | ".join(layers) + " | epochs | NMI last |\n|---|" + "---:|" * (len(layers) + 2))
    for value in args.values:
        mine = [r for r in runs if r["value"] == value]
        cells = [sum(100 * next(p["trained"] for p in r["probe"] if p["layer"] == layer) for r in mine) / len(mine)
                 for layer in layers]
        epochs, nmi_last = (sum(r[key] for r in mine) / len(mine) for key in ("epochs", "nmi_last"))
        print(f"| {value:g} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {epochs:.1f} | {nmi_last:.3f} |")
    write_json(args.json, {"args": vars(args) | {"data": Path(args.data).name}, "runs": runs})
    print(f"\nsaved {args.json}")


if __name__ == "__main__":
    main()
