"""Data-parallel chunked work with one writer: scoring and embedding under ``accelerate launch``.

Launched as ``accelerate launch --num_processes N [--multi_gpu|--cpu] -m skyrm score ...`` (or
torchrun), every process loads the model; rank 0 alone reads the work from the store, hands each
rank its slice of every block (``scatter``), takes the results back (``gather``) and writes them,
so the store keeps one writer and each block is committed once, in order. One process
(``WORLD_SIZE`` unset or 1) is the degenerate group: scatter and gather hand the work back
unchanged and nothing of torch.distributed loads.

Deliberately not here: what is computed (rm/score.py, embed.py); training's process group
(rm/runtime.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

from skyrm.errors import ModelError

T = TypeVar("T")


@dataclass
class Group:
    """This process's place among the workers: rank 0 of 1 without a launcher."""

    rank: int = 0
    world: int = 1
    device: str | None = None  # the device a launcher gave this rank (None: the caller's choice)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def scatter(self, parts: list[T] | None) -> T:
        """Rank 0 gives ``parts[r]`` to rank r (one part per rank); the others pass None."""
        if self.world == 1:
            assert parts is not None and len(parts) == 1
            return parts[0]
        import torch.distributed as dist

        out: list[Any] = [None]
        dist.scatter_object_list(out, parts if self.main else None, src=0)
        return out[0]

    def gather(self, value: T) -> list[T] | None:
        """Every rank's value, in rank order, on rank 0 (None elsewhere)."""
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world if self.main else None
        dist.gather_object(value, out, dst=0)
        return out

    def broadcast(self, value: T) -> T:
        """Rank 0's value on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def split(items: list[T], parts: int) -> list[list[T]]:
    """``items`` in ``parts`` contiguous slices whose sizes differ by at most one (rank order)."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for rank in range(parts):
        end = start + size + (rank < extra)
        out.append(items[start:end])
        start = end
    return out


def process_group(device: str | None = None) -> Group:
    """The group this process belongs to: one process, or one of WORLD_SIZE under a launcher."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState(cpu=device == "cpu")
    if not dist.is_initialized():
        raise ModelError("WORLD_SIZE > 1 but no process group: launch with 'accelerate launch' or torchrun")
    if state.device.type == "cuda" and device != "cpu":
        import torch

        torch.cuda.set_device(state.device)  # object collectives on NCCL use the current device
        return Group(state.process_index, state.num_processes, str(state.device))
    return Group(state.process_index, state.num_processes, "cpu" if device in (None, "cpu") else device)
