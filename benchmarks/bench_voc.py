"""Transfer a DeepCluster run and a random twin to real VOC 2007 classification; prints a table.

    python benchmarks/bench_voc.py --voc ../shared/data/voc2007-trainval-256.tar.gz \\
        --run /tmp/bench_deepcluster_run --image-size 64

A thin wrapper around ``python -m dctutor transfer``: ``--voc`` may also be the trainval tarball,
which is unpacked to a temporary folder first (and deleted after, so no VOC image stays on disk).
The networks train on ``train`` (2 500 images) and are scored on ``val`` (2 508), the split the
paper chose its hyper-parameters on (Sec. 4.4); the archive has no test set. Every other option
is passed to ``dctutor transfer``; the numbers go to ``--json`` (default
``benchmarks/results/voc_transfer.json``).
"""
from __future__ import annotations

import sys
import tarfile
import tempfile
from pathlib import Path

from dctutor.cli import main as dctutor


def voc_root(path: str, tmp: str) -> str:
    """The folder holding VOCdevkit/: ``path`` itself, or the tarball unpacked into ``tmp``."""
    p = Path(path)
    if p.is_dir():
        return str(p.parent.parent if p.name == "VOC2007" else (p.parent if p.name == "VOCdevkit" else p))
    if not p.is_file():
        raise SystemExit(f"bench_voc: --voc {path} is neither a folder with VOCdevkit/ nor a tarball")
    with tarfile.open(p) as tar:
        tar.extractall(tmp, filter="data")
    return tmp


def main(argv: list[str]) -> int:
    args = list(argv)
    voc = "../shared/data/voc2007-trainval-256.tar.gz"
    if "--voc" in args:
        i = args.index("--voc")
        voc = args[i + 1]
        del args[i:i + 2]
    if "--json" not in args:
        args += ["--json", "benchmarks/results/voc_transfer.json"]
    with tempfile.TemporaryDirectory() as tmp:
        return dctutor(["transfer", "--voc", voc_root(voc, tmp), *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
