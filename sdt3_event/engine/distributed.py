"""torchrun / DDP helpers: process-group setup, rank queries, samplers, metric reduction."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

from sdt3_event.events.loader import EpochShuffleSampler, ShardSampler  # noqa: F401 (their home)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``; ``local_rank`` picks its GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); a single process when they are absent.

    The backend is NCCL on CUDA and gloo on CPU (multi-node works the same way through torchrun's
    ``--nnodes``/``--rdzv-endpoint``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        logger.info("joined process group: rank %d of %d (%s)", rank, world, backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def cleanup_distributed(synchronize: bool = True) -> None:
    """Leave the process group.

    With ``synchronize`` every rank first waits at a barrier, so all ranks leave together, after
    rank 0 has written its last checkpoint and no collective is still in flight. Pass ``False``
    when leaving on an error: the peers may never arrive.
    """
    if dist.is_available() and dist.is_initialized():
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def launched_distributed() -> bool:
    """Whether torchrun (or another launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def exit_process(code: int) -> NoReturn:
    """End a process that took part in a distributed run, skipping interpreter teardown.

    PyTorch's gloo backend can abort a finished process (SIGABRT, "terminate called without an
    active exception", so torchrun reports the whole run failed): DistributedDataParallel keeps
    the process group alive past ``destroy_process_group``, and when a gloo worker thread
    releases the last reference to a collective's tensor during interpreter shutdown it cannot
    take the GIL (pytorch/pytorch#190489). Everything the run wrote is closed by then, so the
    entry points flush the standard streams and logging and leave with ``os._exit``.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a list of numbers over all processes (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()
