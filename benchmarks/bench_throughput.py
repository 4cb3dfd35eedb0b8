"""How fast is one DeepCluster epoch, and how close is it to what the device can do?

    python benchmarks/bench_throughput.py --data shapes --n 4000 --width 0.25            # offline, CPU
    python benchmarks/bench_throughput.py --data ../shared/data/cifar10-jpeg.tar.gz --n 50000 \\
        --width 1.0 --k 1000 --device cuda --precision bf16 --channels-last           # a GPU

Runs a few DeepCluster epochs and reports, per phase, seconds per epoch and images per second
(feature extraction, clustering, training), then the arithmetic rate the extraction and training
phases reach as a fraction of the device's own matrix-product rate, measured first on a large
square product in the same precision. FLOPs per image are counted by ``torch.utils.flop_counter``
on the real network (forward for extraction, forward and backward for training). The first epoch
pays for warm-up (cuDNN autotuning, allocator growth) and is left out of the means. Prints a
markdown table and saves the numbers to ``--json``.
"""
from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dctutor.data import load_dataset
from dctutor.deepcluster import DeepClusterConfig, train_deepcluster
from dctutor.device import pick_device
from dctutor.models import alexnet
from dctutor.runs import write_json

from bench_deepcluster import data_folder


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10) -> float:
    """FLOP/s of a ``size``-square matrix product on ``device``: the ceiling the loop is compared with."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * size ** 3 * repeats / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_image(model, image_size: int, device: torch.device, precision: str) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per image, counted on a batch of 8."""
    x = torch.randn(8, 3, image_size, image_size, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        with FlopCounterMode(display=False) as forward:
            with torch.no_grad():
                model.eval()(x)
        with FlopCounterMode(display=False) as both:
            model.train()(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return forward.get_total_flops() / 8, both.get_total_flops() / 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="shapes", help="'shapes' (offline), or a CIFAR-10 JPEG tarball or folder")
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=3, help="epochs to time (the first is warm-up)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="default benchmarks/results/throughput_<device>.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if args.data == "shapes":
        data = load_dataset("shapes", n=args.n, seed=0)
    else:
        data = load_dataset(f"folder:{data_folder(args.data)}", "train", n=args.n, seed=0)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    peak = matmul_rate(device, dtype, 8192 if device.type == "cuda" else 2048)
    model = alexnet(args.k, small_input=True, width=args.width, seed=0).to(device)
    fwd, fwd_bwd = flops_per_image(model, data.image_size, device, args.precision)
    config = DeepClusterConfig(k=args.k, epochs=args.epochs, batch_size=args.batch_size, seed=0,
                               precision=args.precision, channels_last=args.channels_last)
    history = train_deepcluster(model, data, config, device=device, progress=False).history
    timed = history[1:] or history
    mean = {key: sum(r[key] for r in timed) / len(timed) for key in ("time_extract", "time_cluster", "time_train")}
    n = len(data)
    rows = [("extraction", mean["time_extract"], n / mean["time_extract"], fwd * n / mean["time_extract"]),
            ("clustering", mean["time_cluster"], n / mean["time_cluster"], None),
            ("training", mean["time_train"], n / mean["time_train"], fwd_bwd * n / mean["time_train"])]
    epoch = sum(mean.values())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"DeepCluster throughput on {name} ({device.type}, {torch.get_num_threads()} CPU threads), "
          f"{n} images of {data.image_size} px, AlexNet width {args.width}, k {args.k}, batch {args.batch_size}, "
          f"{args.precision}{', channels-last' if args.channels_last else ''}; means of epochs 1-{len(history) - 1}")
    print(f"matrix product ({args.precision}): {peak / 1e12:.2f} TFLOP/s; network: {fwd / 1e9:.3f} GFLOP per image "
          f"forward, {fwd_bwd / 1e9:.3f} forward + backward\n")
    print("| phase | s / epoch | images / s | TFLOP/s | share of matmul rate |\n|---|---:|---:|---:|---:|")
    for phase, seconds, rate, flops in rows:
        tail = f"{flops / 1e12:.2f} | {100 * flops / peak:.0f} %" if flops else "- | -"
        print(f"| {phase} | {seconds:.2f} | {rate:,.0f} | {tail} |")
    print(f"| epoch | {epoch:.2f} | {n / epoch:,.0f} | | |")
    print(f"\n100 epochs at this rate: {100 * epoch / 60:.1f} min")
    out = args.json or f"benchmarks/results/throughput_{device.type}.json"
    write_json(out, {"args": vars(args) | {"data": args.data.rsplit('/', 1)[-1]}, "device": name,
                     "threads": torch.get_num_threads(), "matmul_flops": peak, "flops_forward": fwd,
                     "flops_train": fwd_bwd, "seconds": mean, "epoch_seconds": epoch,
                     "phases": [{"phase": p, "seconds": s, "images_per_s": r, "flops_per_s": f}
                                for p, s, r, f in rows], "history": history})
    print(f"saved {out}")


if __name__ == "__main__":
    main()
