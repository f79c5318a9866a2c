"""The distributed context of a run (rank, world size, collectives), determinism settings, seeding and the
weights digest that every rank can compare.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    """This process's place in a run: rank, world size and local rank (one process: 0, 1, None)."""

    rank: int = 0
    world: int = 1
    local_rank: int | None = None

    @classmethod
    def current(cls) -> DistContext:
        """The context of the initialized process group (a single-process context when there is none)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
        return cls()

    @property
    def enabled(self) -> bool:
        """True with more than one process."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """True on rank 0 (the process that writes files and warns)."""
        return self.rank == 0

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over ranks, in place (unchanged with one process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        """Wait for every rank (nothing with one process)."""
        if self.enabled:
            dist.barrier()

    def sync_buffers(self, model: nn.Module) -> None:
        """Make every rank's buffers (BatchNorm statistics) equal to rank 0's."""
        if self.enabled:
            for buffer in model.buffers():
                dist.broadcast(buffer.data, src=0)


@contextlib.contextmanager
def determinism(on: bool, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms (and no cuDNN autotuning) while training; the previous settings after.

    The setting is process-wide while the job runs (also while the generator waits between reports).
    """
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    if on:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # bit-exact on the CPU; on accelerators an op without a deterministic kernel warns instead of failing
        torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def seed_everything(*key: int) -> None:
    """Seed torch (all devices), numpy's and Python's global RNGs from an integer key."""
    words = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    torch.manual_seed(int(words[0]) << 32 | int(words[1]))
    np.random.seed(int(words[0]))  # noqa: NPY002 - the legacy global RNG that third-party code may use
    random.seed(int(words[1]))


def state_digest(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """sha256 over a model's state dict (names, dtypes, shapes and values, in name order)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
