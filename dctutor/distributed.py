"""One DeepCluster run over several processes: torchrun and DistributedDataParallel.

``torchrun --nproc_per_node N -m dctutor train ...`` starts N copies of the same command and sets
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` for each; :func:`from_environment` joins them into a
process group (NCCL between GPUs, gloo on CPUs). The loop then splits each epoch's work
(:mod:`dctutor.deepcluster`):

1. every rank extracts the features of its own contiguous shard of the images, and
   :func:`gather_rows` puts the shards back together, in data-set order, on every rank;
2. rank 0 runs k-means and :func:`broadcast` sends its pseudo-labels to the others, so every rank
   trains on the same labels (k-means on GPUs is not bit-reproducible from one process to another);
3. every rank draws the same epoch order from the same seeded generator and trains on its own
   slice of each global batch, so uniform sampling over the clusters still holds for the epoch
   as a whole; DistributedDataParallel averages the gradients, so ``batch_size`` stays the global
   batch and the learning rate needs no change;
4. rank 0 alone writes the checkpoint and the history, which resume with any number of processes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's place in a run: its ``rank`` among ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints; the others compute."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Group()


def from_environment() -> Group:
    """The group torchrun described in the environment, joined; :data:`SINGLE` without torchrun.

    NCCL when CUDA is present (each process on GPU ``LOCAL_RANK``), gloo otherwise.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    group = Group(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(group.local_rank)
        dist.init_process_group(backend)
    return group


def shard(n: int, group: Group) -> range:
    """The indices of the ``n`` images that ``group.rank`` handles: contiguous, sizes within one."""
    per_rank, extra = divmod(n, group.world_size)
    start = group.rank * per_rank + min(group.rank, extra)
    return range(start, start + per_rank + (group.rank < extra))


def gather_rows(local: torch.Tensor, n: int, group: Group) -> torch.Tensor:
    """Every rank's rows of a (shard, d) tensor, concatenated in rank order: the (n, d) whole."""
    if not group.distributed:
        return local
    longest = len(shard(n, Group(0, group.world_size)))  # rank 0's shard is never shorter
    padded = torch.zeros(longest, *local.shape[1:], dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(group.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: len(shard(n, Group(rank, group.world_size)))] for rank, part in enumerate(parts)])


def broadcast(tensor: torch.Tensor, group: Group) -> torch.Tensor:
    """Rank 0's ``tensor`` on every rank (in place; same shape and dtype everywhere)."""
    if group.distributed:
        dist.broadcast(tensor, src=0)
    return tensor


def mean_over_ranks(value: float, group: Group, device: torch.device) -> float:
    """The mean of ``value`` over the ranks."""
    if not group.distributed:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total) / group.world_size


def average_buffers(model: torch.nn.Module, group: Group) -> None:
    """Average the floating buffers (BatchNorm's running statistics) over the ranks, in place.

    DistributedDataParallel keeps the weights equal but lets each rank update its running
    statistics on its own half of every batch; features are extracted in eval mode from these
    statistics, so every rank must hold the same ones before the next epoch clusters."""
    if not group.distributed:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(group.world_size)


def barrier(group: Group) -> None:
    """Wait until every rank gets here (rank 0 has finished writing, say)."""
    if group.distributed:
        dist.barrier()
