"""Bring your own images: decode an ImageFolder tree into memory, with clear errors."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from .progress import tqdm


def image_folder(path: Path, split: str) -> ImageFolder:
    """The file list of ``path/split/<class>/*`` (or ``path/<class>/*``, the split ``"train"``, when
    there is no split folder), as a torchvision ``ImageFolder`` whose loader does not open anything yet."""
    if not path.is_dir():
        raise FileNotFoundError(f"folder {str(path)!r} does not exist; 'folder:<path>' needs an ImageFolder "
                                f"tree such as <path>/train/<class>/*.jpg")
    split_dir = path / split
    if split_dir.is_dir():
        path = split_dir
    elif any((path / s).is_dir() for s in ("train", "test", "val")):
        found = sorted(p.name for p in path.iterdir() if p.is_dir())
        raise ValueError(f"split={split!r} has no folder under {str(path)!r}; found {found}")
    elif split != "train":
        # A flat tree is one split: reading it as another would score a probe on its training images.
        raise ValueError(f"split={split!r} but {str(path)!r} has no split folders, only <class>/ ones, so it "
                         f"is read as split 'train'; to hold out images, move them to "
                         f"{str(path / split)}/<class>/ and the rest to {str(path / 'train')}/<class>/")
    return _VisibleImageFolder(str(path), loader=lambda file: file,
                               is_valid_file=lambda file: _visible(file) and file.lower().endswith(IMG_EXTENSIONS))


def _visible(path: str) -> bool:
    return not any(part.startswith(".") for part in Path(path).parts[-2:])


class _VisibleImageFolder(ImageFolder):
    """ImageFolder that ignores hidden folders (``.ipynb_checkpoints``, ``.git``): they are not classes,
    and that reads each image once, under its own class (see :func:`class_files`)."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        try:
            classes = sorted(entry.name for entry in os.scandir(directory)
                             if entry.is_dir() and not entry.name.startswith("."))
        except PermissionError as err:
            raise PermissionError(f"cannot list folder {directory!r} ({err.strerror}); make it readable "
                                  f"(e.g. chmod u+rx) or point folder: elsewhere") from None
        if not classes:
            raise FileNotFoundError(f"no class folders under {directory!r}; 'folder:<path>' needs "
                                    f"<path>/<class>/*.jpg (or <path>/<split>/<class>/*.jpg)")
        return classes, {name: i for i, name in enumerate(classes)}

    @staticmethod
    def make_dataset(directory: str, class_to_idx: dict[str, int], extensions=None, is_valid_file=None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        # torchvision walks with followlinks=True and skips unreadable folders silently: a link to '.'
        # or '..' multiplied the images and pulled other classes' files in under this one's label.
        seen: dict[str, str] = {}
        samples, empty = [], []
        for name in sorted(class_to_idx):
            files = class_files(os.path.join(directory, name), directory, is_valid_file, seen)
            samples += [(file, class_to_idx[name]) for file in files]
            if not files:
                empty.append(name)
        if empty and not allow_empty:
            raise FileNotFoundError(f"class folder(s) {empty} under {directory!r} hold no image files "
                                    f"({', '.join(IMG_EXTENSIONS)}); add images or remove the folder(s)")
        return samples


def class_files(class_dir: str, tree: str, is_valid_file: Callable[[str], bool], seen: dict[str, str]) -> list[str]:
    """The image files under ``class_dir``, in torchvision's order (folders sorted by path, files by name).

    Links are followed only where they cannot change the data set's meaning: a link (to a file or a
    folder) that leads back into ``tree`` (the folder holding the class folders) must stay in its own
    class folder and not reach a file already read, and a folder is never entered twice (no loops). Anything else
    raises ``ValueError`` naming the link, so no image counts twice or under another class's label.
    Links that lead out of the tree (a subset of ImageNet made of links) are read like files.
    ``seen`` maps each real path already read to the path it was read under (shared by the classes).
    An unreadable folder raises ``PermissionError`` naming it.
    """
    tree = os.path.realpath(tree)
    own = os.path.realpath(class_dir)
    visited = {own}
    found: list[tuple[str, list[str]]] = []
    pending = [(class_dir, own)]
    while pending:
        folder, real_folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except PermissionError as err:
            raise PermissionError(f"cannot read folder {folder!r} ({err.strerror}); make it readable "
                                  f"(e.g. chmod -R u+rX) or move it out of the data set") from None
        names = []
        for entry in entries:
            link = entry.is_symlink()
            real = os.path.realpath(entry.path) if link else os.path.join(real_folder, entry.name)
            if link and not os.path.exists(real):
                if is_valid_file(entry.path):
                    raise ValueError(f"link {entry.path!r} points to {real!r}, which does not exist; "
                                     f"remove the link or restore its target")
                continue
            if link and _inside(real, tree) and not _inside(real, own):
                raise ValueError(f"link {entry.path!r} points to {real!r}, outside its class folder {class_dir!r}: "
                                 f"its images would be labelled with this class; remove the link")
            if entry.is_dir():
                if real in visited or (link and _inside(own, real)):
                    raise ValueError(f"link {entry.path!r} points to {real!r}, a folder already read: its "
                                     f"images would count twice; remove the link")
                if link and _inside(real, own):
                    raise ValueError(f"link {entry.path!r} points back into its own class folder ({real!r}), "
                                     f"whose images are read anyway: they would count twice; remove the link")
                visited.add(real)
                pending.append((entry.path, real))
            elif is_valid_file(entry.path):
                if real in seen:
                    raise ValueError(f"{entry.path!r} is the same file as {seen[real]!r} (a link): it would "
                                     f"count twice; remove one of them")
                seen[real] = entry.path
                names.append(entry.name)
        found.append((folder, sorted(names)))
    return [os.path.join(folder, name) for folder, names in sorted(found) for name in names]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


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
    except FileNotFoundError:
        # Listed when the folder was read, gone now: the data set changed under the run.
        raise FileNotFoundError(f"image {file!r} has vanished since the folder was listed: the data set "
                                f"changed; restore the file, or start again on the data as it is now") from None
    except PermissionError as err:
        raise PermissionError(f"cannot read image {file!r} ({err.strerror}); make it readable "
                              f"(e.g. chmod u+r) or remove it") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot decode image {file!r} ({err}); remove or replace the file") from err


def decode_images(files: list[str], size: int, desc: str = "decoding", progress: bool = True) -> torch.Tensor:
    """Decode ``files`` to a uint8 ``(n, 3, size, size)`` tensor, converted to RGB and resized."""
    try:
        images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    except MemoryError:
        need = len(files) * size * size * 3 / 2**30
        raise MemoryError(f"{len(files)} images of {size}x{size} px need {need:.1f} GiB, more than this machine "
                          f"can hold; stream them from disk (stream=True, the CLI's --stream), or lower n or "
                          f"image_size") from None
    for i, file in enumerate(tqdm(files, desc=desc, leave=False, disable=not progress)):
        images[i] = decode_file(file, size)
    return torch.from_numpy(images).permute(0, 3, 1, 2)
