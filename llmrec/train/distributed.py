"""Multi-process training with torch.distributed, as launched by `torchrun` (DDP; gloo on CPU, nccl on GPUs).

    torchrun --standalone --nproc_per_node 2 -m llmrec train -c my.yaml -m llmrec
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_from_environment() -> None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a no-op for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """True for rank 0, the process that writes checkpoints, models and results."""
    return rank_and_world()[0] == 0
