"""Multi-process training with torch.distributed, as launched by `torchrun` (DDP). Each collective runs on the
backend of its tensors' device: gloo for a model on the CPU, NCCL for one on a GPU (each process takes the GPU of
its local rank).

    torchrun --standalone --nproc_per_node 2 -m llmrec train -c my.yaml -m llmrec
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist


def init_from_environment() -> None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a no-op for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank < torch.cuda.device_count():
            torch.cuda.set_device(local_rank)  # `cuda` then means this process's own GPU
        dist.init_process_group(backend=process_group_backend(torch.cuda.is_available()))


def process_group_backend(cuda: bool) -> str:
    """The backends of the process group: gloo for CPU tensors, and NCCL for CUDA tensors where there are GPUs;
    torch picks one per collective by the device of its tensors, so DDP over a model on the CPU uses gloo even on
    a machine with GPUs."""
    return "cpu:gloo,cuda:nccl" if cuda else "gloo"


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True for rank 0, the process that writes checkpoints, models and results."""
    return rank_and_world()[0] == 0


@contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks. For work that writes shared on-disk state
    (embedding cache, profile store): rank 0 writes it while the others wait, and they then only read it, so no
    two processes race on one SQLite file. A plain block without a process group."""
    rank, world = rank_and_world()
    if world > 1 and rank != 0:
        dist.barrier()
    yield
    if world > 1 and rank == 0:
        dist.barrier()
