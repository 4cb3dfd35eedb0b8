"""Data larger than memory: decode throughput per worker, and peak memory of an epoch, in memory vs streamed.

    PYTHONPATH=. python benchmarks/bench_stream.py --data ../shared/data/cifar10-jpeg.tar.gz \\
        --n 20000 --image-size 96 --budget-mb 1500

``--data`` is the CIFAR-10 JPEG tarball (unpacked to a temporary folder) or an ImageFolder tree
with ``train/``. Two measurements:

1. **Decode throughput**: one pass over ``--n`` images through :func:`dctutor.stream.batches`
   with 0, 1, 2, ... ``--workers`` decoding processes (0: in the main process), in images/s.
2. **Peak memory of one DeepCluster epoch** (features, k-means, training; AlexNet ``--width``),
   each run in a fresh process: the data in memory without a limit, then in memory and streamed
   under a data-segment limit of ``--budget-mb`` (``RLIMIT_DATA``, inherited by the workers). Printed
   for each: the peak resident memory of the main process, and the peak proportional set size of
   the main process and its workers together, sampled every 0.1 s (Linux ``/proc``; a page shared
   by a worker and the process it was forked from counts once).

Numbers only go to ``--json``.
"""
from __future__ import annotations

import argparse
import json
import resource
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench_deepcluster import data_folder


def decode_rate(root: Path, n: int, size: int, workers: int, batch_size: int) -> float:
    from dctutor.data import load_dataset
    from dctutor.stream import batches

    images = load_dataset(f"folder:{root}", n=n, image_size=size, stream=True, workers=workers).images
    spans = [slice(s, s + batch_size) for s in range(0, len(images), batch_size)]
    t0 = time.perf_counter()
    count = sum(len(chunk) for chunk in batches(images, spans))
    return count / (time.perf_counter() - t0)


def _pss_mb(pid: int) -> float:
    """Proportional set size of ``pid`` and all its descendants (Linux): pages shared between a
    worker and the process it was forked from are counted once, split between them."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            rollup = Path(f"/proc/{p}/smaps_rollup").read_text()
            total += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue  # a worker that has just exited
    return total


class _PeakMemory(threading.Thread):
    """Samples :func:`_pss_mb` of this process and its workers every 0.1 s; ``peak`` is the largest."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.done = 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max(self.peak, _pss_mb(os.getpid()))


def one_epoch(root: str, n: int, size: int, stream: bool, workers: int, width: float, budget_mb: int,
              batch_size: int) -> dict:
    """Run in a child process: one epoch of the loop under the memory budget; peak memory in MB."""
    import torch

    from dctutor.data import load_dataset
    from dctutor.deepcluster import DeepClusterConfig, train_deepcluster
    from dctutor.models import alexnet

    if budget_mb:
        resource.setrlimit(resource.RLIMIT_DATA, (budget_mb << 20, budget_mb << 20))
    torch.set_num_threads(2)
    sampler = _PeakMemory()
    sampler.start()
    t0 = time.perf_counter()
    try:
        data = load_dataset(f"folder:{root}", n=n, image_size=size, stream=stream, workers=workers)
        model = alexnet(100, small_input=True, width=width, seed=0)
        run = train_deepcluster(model, data, DeepClusterConfig(k=100, epochs=1, batch_size=batch_size), device="cpu",
                                progress=False)
        outcome = f"ok, loss {run.history[-1]['loss']:.3f}"
    except (MemoryError, RuntimeError) as err:
        memory = isinstance(err, MemoryError) or "allocate memory" in str(err)
        outcome = "failed: out of memory" if memory else f"failed: {type(err).__name__}: {str(err).splitlines()[0][:90]}"
    seconds = time.perf_counter() - t0
    sampler.done.set()
    sampler.join()
    return {"stream": stream, "budget_mb": budget_mb, "outcome": outcome, "seconds": seconds,
            "peak_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_total_pss_mb": sampler.peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batch-size", type=int, default=64, help="of decoding and of the epoch")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--budget-mb", type=int, default=1500)
    ap.add_argument("--json", default="benchmarks/results/stream_cpu.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        root, stream, budget = args.child.split("|")
        print(json.dumps(one_epoch(root, args.n, args.image_size, stream == "1", max(args.workers), args.width,
                                   int(budget), args.batch_size)))
        return
    root = data_folder(args.data) / "train"
    rates = {w: decode_rate(root, args.n, args.image_size, w, args.batch_size) for w in args.workers}
    runs = []
    for stream, budget in ((False, 0), (False, args.budget_mb), (True, args.budget_mb)):
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", f"{root}|{int(stream)}|{budget}"],
                               capture_output=True, text=True, check=True)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(f"{args.n} images decoded to {args.image_size} px, batches of {args.batch_size}\n")
    print("| workers | images/s | per worker |\n|---:|---:|---:|")
    for w, rate in rates.items():
        print(f"| {w} | {rate:.0f} | {rate / max(w, 1):.0f} |")
    pixels_mb = args.n * 3 * args.image_size ** 2 / 2 ** 20
    print(f"\none epoch (AlexNet width {args.width}, k = 100, batch {args.batch_size}); the pixels alone are "
          f"{pixels_mb:.0f} MB\n")
    print("| data | budget MB | outcome | s | peak RSS, main MB | peak PSS, all MB |\n|---|---:|---|---:|---:|---:|")
    for r in runs:
        print(f"| {'streamed' if r['stream'] else 'in memory'} | {r['budget_mb'] or 'none'} | {r['outcome']} | "
              f"{r['seconds']:.0f} | {r['peak_main_mb']:.0f} | {r['peak_total_pss_mb']:.0f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"args": vars(args) | {"data": Path(args.data).name}, "decode": rates,
                                           "pixels_mb": pixels_mb, "epochs": runs}, indent=1) + "\n")
    print(f"\nsaved {args.json}")


if __name__ == "__main__":
    main()
