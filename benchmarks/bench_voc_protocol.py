"""Which departures from the reference VOC recipe move the score? The protocol page's VOC rows, measured.

    PYTHONPATH=. python benchmarks/bench_voc_protocol.py --run /tmp/dc_c20k \\
        --voc ../shared/data/voc2007-trainval-256.tar.gz --image-size 32 --seeds 0 1 2

``--run`` is a folder written by ``dctutor train`` (e.g. on CIFAR-10). Every variant below changes one
thing of dctutor's transfer recipe towards ``eval_voc_classif.py`` (facebookresearch/deepcluster) and
is trained on VOC 2007 ``train`` and scored on ``val``, for the run and for a random-init twin, once
per seed:

* ``dctutor``: He-initialised head, crops of 30-100 %, fixed ten-crop at test, BatchNorm frozen;
* ``all, equal epochs``: ALL trained for as many epochs as FC6-8 (the book's ALL gets fewer);
* ``reference head``: N(0, 0.01) weights and biases of 0.1;
* ``BatchNorm trained``: BatchNorm scales and shifts train in FC6-8 (``--train_batchnorm 1``);
* ``BatchNorm frozen``: in ALL, the body's BatchNorm statistics stay as pre-training left them
  (``model.features.eval()``) while every weight trains;
* ``reference crops``: square crops of 10-50 %, and 10 random such crops at test;
* ``clip 0.5``: gradient norm clipped at 0.5, the reference's 10 on its loss, which sums the 20
  classes where dctutor's averages them;
* ``lr 0.06``: the reference's 0.003 on that summed loss, scaled by 20.

Prints the mean mAP (scikit-learn AP, the column comparable with Table 2) per variant and init, and
saves every row to ``--json``; the tarball is unpacked to a temporary folder that is deleted after.
``--variants`` runs some of the variants only: their rows replace those of the same variant and
seed in ``--json``, and the others are kept; it refuses a ``--json`` made from another network or
other settings, whose rows it would drop.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
import tempfile
import time

import numpy as np

from bench_voc import voc_root
from dctutor.evaluate import random_like
from dctutor.runs import describe_run, load_model, read_json, write_json
from dctutor.transfer import REFERENCE_CROPS, compare_transfer
from dctutor.voc import VOCClassification

# (name, mode, recipe for train_transfer, random test crops)
VARIANTS = [
    ("dctutor", "fc6-8", {}, False),
    ("dctutor", "all", {}, False),
    ("all, equal epochs", "all", {}, False),
    ("reference head", "fc6-8", {"head_init": "reference"}, False),
    ("BatchNorm trained", "fc6-8", {"train_batchnorm": True}, False),
    ("BatchNorm frozen", "all", {"freeze_bn_stats": True}, False),
    ("reference crops", "fc6-8", dict(REFERENCE_CROPS), True),
    ("clip 0.5", "fc6-8", {"clip_grad": 0.5}, False),
    ("lr 0.06", "fc6-8", {"lr": 0.06}, False),
]


def _kept_rows(path: str, settings: dict, partial: bool) -> list[dict]:
    """The rows of ``path`` that this run keeps: all of them when they were made from the same network
    and settings (the variants run again replace theirs later), none when this run replaces a file
    made otherwise. A partial run (``--variants``) never replaces such a file: it would drop rows
    it does not make again, so it stops first, before any training."""
    if not Path(path).exists():
        return []
    saved = read_json(path, "benchmark results")
    if all(saved.get("args", {}).get(key) == value for key, value in settings.items()):
        return saved["rows"]
    if partial:
        raise SystemExit(f"{path} holds rows of another network or other settings, which --variants would "
                         f"drop: pass another --json, or run every variant to replace it")
    print(f"{path} was made from another network or other settings: replacing it", file=sys.stderr)
    return []


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a folder written by 'dctutor train'")
    ap.add_argument("--voc", default="../shared/data/voc2007-trainval-256.tar.gz")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--epochs-fc", type=int, default=30)
    ap.add_argument("--epochs-all", type=int, default=6,
                    help="the book's ALL budget (every ALL variant but 'all, equal epochs')")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", choices=list(dict.fromkeys(v[0] for v in VARIANTS)),
                    help="run only these (default: all)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default="benchmarks/results/voc_protocol.json")
    args = ap.parse_args(argv)
    pretrained = load_model(args.run)
    chosen = [v for v in VARIANTS if not args.variants or v[0] in args.variants]
    settings = {"run": describe_run(args.run), "voc": Path(args.voc).name, "image_size": args.image_size,
                "epochs_fc": args.epochs_fc, "epochs_all": args.epochs_all}
    kept = _kept_rows(args.json, settings, partial=len(chosen) < len(VARIANTS))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = voc_root(args.voc, tmp)
        train = VOCClassification(root, "train", image_size=args.image_size, progress=False)
        val = VOCClassification(root, "val", image_size=args.image_size, progress=False)
    for seed in args.seeds:
        nets = {"DeepCluster": pretrained, "Random": random_like(pretrained, seed)}
        for name, mode, recipe, random_test in chosen:
            epochs = args.epochs_fc if mode == "fc6-8" or name == "all, equal epochs" else args.epochs_all
            t0 = time.perf_counter()
            for row in compare_transfer(nets, train, val, modes=(mode,), epochs={mode: epochs}, seed=seed,
                                        random_test_crops=random_test, device=args.device, progress=False,
                                        **recipe):
                rows.append({"variant": name, "epochs": epochs, "seed": seed, **row})
            print(f"seed {seed} {name:18s} {mode:6s} {time.perf_counter() - t0:5.0f} s", file=sys.stderr)
    fresh = {(r["variant"], r["seed"]) for r in rows}
    rows = [r for r in kept if (r["variant"], r["seed"]) not in fresh] + rows
    seeds = sorted({r["seed"] for r in rows})
    print(f"VOC 2007 train ({len(train)}) -> val ({len(val)}), {args.image_size} px, seeds {seeds}; "
          f"mAP (%), mean over seeds\n")
    print("| variant | setting | epochs | DeepCluster | Random | gap |\n|---|---|---:|---:|---:|---:|")
    for name, mode, _, _ in VARIANTS:
        mine = [r for r in rows if r["variant"] == name and r["mode"] == mode]
        if not mine:
            continue
        score = {init: 100 * np.mean([r["map"] for r in mine if r["init"] == init])
                 for init in ("DeepCluster", "Random")}
        print(f"| {name} | {mode.upper()} | {mine[0]['epochs']} | {score['DeepCluster']:.1f} | "
              f"{score['Random']:.1f} | {score['DeepCluster'] - score['Random']:+.1f} |")
    write_json(args.json, {"args": vars(args) | settings | {"seeds": seeds},
                            "arch": pretrained.arch, "rows": rows})
    print(f"\nsaved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
