"""Real data in the layout the benchmarks read: an ImageFolder tree of JPEGs.

CIFAR-10 and STL-10 are published as pickled batches and raw binaries; the benchmarks and the
``folder:`` data sets read ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``. :func:`prepare`
reads the public files through torchvision (``download=True`` fetches them) and writes that tree,
so every real-data number in the book can be reproduced from the public download.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from .data import load_dataset
from .progress import tqdm

SOURCES = ("cifar10", "stl10")
_MARKER = ".dctutor-prepare"  # marks a half-written tree that a later prepare may delete


def prepare(name: str, out: str | Path, *, root: str | Path = "data", download: bool = False,
            quality: int = 95, progress: bool = True) -> Path:
    """Write data set ``name`` (``cifar10`` or ``stl10``) as JPEGs under ``out/{train,test}/<class>/``.

    The public files are read from ``root`` (torchvision's layout: ``cifar-10-batches-py/``,
    ``stl10_binary/``), fetched there first when ``download`` is true. STL-10's labelled ``train``
    and ``test`` splits are written; its unlabelled split is read directly by ``load_dataset``.
    The tree is written to ``out.partial`` and renamed to ``out`` when complete: a run that fails or
    is interrupted removes it, and one killed outright leaves it marked, for the next call to replace.
    An existing ``out``, or an ``out.partial`` that prepare did not write, is never touched.
    Returns ``out``.
    """
    if name not in SOURCES:
        raise ValueError(f"name={name!r} cannot be prepared; choose one of {list(SOURCES)}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 50 <= quality <= 100:
        raise ValueError(f"quality must be an int between 50 and 100, got {quality!r}")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; remove it or choose another out folder")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        if not (partial / _MARKER).is_file():
            raise FileExistsError(f"{partial} exists and was not left by prepare; move it away or choose another "
                                  f"out folder")
        shutil.rmtree(partial)  # an earlier prepare that was interrupted
    partial.mkdir(parents=True)
    (partial / _MARKER).touch()
    try:
        for split in ("train", "test"):
            data = load_dataset(name, split, root=root, download=download)
            images = data.images.permute(0, 2, 3, 1).numpy()
            for i in tqdm(range(len(images)), desc=f"{name} {split}", disable=not progress):
                folder = partial / split / data.classes[int(data.targets[i])]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(folder / f"{i:05d}.jpg", quality=quality)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # only what this call wrote: nothing half done remains
        raise
    (partial / _MARKER).unlink()
    partial.rename(out)
    return out
