"""Bring your own images: decode an ImageFolder tree into memory, with clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder

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
    return ImageFolder(str(path), loader=lambda file: file)


def decode_images(files: list[str], size: int, desc: str = "decoding") -> torch.Tensor:
    """Decode ``files`` to a uint8 ``(n, 3, size, size)`` tensor, converted to RGB and resized.

    A file that cannot be decoded raises ``ValueError`` with its path, rather than a PIL traceback
    halfway through an epoch.
    """
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, file in enumerate(tqdm(files, desc=desc, leave=False)):
        try:
            with Image.open(file) as img:
                images[i] = np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot decode image {file!r} ({err}); remove or replace the file") from err
    return torch.from_numpy(images).permute(0, 3, 1, 2)
