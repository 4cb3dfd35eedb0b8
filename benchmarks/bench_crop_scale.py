"""Does the smallest crop matter? The protocol's crop-scale row, measured on CIFAR-10.

    PYTHONPATH=.:benchmarks python benchmarks/bench_crop_scale.py --data ../shared/data/cifar10-jpeg.tar.gz

The reference code crops 8-100 % of a 224 px ImageNet image; dctutor defaults to 30-100 % because an
8 % crop of a 32 px image is 9 pixels wide. This script trains the same DeepCluster run with each
``--scales`` value for each ``--seeds`` seed (``bench_deepcluster.py``'s loop, evaluation against a
random twin included) and prints the linear-probe accuracy per conv layer, with the mean over seeds.
The defaults are the budget at which the paper's recipe trained in ``bench_successors.py`` (5 000
CIFAR-10 images, 20 epochs); at 10 epochs neither scale's runs beat their random twins. ``--jobs`` runs
that many trainings at once, each on ``--threads`` threads. Numbers only (no image) go to ``--json``.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    ap.add_argument("--scales", type=float, nargs="+", default=[0.08, 0.3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once")
    ap.add_argument("--threads", type=int, default=1, help="threads per training")
    ap.add_argument("--json", default="benchmarks/results/crop_scale_cifar10_cpu.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:

        def run(scale: float, seed: int) -> dict:
            out = Path(tmp) / f"{scale}-{seed}.json"
            subprocess.run([sys.executable, str(Path(__file__).with_name("bench_deepcluster.py")), "--data",
                            args.data, "--n", str(args.n), "--n-test", str(args.n_test), "--max-epochs",
                            str(args.epochs), "--minutes", "1e9", "--k", str(args.k), "--width", str(args.width),
                            "--seed", str(seed), "--crop-scale", str(scale), "--threads", str(args.threads),
                            "--run-dir", "", "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
            result = json.loads(out.read_text())["runs"][0]
            print(f"crops {scale:g}-1, seed {seed}: done in {result['train_minutes']:.1f} min", flush=True)
            return {"scale": scale, "seed": seed, "probe": result["probe"], "loss_last": result["history"][-1]["loss"],
                    "nmi_last": result["history"][-1]["nmi_labels"], "train_minutes": result["train_minutes"]}

        with ThreadPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(run, *zip(*[(scale, seed) for scale in args.scales for seed in args.seeds])))
    layers = [r["layer"] for r in runs[0]["probe"] if r["layer"].startswith("conv")]
    print(f"linear probe, test accuracy (%), {args.n} CIFAR-10 images, {args.epochs} epochs, seeds {args.seeds}\n")
    print("| crop scale | " + " | ".join(layers) + " | NMI last |\n|---|" + "---:|" * (len(layers) + 1))
    for scale in args.scales:
        mine = [r for r in runs if r["scale"] == scale]
        cells = [sum(100 * next(p["trained"] for p in r["probe"] if p["layer"] == layer) for r in mine) / len(mine)
                 for layer in layers]
        nmi_last = sum(r["nmi_last"] for r in mine) / len(mine)
        print(f"| {scale:g}-1 | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {nmi_last:.3f} |")
    write_json(args.json, {"args": vars(args) | {"data": Path(args.data).name}, "runs": runs})
    print(f"\nsaved {args.json}")


if __name__ == "__main__":
    main()
