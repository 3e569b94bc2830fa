"""Multi-process training under ``torchrun`` (DistributedDataParallel), and nothing else.

``torchrun --nproc_per_node N -m daer_core.cli.main train ...`` starts N processes and sets
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in each; :func:`context` reads them, joins the
process group (NCCL on CUDA, gloo on CPU) and gives each process its own device. daer never
starts processes itself. Rank 0 alone writes the run directory; the others wait for it at
the points where they must read what it wrote.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (in place, returned)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


_SINGLE = DistContext()


def context(device_setting: str = "auto") -> DistContext:
    """The process's place in a ``torchrun`` job (joining its process group on first call),
    or a single-process context when not launched by ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _SINGLE
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_setting in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank=rank, local_rank=local_rank, world=world)


def device_for(ctx: DistContext, device: torch.device) -> torch.device:
    """One CUDA device per process (``cuda:LOCAL_RANK``) in a multi-GPU job."""
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def shutdown() -> None:
    """Leave the process group at the end of a ``torchrun`` job (no-op otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
