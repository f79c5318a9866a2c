"""How long and how fast a run trains: the learning-rate schedule (:class:`ExampleHalvingLR`) and the stage plans
(:class:`StagePlan`, :func:`plan_stages`, with the baseline's budget rule).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..progress import run_job
from .config import DEFAULT_STREAM_STEPS, TrainConfig
from .datasets import batches_per_epoch
from .inputs import TrainData, TrainInputs, resolve_inputs


class ExampleHalvingLR:
    """Liu et al.'s schedule: ``lr = base * factor ** floor(examples_seen / every)`` (factor 0.5: halving).

    Call :meth:`step` with the number of training examples seen so far (over all ranks) after each update.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, every: int, factor: float = 0.5) -> None:
        self.optimizer = optimizer
        self.every = int(every)
        self.factor = float(factor)
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.examples = 0

    def lr_at(self, examples: int) -> list[float]:
        """The learning rates after ``examples`` examples."""
        k = int(examples) // self.every
        return [b * self.factor**k for b in self.base_lrs]

    def step(self, examples: int) -> None:
        """Set the rates for ``examples`` examples seen."""
        self.examples = int(examples)
        for group, lr in zip(self.optimizer.param_groups, self.lr_at(self.examples), strict=True):
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state."""
        return {"every": self.every, "factor": self.factor, "base_lrs": list(self.base_lrs), "examples": self.examples}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` and set the rates."""
        self.every = int(state["every"])
        self.factor = float(state["factor"])
        self.base_lrs = [float(b) for b in state["base_lrs"]]
        self.step(int(state["examples"]))


@dataclass(frozen=True)
class StagePlan:
    """One stage's planned length.

    Attributes:
        name: ``"patches"`` or ``"whole"``.
        epochs: number of epochs.
        steps_per_epoch: optimizer steps of a full epoch.
        last_epoch_steps: steps of the last epoch (shorter for a baseline cut at the curriculum's budget).
    """

    name: str
    epochs: int
    steps_per_epoch: int
    last_epoch_steps: int

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole stage."""
        return (self.epochs - 1) * self.steps_per_epoch + self.last_epoch_steps

    def steps_in_epoch(self, epoch: int) -> int:
        """Steps of epoch ``epoch`` (0-based)."""
        return self.last_epoch_steps if epoch == self.epochs - 1 else self.steps_per_epoch


def stage_plans(config: TrainConfig, inputs: TrainInputs, world: int) -> list[StagePlan]:
    """The stage plans of ``config`` on resolved ``inputs`` with ``world`` ranks (see :func:`plan_stages`)."""
    e = config.epochs
    whole = 0
    if inputs.images is not None:
        whole = batches_per_epoch(int((inputs.images["split"] == "train").sum()), config.batch_size, world)
    if inputs.train_table is not None:
        patch = batches_per_epoch(len(inputs.train_table), config.batch_size, world)
        if config.steps_per_epoch is not None:
            patch = min(patch, config.steps_per_epoch)
    elif config.steps_per_epoch is not None:
        patch = config.steps_per_epoch
    else:
        patch = whole if config.track == "cxr" and whole else DEFAULT_STREAM_STEPS
    if config.stage == "patches":
        return [StagePlan("patches", e, patch, patch)]
    if config.stage == "whole":
        return [StagePlan("whole", e, whole, whole)]
    if config.stage == "curriculum":
        return [StagePlan("patches", e, patch, patch), StagePlan("whole", e, whole, whole)]
    total = e * patch + e * whole
    epochs = math.ceil(total / whole)
    return [StagePlan("whole", epochs, whole, total - (epochs - 1) * whole)]


def plan_stages(config: TrainConfig, data: TrainData, *, world_size: int = 1) -> list[StagePlan]:
    """The stages a run of ``config`` on ``data`` trains, with their epochs and optimizer steps.

    For ``baseline`` this applies the budget rule: the same number of optimizer steps as the curriculum plans.
    Reads tables and labels (and prepares slides given as ``TrainData.slides``), no pixels.
    """
    return stage_plans(config, run_job(resolve_inputs(config, data, samplers=False)), world_size)
