"""Uniform sampling over pseudo-labels, against trivial parametrization (Caron et al., ECCV 2018, Sec. 3.3).

When a few clusters hold most images, the convnet learns to tell only those apart; in the extreme
case (all clusters but one are singletons) it can predict the same output whatever the input.
Sec. 3.3 avoids this by drawing images uniformly over the pseudo-labels, which amounts to weighting
each image's loss by the inverse size of its cluster. :class:`UniformLabelSampler` is the sampling
form, :func:`inverse_frequency_weights` the weighting form.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .validation import check_int, check_labels

Labels = Sequence[int] | np.ndarray | torch.Tensor


def inverse_frequency_weights(labels: Labels) -> torch.Tensor:
    """Per-image loss weights N / (n_nonempty * size of the image's cluster), float32, shape (N,).

    The weighting equivalent of uniform sampling (Sec. 3.3): the weights sum to N, so the loss
    keeps its scale, and every non-empty cluster carries the same total, N / n_nonempty.
    """
    array = check_labels(labels)
    sizes = np.bincount(array)
    weights = len(array) / (np.count_nonzero(sizes) * sizes[array].astype(np.float64))
    return torch.from_numpy(weights.astype(np.float32))


class UniformLabelSampler(torch.utils.data.Sampler[int]):
    """Yield dataset indices with an equal share from every non-empty cluster (Sec. 3.3).

    Each pass draws ``num_samples`` indices (default: one per image): every non-empty cluster gets
    ``num_samples // n_nonempty`` of them and ``num_samples % n_nonempty`` randomly chosen clusters
    get one more, so the shares differ by at most one. Empty ids (k-means may leave some unused)
    are skipped by construction; the original DeepCluster code crashed on them. A cluster whose
    quota fits in it gives a random subset without repeats; a smaller one gives all its images
    once and fills the rest with replacement, so images repeat only where they must. The pass is
    then shuffled.

    Every ``__iter__`` draws a fresh order from ``generator``, so epochs differ while a generator
    seeded the same way replays the same sequence of epochs. ``generator=None`` seeds a private
    generator once from torch's global RNG, so ``torch.manual_seed`` still makes runs repeatable.
    Attributes for the chapters: ``cluster_sizes`` (images per id, zeros included) and ``n_nonempty``.
    """

    def __init__(self, labels: Labels, num_samples: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        array = check_labels(labels)
        if num_samples is None:
            num_samples = len(array)
        check_int(num_samples, "num_samples", 1, "num_samples=len(labels)")
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        elif not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}; "
                            f"e.g. generator=torch.Generator().manual_seed(0)")
        self.num_samples = int(num_samples)
        self.generator = generator
        self.cluster_sizes = np.bincount(array)
        self.n_nonempty = int(np.count_nonzero(self.cluster_sizes))
        # One sort groups the images of each cluster, instead of one scan of labels per cluster.
        order = torch.from_numpy(np.argsort(array, kind="stable"))
        self._members = [m for m in torch.split(order, self.cluster_sizes.tolist()) if len(m)]

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        share, extra = divmod(self.num_samples, self.n_nonempty)
        quotas = torch.full((self.n_nonempty,), share)
        quotas[torch.randperm(self.n_nonempty, generator=self.generator)[:extra]] += 1
        picked = []
        for members, quota in zip(self._members, quotas.tolist()):
            size = len(members)
            if quota <= size:
                picked.append(members[torch.randperm(size, generator=self.generator)[:quota]])
            else:
                repeats = torch.randint(size, (quota - size,), generator=self.generator)
                picked.append(torch.cat([members, members[repeats]]))
        indices = torch.cat(picked)
        yield from indices[torch.randperm(len(indices), generator=self.generator)].tolist()
