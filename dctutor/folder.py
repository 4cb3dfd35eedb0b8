"""Bring your own images: decode an ImageFolder tree into memory, with clear errors."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from .progress import tqdm


def image_folder(path: Path, split: str) -> ImageFolder:
    """The file list of ``path/split/<class>/*`` (or ``path/<class>/*`` when there is no split folder),
    as a torchvision ``ImageFolder`` whose loader does not open anything yet."""
    if not path.is_dir():
        raise FileNotFoundError(f"folder {str(path)!r} does not exist; 'folder:<path>' needs an ImageFolder "
                                f"tree such as <path>/train/<class>/*.jpg")
    split_dir = path / split
    if split_dir.is_dir():
        path = split_dir
    elif any((path / s).is_dir() for s in ("train", "test", "val")):
        found = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise ValueError(f"split={split!r} has no folder under {str(path)!r}; found {found}")
    return _VisibleImageFolder(str(path), loader=lambda file: file,
                               is_valid_file=lambda file: _visible(file) and file.lower().endswith(IMG_EXTENSIONS))


def _visible(path: str) -> bool:
    return not any(part.startswith(".") for part in Path(path).parts[-2:])


class _VisibleImageFolder(ImageFolder):
    """ImageFolder that ignores hidden folders (``.ipynb_checkpoints``, ``.git``): they are not classes."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(entry.name for entry in os.scandir(directory)
                         if entry.is_dir() and not entry.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"no class folders under {directory!r}; 'folder:<path>' needs "
                                    f"<path>/<class>/*.jpg (or <path>/<split>/<class>/*.jpg)")
        return classes, {name: i for i, name in enumerate(classes)}


def to_rgb8(img: Image.Image, file: str) -> Image.Image:
    """``img`` as 8-bit RGB. 16-bit grayscale is scaled to 0-255 (``convert("RGB")`` would clip it to
    white); 32-bit integer and float pixels have no standard scale, so they are refused, naming the file."""
    if img.mode.startswith("I;16"):
        pixels = np.asarray(img).astype(np.float64) / 257.0
        return Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8)).convert("RGB")
    if img.mode in ("I", "F"):
        raise ValueError(f"image {file!r} has {'float' if img.mode == 'F' else '32-bit integer'} pixels, which "
                         f"have no standard 0-255 scale; save it as an 8-bit PNG or JPEG")
    return img.convert("RGB")


def decode_file(file: str, size: int) -> np.ndarray:
    """One image file as a uint8 ``(size, size, 3)`` RGB array; a file that cannot be decoded raises
    ``ValueError`` with its path, rather than a PIL traceback halfway through an epoch."""
    try:
        with Image.open(file) as img:
            return np.asarray(to_rgb8(img, file).resize((size, size), Image.Resampling.BILINEAR))
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot decode image {file!r} ({err}); remove or replace the file") from err


def decode_images(files: list[str], size: int, desc: str = "decoding", progress: bool = True) -> torch.Tensor:
    """Decode ``files`` to a uint8 ``(n, 3, size, size)`` tensor, converted to RGB and resized."""
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, file in enumerate(tqdm(files, desc=desc, leave=False, disable=not progress)):
        images[i] = decode_file(file, size)
    return torch.from_numpy(images).permute(0, 3, 1, 2)
