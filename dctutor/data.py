"""Data sets by name: offline ones the package makes, and real ones through torchvision.

``load_dataset(name, split)`` returns an :class:`ImageDataset`: a torch ``Dataset`` that keeps
every image as one uint8 tensor ``(N, 3, H, W)``. Holding the pixels in memory costs 150 MB
for all of CIFAR-10 and makes DeepCluster's epoch (a full forward pass, then training) free
of decoding; on a GPU the tensor can live on the device.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .shapes import SHAPE_CLASSES, make_shapes
from .validation import check_bool, check_int

if TYPE_CHECKING:  # only for the annotation: like .folder, .stream is imported when a folder loads
    from .stream import FolderImages

DATASETS = {
    "shapes": "10 procedural shapes in random colours on cluttered backgrounds (offline, any size)",
    "digits": "scikit-learn's 1 797 handwritten digits, 8x8 upsampled to 32 px (offline, real)",
    "cifar10": "CIFAR-10 through torchvision (download=True fetches it into root)",
    "stl10": "STL-10 through torchvision; splits train, test, unlabeled (download=True fetches it)",
    "folder:<path>": "any ImageFolder tree: <path>/<split>/<class>/*.jpg, or <path>/<class>/*.jpg",
}
_DEFAULT_SIZE = {"shapes": 32, "digits": 32, "cifar10": 32, "stl10": 96, "folder": 32}
# ImageNet statistics, as in the original DeepCluster pipeline.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class ImageDataset(Dataset):
    """Images as a uint8 tensor ``images`` (N, 3, H, W), labels ``targets`` (N,), class names ``classes``.

    ``targets`` is -1 where a data set has no label (STL-10 unlabeled). ``transform`` maps one
    uint8 image to the network's input; by default :func:`eval_transform`. ``files`` names the file
    of each image relative to its folder (``folder:`` data sets; None otherwise), so that a run
    resumed on a folder that changed can say which files came or went.
    """

    def __init__(self, images: torch.Tensor | FolderImages, targets: torch.Tensor, classes: list[str], name: str,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 files: list[str] | None = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        if files is not None and len(files) != len(images):
            raise ValueError(f"{len(images)} images but {len(files)} file names")
        self.images, self.targets, self.classes, self.name = images, targets.long(), classes, name
        self.files = files
        self.transform = transform if transform is not None else eval_transform()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), int(self.targets[index])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def with_transform(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> "ImageDataset":
        """The same images (shared, not copied) seen through another transform."""
        return ImageDataset(self.images, self.targets, self.classes, self.name, transform, self.files)

    def subset(self, indices: np.ndarray | torch.Tensor) -> "ImageDataset":
        """A new data set with the images at ``indices``."""
        indices = torch.as_tensor(indices, dtype=torch.long)
        files = None if self.files is None else [self.files[i] for i in indices.tolist()]
        return ImageDataset(self.images[indices], self.targets[indices], self.classes, self.name, self.transform,
                            files)


def eval_transform() -> v2.Compose:
    """uint8 image -> normalised float, no augmentation (what DeepCluster clusters, Sec. 3.4)."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


def load_dataset(name: str, split: str = "train", *, n: int | None = None, image_size: int | None = None,
                 seed: int = 0, root: str | Path = "data", download: bool = False, stream: bool = False,
                 workers: int = 2) -> ImageDataset:
    """Load data set ``name`` (see ``DATASETS``) as an :class:`ImageDataset`.

    ``n`` keeps a random subset of that many images (drawn with ``seed``; for ``shapes`` it is
    the number generated), ``image_size`` resizes to a square side in pixels (defaults: 32, and
    96 for STL-10). Real data sets live under ``root``; ``download=True`` lets torchvision fetch
    them, otherwise a missing one raises ``FileNotFoundError`` that says where to put it.
    ``stream=True`` (``folder:`` data sets only) leaves the images on disk, to be decoded batch
    by batch by ``workers`` processes (:mod:`dctutor.stream`): for trees larger than memory.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, one of {list(DATASETS)}; got {type(name).__name__}")
    kind = "folder" if name.startswith("folder:") else name
    if kind not in _DEFAULT_SIZE:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
    if kind == "folder" and not name[len("folder:"):].strip():
        raise ValueError("name='folder:' needs a path, e.g. 'folder:/data/cifar10-jpeg'")
    if n is not None:
        check_int(n, "n", 1, "n=2000 (or None for all images)")
    check_bool(stream, "stream")
    if stream and kind != "folder":
        raise ValueError(f"stream=True reads a 'folder:<path>' tree; {name} is held in memory, so drop stream "
                         f"(or point at an ImageFolder copy of it)")
    size = _DEFAULT_SIZE[kind] if image_size is None else check_int(image_size, "image_size", 8, "image_size=32",
                                                                       high=512)
    if kind == "shapes":
        images, labels = make_shapes(n or (2000 if split == "train" else 1000), seed=seed, size=size, split=split)
        return _finish(torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(labels),
                       list(SHAPE_CLASSES), name, None, size, seed)
    if kind == "digits":
        images, labels, classes = _digits(split)
    elif kind == "cifar10":
        images, labels, classes = _cifar10(Path(root), split, download)
    elif kind == "stl10":
        images, labels, classes = _stl10(Path(root), split, download)
    else:
        from .folder import decode_images, image_folder
        tree = image_folder(Path(name[len("folder:"):]), split)
        # Pick the subset before decoding: a 20 000-image subset of a large tree decodes only those files.
        keep = _subset(len(tree.samples), n, seed, name)
        samples = tree.samples if keep is None else [tree.samples[i] for i in keep]
        labels = torch.tensor([target for _, target in samples])
        files = [Path(file).relative_to(tree.root).as_posix() for file, _ in samples]
        if stream:
            from .stream import FolderImages
            return ImageDataset(FolderImages([file for file, _ in samples], size, workers), labels,
                                list(tree.classes), name, files=files)
        images = decode_images([file for file, _ in samples], size, desc=f"decoding {split}")
        return ImageDataset(images.contiguous(), labels, list(tree.classes), name, files=files)
    return _finish(images, labels, classes, name, n, size, seed)


def default_image_size(name: str) -> int:
    """The side in pixels that :func:`load_dataset` gives ``name`` when ``image_size`` is None, so a
    caller can check a network against the images before loading them."""
    kind = "folder" if isinstance(name, str) and name.startswith("folder:") else name
    if kind not in _DEFAULT_SIZE:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
    return _DEFAULT_SIZE[kind]


def _subset(total: int, n: int | None, seed: int, name: str) -> np.ndarray | None:
    """Sorted indices of a random subset of ``n`` out of ``total`` (None keeps everything)."""
    if n is None:
        return None
    if n > total:
        raise ValueError(f"n={n} but {name!r} has only {total} images in this split; lower n")
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))


def _finish(images: torch.Tensor, labels: torch.Tensor, classes: list[str], name: str,
            n: int | None, size: int, seed: int) -> ImageDataset:
    keep = _subset(len(images), n, seed, name)
    if keep is not None:
        images, labels = images[torch.from_numpy(keep)], labels[torch.from_numpy(keep)]
    if images.shape[-1] != size or images.shape[-2] != size:
        images = resize_uint8(images, size)
    return ImageDataset(images.contiguous(), labels, classes, name)


def resize_uint8(images: torch.Tensor, size: int, batch: int = 1024) -> torch.Tensor:
    """Resize a uint8 batch to ``size x size`` with antialiased bilinear interpolation."""
    out = [F.interpolate(images[i:i + batch].float(), size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).round().clamp(0, 255).to(torch.uint8)
           for i in range(0, len(images), batch)]
    return torch.cat(out)


def _digits(split: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is unknown for digits; use 'train' or 'test'")
    digits = load_digits()
    # A fixed stratified 70/30 split, independent of the caller's seed, so "test" never moves.
    train, test = train_test_split(np.arange(len(digits.target)), test_size=0.3, random_state=0,
                                   stratify=digits.target)
    idx = train if split == "train" else test
    gray = torch.from_numpy(digits.images[idx] / 16.0 * 255.0).round().to(torch.uint8)
    return gray.unsqueeze(1).expand(-1, 3, -1, -1), torch.from_numpy(digits.target[idx]), [str(d) for d in range(10)]


class MissingDataError(FileNotFoundError):
    """A torchvision data set is not under its root; ``name``, ``root`` and ``expected`` let a caller
    (the CLI) word the fix in its own options."""

    def __init__(self, name: str, root: Path, expected: str) -> None:
        self.name, self.root, self.expected = name, root.resolve(), expected
        super().__init__(f"{name} is not under {self.root} (expected {expected}). Pass download=True to fetch "
                         f"it (needs internet), copy the files there, or point load_dataset at an ImageFolder "
                         f"copy with name='folder:<path>'.")


def _cifar10(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from torchvision.datasets import CIFAR10

    if split not in ("train", "test"):
        raise ValueError(f"split={split!r} is unknown for cifar10; use 'train' or 'test'")
    try:
        ds = CIFAR10(str(root), train=split == "train", download=download)
    except RuntimeError as err:
        raise MissingDataError("CIFAR-10", root, "cifar-10-batches-py/") from err
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2), torch.tensor(ds.targets), list(ds.classes)


def _stl10(root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from torchvision.datasets import STL10

    if split not in ("train", "test", "unlabeled"):
        raise ValueError(f"split={split!r} is unknown for stl10; use 'train', 'test' or 'unlabeled'")
    try:
        ds = STL10(str(root), split=split, download=download)
    except RuntimeError as err:
        raise MissingDataError("STL-10", root, "stl10_binary/") from err
    return torch.from_numpy(ds.data), torch.from_numpy(ds.labels.astype(np.int64)), list(ds.classes)
