"""The training loop: the epochs of every stage, the loss and its checks, early stopping, saving on cancel;
:class:`TrainResult` is what it returns and :class:`TrainingError` what it raises when training cannot go on.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, PatchdxError
from ..progress import Job, Progress
from .config import TrainConfig
from .ddp import seed_everything, state_digest
from .inputs import TrainInputs
from .schedule import ExampleHalvingLR, StagePlan
from .trainer import Trainer


class TrainingError(PatchdxError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN or infinite); the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        out_dir: the run folder.
        last: ``last.safetensors`` (weights of the latest save), or None when nothing was saved.
        best: ``best.safetensors`` (best epoch of the latest stage), or None.
        history: one dict per epoch: stage, epoch (1-based within the stage), steps (global optimizer steps),
            train_loss, val_loss, val_auroc (class -> AUROC, NaN when undefined, and "mean"), val_accuracy,
            monitor (the early-stopping metric), examples_seen, lr, seconds, weights_sha256.
        stages: the planned stages.
        stopped_early: True when early stopping ended a stage.
        cancelled: True when ``stop`` ended the run (a resumable ``last`` was saved).
        weights_sha256: :func:`state_digest` of the final weights (equal on every DDP rank).
        global_step: optimizer steps done.
        examples_seen: training examples seen (all ranks).
    """

    out_dir: Path
    last: Path | None
    best: Path | None
    history: list[dict[str, Any]]
    stages: list[StagePlan]
    stopped_early: bool = False
    cancelled: bool = False
    weights_sha256: str = ""
    global_step: int = 0
    examples_seen: int = 0


def _compute_loss(criterion: nn.Module, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The training loss of one batch (a separate function so tests can inject failures)."""
    return criterion(logits, targets)


def _pos_weight(config: TrainConfig, counts: tuple[np.ndarray, int] | None, classes: Sequence[str]) -> list[float]:
    if config.class_weights is None:
        return [1.0] * len(classes)
    if isinstance(config.class_weights, list):
        if len(config.class_weights) != len(classes):
            raise ConfigError(
                f"class_weights has {len(config.class_weights)} values but there are {len(classes)} classes "
                f"({', '.join(classes)})"
            )
        return [float(w) for w in config.class_weights]
    if counts is None:
        return [1.0] * len(classes)
    positives, n = counts
    return [float((n - p) / p) if 0 < p < n else 1.0 for p in positives]


def train_loop(
    trainer: Trainer,
    core: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: ExampleHalvingLR,
    inputs: TrainInputs,
    plans: list[StagePlan],
    total: int,
    stop: Callable[[], bool] | None,
) -> Job[TrainResult]:
    """The epochs of every stage; saves on cancel (GeneratorExit / KeyboardInterrupt at a consistent point)."""
    config, dctx, run = trainer.config, trainer.dctx, trainer.run
    pos = run.position
    stage_name = plans[min(pos.stage_index, len(plans) - 1)].name

    def result(cancelled: bool = False) -> TrainResult:
        last = trainer.out / "last.safetensors"
        best = trainer.out / "best.safetensors"
        return TrainResult(
            out_dir=trainer.out,
            last=last if last.is_file() else None,
            best=best if best.is_file() else None,
            history=run.history,
            stages=plans,
            stopped_early=bool(run.stopped_early),
            cancelled=cancelled,
            weights_sha256=state_digest(core),
            global_step=pos.global_step,
            examples_seen=pos.examples,
        )

    try:
        for stage_index, plan in enumerate(plans):
            if stage_index < pos.stage_index or plan.name in run.stopped_early:
                continue
            stage_name = plan.name
            if stage_index > pos.stage_index or not pos.started:
                pos.stage_index, pos.epoch, pos.step, pos.draws, pos.started = stage_index, 0, 0, 0, True
                run.best_score, run.bad_epochs = None, 0
                yield Progress(
                    pos.global_step,
                    total,
                    f"stage {plan.name}: {plan.epochs} epoch(s), {plan.total_steps} steps",
                    partial={"event": "stage_start", "stage": plan.name, "weights_sha256": state_digest(core)},
                )
            counts = trainer.stage_counts(plan.name, inputs)
            trainer.warn_one_class(plan.name, counts)
            pos_weight = torch.tensor(_pos_weight(config, counts, trainer.classes), device=trainer.device)
            criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
            train_set, val_set = trainer.stage_datasets(plan.name, inputs)
            while pos.epoch < plan.epochs:
                steps = plan.steps_in_epoch(pos.epoch)
                label = f"{plan.name} epoch {pos.epoch + 1}/{plan.epochs}"
                if pos.step == 0:
                    seed_everything(config.seed, pos.stage_index + 1, pos.epoch, dctx.rank)
                    pos.loss_sum, pos.loss_count, pos.epoch_seconds = 0.0, 0, 0.0
                started = time.perf_counter() - pos.epoch_seconds
                model.train()
                pending: list[tuple[torch.Tensor, int]] = []
                if pos.step < steps:
                    loader = trainer.train_loader(inputs, train_set, stage_index, pos.epoch, pos.step)
                    batches = iter(loader)
                    while pos.step < steps:
                        batch = next(batches, None)
                        if batch is None:
                            raise TrainingError(
                                f"the training data of stage {plan.name!r} ran out after {pos.step} of {steps} "
                                f"batches in epoch {pos.epoch + 1} (did the data change while training?)"
                            )
                        x, y = batch
                        trainer.consistent = False
                        x = trainer.to_device(x)
                        y = y.to(trainer.device, non_blocking=True).float()
                        with trainer.autocast():
                            logits = model(x)
                        loss = _compute_loss(criterion, logits.float(), y)
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        n = int(x.shape[0])
                        pending.append((loss.detach() * n, n))
                        pos.step += 1
                        pos.global_step += 1
                        pos.examples += n * dctx.world
                        pos.draws += config.batch_size * dctx.world
                        scheduler.step(pos.examples)
                        trainer.consistent = True
                        if pos.step % config.progress_every == 0 or pos.step == steps:
                            _flush(trainer, pending, plan.name, steps)
                            pending = []
                            pos.epoch_seconds = time.perf_counter() - started
                            if stop is not None and stop():
                                trainer.save(core, optimizer, scheduler, plan.name, inputs)
                                return result(cancelled=True)
                            mean = pos.loss_sum / max(1, pos.loss_count)
                            lr = optimizer.param_groups[0]["lr"]
                            message = f"{label} step {pos.step}/{steps} loss {mean:.4f} lr {lr:.3g}"
                            yield Progress(pos.global_step, total, message)
                    del batches, loader
                dctx.sync_buffers(core)
                outcome = yield from trainer.evaluate(core, val_set, label, total)
                metrics, thresholds = trainer.metrics(plan.name, outcome)
                auroc = metrics["val_auroc"]["mean"]
                monitor = "val_auroc_mean" if math.isfinite(auroc) else "val_loss"
                score = auroc if math.isfinite(auroc) else -metrics["val_loss"]
                entry = {
                    "stage": plan.name,
                    "epoch": pos.epoch + 1,
                    "steps": pos.global_step,
                    "train_loss": pos.loss_sum / max(1, pos.loss_count),
                    **metrics,
                    "monitor": monitor,
                    "examples_seen": pos.examples,
                    "lr": float(optimizer.param_groups[0]["lr"]),
                    "seconds": time.perf_counter() - started,
                    "weights_sha256": state_digest(core),
                }
                improved = run.best_score is None or score > run.best_score
                if improved:
                    run.best_score, run.bad_epochs = score, 0
                else:
                    run.bad_epochs += 1
                run.history.append(entry)
                run.thresholds = thresholds
                pos.epoch += 1
                pos.step = 0
                pos.loss_sum, pos.loss_count, pos.epoch_seconds = 0.0, 0, 0.0
                patience = config.early_stopping_patience
                stopping = patience is not None and run.bad_epochs >= patience and pos.epoch < plan.epochs
                if stopping:
                    run.stopped_early.append(plan.name)
                finished = stage_index == len(plans) - 1 and (stopping or pos.epoch >= plan.epochs)
                trainer.save(core, optimizer, scheduler, plan.name, inputs, best=improved, finished=finished)
                yield Progress(
                    pos.global_step, total, f"{label}: {_summary(entry)}", partial={"event": "epoch", **entry}
                )
                if stopping:
                    break
    except (GeneratorExit, KeyboardInterrupt):
        if trainer.consistent and dctx.main:
            try:
                trainer.save(core, optimizer, scheduler, stage_name, inputs)
            except Exception as exc:  # the cancel must go on; the previous state stays valid
                warnings.warn(f"could not save the cancelled run: {exc}", UserWarning, stacklevel=2)
        raise
    return result()


def _flush(trainer: Trainer, pending: list[tuple[torch.Tensor, int]], stage: str, steps: int) -> None:
    """Check the buffered losses (summed over ranks) and add them to the epoch's mean; raise on NaN / inf."""
    if not pending:
        return
    pos = trainer.run.position
    values = torch.stack([v for v, _ in pending]).float()
    counts = [n for _, n in pending]
    values = trainer.dctx.all_sum(values).cpu().tolist()
    first_step = pos.step - len(pending) + 1
    for k, (value, n) in enumerate(zip(values, counts, strict=True)):
        if not math.isfinite(value):
            step = first_step + k
            last = trainer.out / "last.safetensors"
            kept = f"the last good checkpoint {last} was kept" if last.exists() else "no checkpoint was written yet"
            raise TrainingError(
                f"the training loss became {value} at stage {stage!r}, epoch {pos.epoch + 1}, step {step} of {steps} "
                f"(global step {pos.global_step - len(pending) + k + 1}); {kept}. Lower the learning rate, check "
                "the inputs for NaN, or use class weights of moderate size"
            )
        pos.loss_sum += value
        pos.loss_count += n * trainer.dctx.world


def _summary(entry: Mapping[str, Any]) -> str:
    auroc = entry["val_auroc"]["mean"]
    text = f"train loss {entry['train_loss']:.4f}, val loss {entry['val_loss']:.4f}"
    text += f", val AUROC {auroc:.3f}" if math.isfinite(auroc) else ", val AUROC undefined"
    return text + f", val accuracy {entry['val_accuracy']:.3f}"
