"""The training job: :func:`train_job` (a generator of progress) and :func:`train` set up the device, data,
model, optimizer and resume state, record the run in ``train_manifest.json`` and run the loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from .._fsutil import sha256_file
from ..devices import resolve_device
from ..errors import ConfigError
from ..io.names import TRUTH_FOLDER
from ..jsonvalues import write_json
from ..models.checkpoint import check_compatible, load_checkpoint, read_checkpoint_meta
from ..models.factory import build_model
from ..progress import Job, Progress, run_job
from ..sampling.tables import write_patch_table
from ..versions import package_versions
from .config import RMSPROP_ALPHA, RMSPROP_EPS, RMSPROP_MOMENTUM, SGD_MOMENTUM, TrainConfig
from .ddp import DistContext, determinism, seed_everything
from .inputs import TrainData, resolve_inputs
from .loop import TrainResult, train_loop
from .resume import POINTER_NAME, read_resume_state
from .schedule import ExampleHalvingLR, stage_plans
from .trainer import Trainer

TRAIN_MANIFEST_NAME = "train_manifest.json"
_HASH_LIMIT = 64 << 20


def _input_record(files: Sequence[Path]) -> list[dict[str, Any]]:
    out = []
    for path in dict.fromkeys(files):
        entry: dict[str, Any] = {"path": str(path)}
        try:
            size = path.stat().st_size
        except OSError:
            entry["missing"] = True
            out.append(entry)
            continue
        entry["size"] = size
        if size <= _HASH_LIMIT and path.is_file():
            entry["sha256"] = sha256_file(path)
        out.append(entry)
    return out


def _data_record(data: TrainData, out: Path, main_rank: bool) -> dict[str, Any]:
    """A JSON description of ``data`` that repeats the run (a DataFrame table is saved beside the outputs)."""
    record: dict[str, Any] = {}
    if isinstance(data.patch_table, pd.DataFrame):
        path = out / "train_patches.csv"
        if main_rank:
            write_patch_table(data.patch_table, path)
        record["patch_table"] = str(path)
    elif data.patch_table is not None:
        record["patch_table"] = os.fspath(data.patch_table)
    if data.sampler is not None:
        s = data.sampler
        record["slides"] = [
            {
                "slide": str(src.path),
                "annotations": None
                if src.annotations is None or src.annotations.source is None
                else str(src.annotations.source),
                "split": src.split,
            }
            for src in s.sources
        ]
        record["sampler"] = {
            "patch_size": s.geometry.patch_size,
            "center_size": s.geometry.center_size,
            "mpp": s.geometry.mpp,
            "seed": s.seed,
            "jitter": s.jitter,
            "p_tumor": s.p_tumor,
        }
    drawn = dataclasses.replace(data, patch_table=None, sampler=None)  # annotation objects are saved to files
    rest = drawn.with_annotation_files(out / TRUTH_FOLDER, write=main_rank).to_dict()
    record.update(rest)
    return record


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    write_json(out / TRAIN_MANIFEST_NAME, manifest)


def train_job(
    config: TrainConfig,
    data: TrainData,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = True,
    stop: Callable[[], bool] | None = None,
) -> Job[TrainResult]:
    """Train as ``config`` says on ``data``, writing checkpoints into ``out_dir``; a generator of progress.

    Yields a :class:`~napari_patchdx.progress.Progress` every ``config.progress_every`` optimizer steps (``done``
    / ``total`` are optimizer steps over all stages), during validation, at the start of each stage (``partial``
    = ``{"event": "stage_start", "stage", "weights_sha256"}``) and after each epoch (``partial`` = the epoch's
    history entry with ``"event": "epoch"``). Returns a :class:`TrainResult`.

    Args:
        config: the settings.
        data: the data (see :class:`TrainData`).
        out_dir: the run folder (created).
        resume: continue the run saved in ``out_dir`` (identical settings except epochs, patience, device,
            workers and progress frequency); False refuses a folder that already holds a run.
        stop: polled at every training progress report; when it returns True the run saves a resumable ``last``
            and returns with ``cancelled=True``.

    Raises:
        ConfigError: bad or inconsistent settings, no or empty data, an unavailable device, a resume state or
            ``init_checkpoint`` of another architecture / class set.
        InputFileError: unreadable inputs.
        TrainingError: the loss became NaN or infinite (the message says at which stage, epoch and step; the
            last good checkpoint is left as it was).
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}")
    out = Path(out_dir)
    dctx = DistContext.current()
    device = resolve_device(config.device, local_rank=dctx.local_rank if dctx.enabled else None)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    has_run = (out / POINTER_NAME).exists() or (out / "last.json").exists()
    if has_run and not resume:
        raise ConfigError(f"{out} already holds a training run; pass resume=True to continue it or use another folder")
    yield Progress(0, 0, "preparing the training data")
    inputs = yield from resolve_inputs(config, data)
    plans = stage_plans(config, inputs, dctx.world)
    total = sum(p.total_steps for p in plans)
    trainer = Trainer(config, out, dctx, device, inputs.classes, inputs.in_channels)
    if dctx.main:
        out.mkdir(parents=True, exist_ok=True)
    loaded = read_resume_state(out) if resume and has_run else None
    if has_run and resume and loaded is None:
        raise ConfigError(f"{out} holds a checkpoint but no intact resume state; train into another folder")
    if loaded is not None:
        trainer.check_resumable(loaded[0])
    if config.init_checkpoint is not None and loaded is None:
        meta = read_checkpoint_meta(config.init_checkpoint)
        check_compatible(
            meta,
            arch=config.arch,
            classes=trainer.classes,
            in_channels=inputs.in_channels,
            path=config.init_checkpoint,
        )

    manifest: dict[str, Any] = {}
    session: dict[str, Any] = {}
    if dctx.main:
        previous = out / TRAIN_MANIFEST_NAME
        if loaded is not None and previous.is_file():
            with contextlib.suppress(OSError, ValueError):
                manifest = json.loads(previous.read_text(encoding="utf-8"))
        if not manifest:
            yield Progress(0, total, "recording the inputs")
            manifest = {
                "kind": "napari-patchdx training run",
                "config": config.to_dict(),
                "data": _data_record(data, out, True),
                "classes": list(trainer.classes),
                "stages": [dataclasses.asdict(p) for p in plans],
                "inputs": _input_record(inputs.files),
                "notes": inputs.notes,
                "sessions": [],
            }
        session = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resumed_from_step": loaded[0]["position"]["global_step"] if loaded else None,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "world_size": dctx.world,
            "versions": package_versions(),
            "config": config.to_dict(),
        }
        manifest.setdefault("sessions", []).append(session)
        _write_manifest(out, manifest)

    try:
        with determinism(config.deterministic, device):
            model = optimizer = scheduler = ddp = None
            try:
                seed_everything(config.seed, 0, 0, 0)
                model = build_model(
                    config.arch,
                    len(trainer.classes),
                    in_channels=inputs.in_channels,
                    pretrained=config.pretrained if loaded is None else None,  # a resume brings its own weights
                )
                if config.init_checkpoint is not None and loaded is None:
                    source, _ = load_checkpoint(config.init_checkpoint)
                    model.load_state_dict(source.state_dict())
                    del source
                model.to(device)
                if trainer.cuda:
                    model.to(memory_format=torch.channels_last)
                optimizer = _make_optimizer(config, model, dctx.world)
                scheduler = ExampleHalvingLR(optimizer, config.lr_halve_examples)
                if loaded is not None:
                    trainer.restore(loaded[0], loaded[1], model, optimizer, scheduler)
                del loaded
                dctx.barrier()
                ddp = (
                    nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if trainer.cuda else None)
                    if dctx.enabled
                    else model
                )
                result = yield from train_loop(trainer, model, ddp, optimizer, scheduler, inputs, plans, total, stop)
            finally:  # drop every reference to the weights and optimizer state before releasing cached GPU memory
                del ddp, scheduler, optimizer, model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    except BaseException as exc:  # the manifest says how the session ended, then the error goes on
        if dctx.main:
            session["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            session["error"] = "cancelled" if isinstance(exc, GeneratorExit) else f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                _write_manifest(out, manifest)
        raise
    if dctx.main:
        session["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        session["result"] = {
            "global_step": result.global_step,
            "examples_seen": result.examples_seen,
            "cancelled": result.cancelled,
            "stopped_early": result.stopped_early,
            "weights_sha256": result.weights_sha256,
        }
        _write_manifest(out, manifest)
    return result


def _make_optimizer(config: TrainConfig, model: nn.Module, world: int) -> torch.optim.Optimizer:
    lr = config.effective_lr(world)
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=RMSPROP_ALPHA, eps=RMSPROP_EPS, momentum=RMSPROP_MOMENTUM)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM)


def train(
    config: TrainConfig,
    data: TrainData,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = True,
    stop: Callable[[], bool] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> TrainResult:
    """Run :func:`train_job` to the end (``on_progress`` gets every report); returns its result."""
    return run_job(train_job(config, data, out_dir, resume=resume, stop=stop), on_progress)
