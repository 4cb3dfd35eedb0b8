"""Transfer a DeepCluster network and a random twin to VOC 2007 classification; prints a markdown table.

    python benchmarks/bench_voc.py --voc ../shared/data/voc2007-trainval-256.tar.gz \\
        --checkpoint /tmp/bench_deepcluster_run/checkpoint.pt --image-size 64

``--voc`` is the real VOC 2007 trainval tarball (unpacked to a temporary folder) or a folder that
holds ``VOCdevkit/``. The networks train on ``train`` (2 500 images) and are scored on ``val``
(2 508), the split the paper chose its hyper-parameters on (Sec. 4.4); the archive has no test set.
``--checkpoint`` is a ``train_deepcluster`` checkpoint (e.g. the CIFAR-10 run of
``bench_deepcluster.py``); the random network has the same architecture and Sobel setting.
Both settings of Table 2 are run: FC6-8 (frozen conv layers) and ALL (everything fine-tuned).
Only numbers are printed or saved (``--json``); no image of VOC leaves the temporary folder.
"""
from __future__ import annotations

import argparse
import json
import platform
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from dctutor.cli import jsonable
from dctutor.models import alexnet
from dctutor.transfer import compare_transfer, load_deepcluster_checkpoint
from dctutor.voc import VOC_CLASSES, VOCClassification


def voc_root(path: str, tmp: str) -> Path:
    """The folder holding VOCdevkit/: ``path`` itself, or the tarball unpacked into ``tmp``."""
    p = Path(path)
    if p.is_dir():
        return p.parent.parent if p.name == "VOC2007" else (p.parent if p.name == "VOCdevkit" else p)
    if not p.is_file():
        raise FileNotFoundError(f"--voc {path} is neither a folder with VOCdevkit/ nor a tarball")
    with tarfile.open(p) as tar:
        tar.extractall(tmp, filter="data")
    return Path(tmp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voc", default="../shared/data/voc2007-trainval-256.tar.gz")
    ap.add_argument("--checkpoint", required=True, help="DeepCluster checkpoint.pt (or its run folder)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--epochs-fc", type=int, default=30, help="epochs for FC6-8 (on cached conv features)")
    ap.add_argument("--epochs-all", type=int, default=6, help="epochs for ALL (full forward/backward)")
    ap.add_argument("--views", type=int, default=4, help="augmented views cached per image for FC6-8")
    ap.add_argument("--crops", type=int, default=10, choices=(1, 2, 10), help="test-time crops")
    ap.add_argument("--modes", nargs="+", default=["fc6-8", "all"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="benchmarks/results/voc_transfer.json",
                    help="where to save the numbers (no images)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    pretrained = load_deepcluster_checkpoint(args.checkpoint)
    random_net = alexnet(pretrained.top_layer.out_features, sobel=pretrained.sobel is not None,
                         small_input=pretrained.config == "small", width=pretrained.width,
                         fc_dim=pretrained.fc_dim, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = voc_root(args.voc, tmp)
        t0 = time.perf_counter()
        train = VOCClassification(root, "train", image_size=args.image_size, progress=False)
        val = VOCClassification(root, "val", image_size=args.image_size, progress=False)
        load_s = time.perf_counter() - t0
    print(f"VOC 2007: {len(train)} train, {len(val)} val images at {args.image_size} px (decoded in {load_s:.0f} s); "
          f"AlexNet width {pretrained.width}, {'Sobel' if pretrained.sobel is not None else 'RGB'}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    rows = compare_transfer({"DeepCluster": pretrained, "Random": random_net}, train, val, modes=tuple(args.modes),
                            epochs={"fc6-8": args.epochs_fc, "all": args.epochs_all}, n_crops=args.crops,
                            views=args.views, seed=args.seed, device=args.device, progress=False)
    for r in rows:
        r["epochs"] = args.epochs_fc if r["mode"] == "fc6-8" else args.epochs_all
        r["ap"] = [float(a) for a in r["ap"]]
    print("\n| init | setting | epochs | mAP (sklearn) | mAP (VOC07 11-pt) | train s | eval s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['init']} | {r['mode'].upper()} | {r['epochs']} | {100 * r['map']:.1f} | "
              f"{100 * r['map_voc07']:.1f} | {r['train_s']:.0f} | {r['eval_s']:.0f} |")
    print("\nper-class AP (sklearn), %:")
    print("| class | " + " | ".join(f"{r['init']} {r['mode'].upper()}" for r in rows) + " |")
    print("| --- |" + " ---: |" * len(rows))
    for c, cls in enumerate(VOC_CLASSES):
        print(f"| {cls} | " + " | ".join(f"{100 * r['ap'][c]:.1f}" for r in rows) + " |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(jsonable({"args": vars(args), "rows": rows}), indent=1, allow_nan=False))


if __name__ == "__main__":
    main()
