"""Data larger than memory: a folder's images left on disk and decoded batch by batch by workers.

:func:`dctutor.data.load_dataset` decodes a folder into one uint8 tensor, which is fastest while
the pixels fit in memory (all of CIFAR-10 is 150 MB). ImageNet at 224 px is about 190 GB, so with
``stream=True`` the data set holds a :class:`FolderImages` instead: the file list, decoded when a
batch is needed by the workers of a torch ``DataLoader``, with at most ``2 * workers`` batches in
flight. The loop reads pixels through :func:`batches` whichever kind it is given, so both paths
see the same pixels in the same order, and :func:`pixel_hash`, the fingerprint a checkpoint keeps,
is equal for both: a run started in memory resumes streamed, and the other way round.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .folder import decode_file, decode_images
from .validation import check_int


class FolderImages:
    """The uint8 pixels ``(N, 3, size, size)`` of a list of image files, left on disk.

    Like a tensor it has ``shape``, ``dtype``, ``device`` and ``len``; an integer index decodes one
    image, while a slice or an array of positions selects files without decoding them (a subset
    of ImageNet is a shorter list). :func:`batches` decodes with ``workers`` processes.
    """

    dtype = torch.uint8
    device = torch.device("cpu")

    def __init__(self, files: Sequence[str], size: int, workers: int = 2) -> None:
        self.files = [str(f) for f in files]
        self.size = check_int(size, "size", 1, "size=32")
        # Each worker is a process holding a batch or two; past a few per core they only add memory.
        self.workers = check_int(workers, "workers", 0, "workers=2", high=max(64, 4 * (os.cpu_count() or 1)))

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), 3, self.size, self.size))

    def dim(self) -> int:
        return 4

    def __getitem__(self, index) -> torch.Tensor | FolderImages:
        if isinstance(index, (int, np.integer)):
            # A copy in (3, H, W) order: batches then have the memory layout of the in-memory tensor.
            return torch.from_numpy(decode_file(self.files[index], self.size).transpose(2, 0, 1).copy())
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        positions = np.arange(len(self.files))[index]
        return FolderImages([self.files[i] for i in np.atleast_1d(positions)], self.size, self.workers)

    def decode(self) -> torch.Tensor:
        """Every image in memory, as :func:`dctutor.data.load_dataset` would hold them."""
        return decode_images(self.files, self.size, progress=False)


class _Decoded(Dataset):
    def __init__(self, images: FolderImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _positions(index, n: int) -> list[int]:
    if isinstance(index, slice):
        return list(range(*index.indices(n)))
    return torch.as_tensor(index).cpu().tolist()


def batches(images: torch.Tensor | FolderImages, index_batches: Sequence, *,
            pin_memory: bool = False) -> Iterator[torch.Tensor]:
    """The uint8 pixels of each batch of ``index_batches`` (slices or index tensors), in order.

    From a tensor, each batch is an index into it (a slice is a view, no copy). From
    :class:`FolderImages`, a ``DataLoader`` decodes the batches ahead in ``images.workers``
    processes (in this one when 0), two batches per worker at most, so memory stays bounded
    whatever the number of images.
    """
    if not isinstance(images, FolderImages):
        for index in index_batches:
            yield images[index]
        return
    plan = [_positions(index, len(images)) for index in index_batches]
    loader = DataLoader(_Decoded(images), batch_sampler=plan, num_workers=images.workers,
                        collate_fn=torch.stack, pin_memory=pin_memory,
                        prefetch_factor=2 if images.workers else None,
                        # Its own generator: starting workers must not draw from torch's global RNG,
                        # which the loop has seeded for dropout.
                        generator=torch.Generator().manual_seed(0))
    try:
        yield from loader
    except (ValueError, OSError) as err:
        # A worker's error arrives wrapped in its traceback; its last line is the message to show.
        lines = [line for line in str(err).splitlines() if line.strip()]
        if len(lines) > 1 and "DataLoader worker" in lines[0]:
            raise type(err)(lines[-1].split(": ", 1)[-1]) from None
        raise


def pixel_hash(images: torch.Tensor | FolderImages, batch_size: int = 1024) -> str:
    """A short hash of every pixel in order: equal for a tensor and for the same images streamed."""
    digest = hashlib.sha1()
    spans = [slice(s, s + batch_size) for s in range(0, len(images), batch_size)]
    for pixels in batches(images, spans):
        digest.update(pixels.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]
