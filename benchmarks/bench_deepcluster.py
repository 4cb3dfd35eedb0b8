"""DeepCluster on real images for a fixed CPU budget, then linear probes and kNN against random init.

    for seed in 0 1 2; do
        python benchmarks/bench_deepcluster.py --data ../shared/data/cifar10-jpeg.tar.gz --seed $seed
    done

``--data`` is the CIFAR-10 JPEG tarball (unpacked to a temporary folder) or an already unpacked
ImageFolder tree with ``train/`` and ``test/``. Training runs epoch after epoch and stops after the
epoch that crosses ``--minutes``; the run folder (``--run-dir``) holds the checkpoint, so the same
command resumes. Then every conv layer is probed linearly and conv5, fc6, fc7 by kNN on the test
split, for the trained network and a random-init twin (paper Sec. 4.3, Table 1's pattern).

``--recipe`` names one of ``bench_recipe.py``'s candidates: ``paper`` (the default, the paper's
Sec. 3.4 with this benchmark's k, batch and crops) or one that changes a knob or two; that script
compares them on held-out training images, so the recipe reported here on the test images is chosen
without them. Each seed's run is added to
``--json`` beside the runs of other seeds made with the same settings, and the table printed at the
end is the mean over all of them with a 95 % t interval, plus the did-it-train verdict
(:func:`dctutor.evidence.did_it_train`). Numbers only (no image) are saved.
"""
from __future__ import annotations

import argparse
import atexit
import platform
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from dctutor.runs import load_checkpoint, model_from_state, read_json, write_json
from dctutor.data import load_dataset
from dctutor.evaluate import compare_with_random
from dctutor.evidence import best_against_best, did_it_train, format_interval, summarise_seeds, t_interval
from dctutor.deepcluster import DeepClusterConfig, train_deepcluster
from dctutor.models import alexnet
from recipes import RECIPES, recipe


class _OutOfTime(Exception):
    pass


def data_folder(path: str) -> Path:
    """A folder with train/ and test/: ``path`` itself, or the tarball unpacked to a temporary folder
    that is removed when the script ends."""
    p = Path(path)
    if p.is_dir():
        return p
    if not p.is_file():
        raise FileNotFoundError(f"--data {path} is neither a folder nor a tarball")
    out = Path(tempfile.mkdtemp(prefix="cifar10-jpeg-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    with tarfile.open(p) as tar:
        tar.extractall(out, filter="data")
    tops = [d for d in out.iterdir() if d.is_dir()]
    return tops[0] if len(tops) == 1 and not (out / "train").exists() else out


def summarise(runs: list[dict], k: int) -> dict:
    """Per layer, trained and random accuracies and their gain as t intervals over the seeds; the best
    trained conv layer against the best random one; and the did-it-train verdict."""
    best_gaps = [best_against_best(run["probe"]) for run in runs]
    return {"layers": summarise_seeds([run["probe"] for run in runs]),
            "best_against_best": t_interval(best_gaps),
            "did_it_train": did_it_train([run["history"][-1]["loss"] for run in runs], k, best_gaps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/cifar10-jpeg")
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="paper",
                    help="bench_recipe.py's candidate recipes: the values of the knobs below that are not given")
    ap.add_argument("--n", type=int, default=20000, help="training images (random subset of train)")
    ap.add_argument("--n-test", type=int, default=None, help="test images (default: the whole split)")
    ap.add_argument("--minutes", type=float, default=25.0, help="training budget; stops after the epoch crossing it")
    ap.add_argument("--max-epochs", type=int, default=500)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--k", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--train-passes", type=int, help="passes over the images per clustering")
    ap.add_argument("--crop-scale", type=float, help="smallest crop area (reference code: 0.08)")
    ap.add_argument("--halt-clustering-after", type=int, default=None,
                    help="cluster this many times, then train on the last pseudo-labels (default: never halt)")
    ap.add_argument("--cluster-crop", type=float, default=1.0,
                    help="central fraction of each side clustered (the paper's: 0.875, 224 of 256)")
    ap.add_argument("--rgb", action="store_true", help="no Sobel layer")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the network and the loop (the data subset keeps 0); runs of other seeds "
                         "already in --json are kept, so one command per seed builds the interval")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--run-dir", help="checkpoints ('' for none; default /tmp/bench_deepcluster_<recipe>_seed<seed>)")
    ap.add_argument("--probe-only", action="store_true",
                    help="train no further: probe the network in --run-dir again (after a change to the "
                         "evaluation), keeping the training minutes this seed's run recorded in --json")
    ap.add_argument("--json", default="benchmarks/results/deepcluster_cifar10_cpu.json")
    args = ap.parse_args()
    if args.run_dir is None:
        args.run_dir = f"/tmp/bench_deepcluster_{args.recipe}_seed{args.seed}"
    knobs = {key: getattr(args, key) if getattr(args, key) is not None else value
             for key, value in recipe(args.recipe).items()}
    torch.set_num_threads(args.threads)
    if torch.cuda.is_available() and args.device in ("auto", "cuda"):
        torch.backends.cudnn.benchmark = True

    root = data_folder(args.data)
    train = load_dataset(f"folder:{root}", "train", n=args.n, seed=0)
    test = load_dataset(f"folder:{root}", "test", n=args.n_test, seed=0)
    config = DeepClusterConfig(epochs=args.max_epochs, seed=args.seed, precision=args.precision,
                               channels_last=args.channels_last, cluster_crop=args.cluster_crop,
                               halt_clustering_after=args.halt_clustering_after, **knobs)
    out = Path(args.json)
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

    if args.probe_only:
        try:
            state = load_checkpoint(args.run_dir)
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"--probe-only needs the run folder of a finished run (--run-dir): {err}") from None
        saved = read_json(out, "benchmark results") if out.exists() else {}
        earlier = [r for r in saved.get("runs", []) if r["seed"] == args.seed]
        if not earlier:
            raise SystemExit(f"--probe-only: {out} holds no run of seed {args.seed} whose training minutes to keep")
        model, history = model_from_state(state), state["history"]
    else:
        model = alexnet(knobs["k"], sobel=not args.rgb, small_input=True, width=args.width, seed=args.seed)
        try:
            run = train_deepcluster(model, train, config, out_dir=args.run_dir or None, device=args.device,
                                    progress=False, on_epoch_end=stop_when_out_of_time)
            history = run.history
        except _OutOfTime:
            pass
    train_minutes = (time.perf_counter() - start) / 60

    t0 = time.perf_counter()
    table = compare_with_random(model, train, test, knn_layers=["conv5", "fc6", "fc7"], seed=args.seed,
                                device=args.device)
    probe_minutes = (time.perf_counter() - t0) / 60

    hardware = (torch.cuda.get_device_name() if next(model.parameters()).is_cuda
                else platform.processor() or platform.machine())
    timing = {key: sum(r[key] for r in history) / len(history)
              for key in ("time_extract", "time_cluster", "time_train")}
    print(f"\nDeepCluster ({args.recipe} recipe, seed {args.seed}), {len(train)} CIFAR-10 train images, "
          f"{len(history)} epochs, width {args.width}, {knobs}, {'RGB' if args.rgb else 'Sobel'}, "
          f"{args.threads} threads ({hardware}), {args.precision}")
    print(f"time per epoch (mean): extraction {timing['time_extract']:.2f} s, clustering "
          f"{timing['time_cluster']:.2f} s, training {timing['time_train']:.2f} s; "
          f"training this session {train_minutes:.1f} min, evaluation {probe_minutes:.1f} min\n")
    print("| epoch | loss | NMI(labels) | NMI(t-1,t) | effective k |\n|---|---|---|---|---|")
    for r in history:
        print(f"| {r['epoch']} | {r['loss']:.3f} | {r['nmi_labels']:.3f} | {r['nmi_prev']:.3f} | "
              f"{r['n_effective']:.1f} |")

    out.parent.mkdir(parents=True, exist_ok=True)
    this = {"seed": args.seed, "history": history, "probe": table, "time_per_epoch": timing,
            "train_minutes": train_minutes, "eval_minutes": probe_minutes, "hardware": hardware,
            "threads": args.threads}
    # Read again just before writing: other seeds may run beside this one and save to the same file.
    saved = read_json(out, "benchmark results") if out.exists() else {}
    if args.probe_only:
        this["train_minutes"] = earlier[0]["train_minutes"]
    settings = {"recipe": args.recipe, "knobs": knobs, "n": args.n, "n_test": args.n_test, "width": args.width,
                "rgb": args.rgb, "minutes": args.minutes, "max_epochs": args.max_epochs, "precision": args.precision}
    # Only when set, so that files saved before these options existed still match.
    settings |= {key: getattr(args, key) for key, default in (("cluster_crop", 1.0), ("halt_clustering_after", None))
                 if getattr(args, key) != default}
    kept = [r for r in saved.get("runs", []) if r["seed"] != args.seed and saved.get("settings") == settings]
    runs = sorted(kept + [this], key=lambda r: r["seed"])
    summary = summarise(runs, knobs["k"])
    print(f"\nTest accuracy (%) on {len(test)} test images, mean over seeds {[r['seed'] for r in runs]} "
          f"with its 95 % t interval: linear probe per layer, kNN (k=20) on conv5, fc6 and fc7\n")
    print("| layer | DeepCluster | random init | gain |\n|---|---|---|---|")
    for layer, row in summary["layers"].items():
        print(f"| {layer} | {100 * row['trained']['mean']:.1f} | {100 * row['random']['mean']:.1f} | "
              f"{format_interval(row['gain'], 100)} |")
    print(f"\nbest trained conv layer minus best random conv layer: "
          f"{format_interval(summary['best_against_best'], 100)} points")
    print(f"did it train? {summary['did_it_train']['line']}")
    write_json(out, {"settings": settings, "args": vars(args) | {"data": Path(args.data).name}, "runs": runs,
                     "summary": summary, "n_train": len(train), "n_test": len(test)})
    print(f"saved {out}")


if __name__ == "__main__":
    main()
