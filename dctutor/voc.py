"""PASCAL VOC 2007 as a multi-label classification data set, read through torchvision.

DeepCluster judges its features by how well they transfer to VOC 2007 classification (paper
Sec. 4.4, Table 2): 20 object classes, an image is positive for every class it contains, and the
score is the mean over classes of the average precision. Objects that the annotators marked
"difficult" do not count either way: an image whose only objects of a class are difficult is
neither a positive nor a negative for that class (VOC's image-level label 0). We keep that
information as a ``mask`` next to the 0/1 ``targets``: the loss and the AP ignore masked entries.

:class:`VOCClassification` reads the real data through ``torchvision.datasets.VOCDetection``, so
``download=True`` fetches it. :func:`dctutor.voc_standin.make_voc_standin` writes a synthetic data
set in exactly the same folder layout, so the same loader runs with no network.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from .data import eval_transform
from .folder import to_rgb8
from .progress import tqdm

# The official order of the VOC challenge (and of torchvision, Detectron, the VOC devkit).
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
SPLITS = ("train", "val", "trainval", "test")
RESIZE_MODES = ("square", "shorter")


def _missing_voc(root: Path, what: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"VOC 2007 is not under root={str(root)!r} (missing {what}). Pass download=True to fetch it with "
        f"torchvision (needs internet), unpack a copy so that {root / 'VOCdevkit' / 'VOC2007'} holds "
        f"JPEGImages/, Annotations/ and ImageSets/Main/, or generate the offline stand-in with "
        f"dctutor.voc_standin.make_voc_standin({str(root)!r})."
    )


def parse_annotation(annotation: dict, source: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Image-level ``(target, mask)`` (two float32 arrays of 20) from one parsed VOC annotation.

    ``target[c] = 1`` when the image has at least one non-difficult object of class ``c``;
    ``mask[c] = 0`` when its only objects of class ``c`` are difficult (VOC's label 0: ignored).
    ``annotation`` is what ``VOCDetection`` returns as target (``{"annotation": {"object": [...]}}``).
    """
    target = np.zeros(len(VOC_CLASSES), np.float32)
    difficult_only = np.zeros(len(VOC_CLASSES), bool)
    objects = annotation.get("annotation", annotation).get("object", [])
    if isinstance(objects, dict):
        objects = [objects]
    for obj in objects:
        name = obj.get("name", "").strip()
        if name not in VOC_CLASSES:
            raise ValueError(f"{source or 'annotation'}: object name {name!r} is not a VOC class {list(VOC_CLASSES)}")
        c = VOC_CLASSES.index(name)
        if str(obj.get("difficult", "0")).strip() == "1":
            difficult_only[c] = True
        else:
            target[c] = 1.0
    mask = np.where(difficult_only & (target == 0), 0.0, 1.0).astype(np.float32)
    return target, mask


def _load_resized(path: str, size: int, resize: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = to_rgb8(img, path)
            if resize == "square":
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            else:  # shorter side to size, then the central size x size square
                w, h = img.size
                scale = size / min(w, h)
                img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                 Image.Resampling.BILINEAR)
                w, h = img.size
                left, top = (w - size) // 2, (h - size) // 2
                img = img.crop((left, top, left + size, top + size))
            return np.asarray(img)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot decode image {path!r} ({err}); remove or replace the file") from err


class VOCClassification(Dataset):
    """VOC 2007 ``split`` as in-memory uint8 images with 20-class ``targets`` and an ignore ``mask``.

    Built on ``torchvision.datasets.VOCDetection(root, year="2007", image_set=split,
    download=download)``: ``root`` is the folder that holds ``VOCdevkit/``. Every image is decoded
    once and resized to ``image_size`` (``resize="square"`` warps the whole image to a square, which
    keeps every object; ``"shorter"`` scales the shorter side and keeps the central square), then kept
    as one uint8 tensor ``images`` (N, 3, S, S), like :class:`dctutor.data.ImageDataset`.
    ``targets`` and ``mask`` are float32 (N, 20) (see :func:`parse_annotation`); ``ids`` are the
    VOC image ids. ``dataset[i]`` is ``(transform(image), target, mask)``.
    """

    def __init__(self, root: str | Path = "data", split: str = "trainval", *, image_size: int = 64,
                 resize: str = "square", download: bool = False, progress: bool = True,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        from torchvision.datasets import VOCDetection

        if not isinstance(root, (str, Path)):
            raise TypeError(f"root must be a path (the folder holding VOCdevkit/), got {type(root).__name__}")
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is unknown for VOC 2007; use one of {list(SPLITS)}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or not 8 <= image_size <= 512:
            raise ValueError(f"image_size must be an int between 8 and 512 pixels, got {image_size!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize={resize!r} is unknown; use one of {list(RESIZE_MODES)}")
        root = Path(root)
        voc_root = root / "VOCdevkit" / "VOC2007"
        if not download:
            if not voc_root.is_dir():
                raise _missing_voc(root, voc_root)
            split_file = voc_root / "ImageSets" / "Main" / f"{split}.txt"
            if not split_file.is_file():
                raise FileNotFoundError(
                    f"split={split!r} has no list {split_file}; this copy of VOC 2007 has "
                    f"{sorted(p.stem for p in split_file.parent.glob('*.txt') if '_' not in p.stem)} "
                    f"(the trainval archive has no test set: train on 'train', report on 'val')")
        try:
            voc = VOCDetection(str(root), year="2007", image_set=split, download=download)
        except RuntimeError as err:
            raise _missing_voc(root, voc_root) from err
        n = len(voc)
        if n == 0:
            raise ValueError(f"split={split!r} lists no images (ImageSets/Main/{split}.txt under {voc_root} is "
                             f"empty); restore the list from the VOC archive, or regenerate the stand-in")
        try:
            images = np.empty((n, image_size, image_size, 3), np.uint8)
        except MemoryError:
            raise MemoryError(f"{n} VOC images of {image_size}x{image_size} px do not fit in memory; lower "
                              f"image_size") from None
        targets = np.zeros((n, len(VOC_CLASSES)), np.float32)
        mask = np.ones((n, len(VOC_CLASSES)), np.float32)
        for i in tqdm(range(n), desc=f"VOC2007 {split}", disable=not progress, leave=False):
            ann_path = voc.annotations[i]
            if not Path(ann_path).is_file():
                raise FileNotFoundError(f"annotation {ann_path} is missing for image id "
                                        f"{Path(ann_path).stem} listed in {split}.txt")
            try:
                annotation = voc.parse_voc_xml(ET.parse(ann_path).getroot())
            except ET.ParseError as err:  # a truncated or edited file
                raise ValueError(f"annotation {ann_path} is not valid XML ({err}); restore it from the VOC "
                                 f"archive (or regenerate the stand-in)") from None
            targets[i], mask[i] = parse_annotation(annotation, ann_path)
            images[i] = _load_resized(voc.images[i], image_size, resize)
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        self.targets, self.mask = torch.from_numpy(targets), torch.from_numpy(mask)
        self.ids = [Path(p).stem for p in voc.images]
        self.classes, self.split, self.root = list(VOC_CLASSES), split, root
        self.transform = transform if transform is not None else eval_transform()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.transform(self.images[index]), self.targets[index], self.mask[index]

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def class_counts(self) -> np.ndarray:
        """Positive (non-difficult) images per class."""
        return (self.targets * self.mask).sum(0).numpy().astype(int)
