"""The trainer: the patch stage, the whole-image stage, Park's curriculum and its baseline, checkpoints, resume, DDP.

One headless core (:func:`train_job`) serves the napari widget, the command line and ``run()``: it is a generator
that yields :class:`~napari_patchdx.progress.Progress` every ``progress_every`` optimizer steps (and during
validation) and returns a :class:`TrainResult`. Closing it (a napari worker's ``quit()``, ``job.close()``) or a
``KeyboardInterrupt`` saves a resumable ``last`` checkpoint and re-raises; a ``stop`` callable that turns true ends
the run the same way but returns a result with ``cancelled=True``.

Stages
------
``patches``
    Slides: patches from Liu et al.'s balanced sampler (an endless stream, ``steps_per_epoch`` batches per epoch)
    or from the ``train`` rows of a patch table (one pass per epoch). Chest X-rays: lesion and normal-lung
    patches from a :class:`~napari_patchdx.sampling.balanced.CxrLesionSampler` over the cohort's training images
    (or an X-ray patch table with ``label_<class>`` columns), five sigmoid outputs.
``whole``
    Whole chest X-rays from the cohort's ``labels.csv``, resized bilinearly to ``working_size`` square,
    per-image standardisation; random sharpen / blur while training (Park et al.).
``curriculum``
    ``patches`` then ``whole``, the same network (1 input channel, the 5-class head) and the same optimizer and
    learning-rate schedule carried over: the whole stage starts from the patch stage's last weights.
``baseline``
    ``whole`` only, with the curriculum's budget (below).

Epochs and the budget rule
--------------------------
``epochs`` is per stage: the curriculum runs ``epochs`` patch epochs, then ``epochs`` whole-image epochs. An
X-ray patch epoch has ``steps_per_epoch`` batches, or when that is None as many as a whole-image epoch
(``ceil(ceil(n_train_images / world_size) / batch_size)``), so by default both stages have epochs of equal cost.
**The baseline gets the same number of optimizer steps** (and so, with the same batch size, the same number of
training examples up to the last partial batch of an epoch) as the curriculum *plans*:
``total = epochs * patch_steps_per_epoch + epochs * whole_steps_per_epoch``; it runs ``ceil(total /
whole_steps_per_epoch)`` whole-image epochs, the last one cut short at ``total`` steps. With the default
``steps_per_epoch`` that is exactly ``2 * epochs`` full whole-image epochs. Early stopping does not change the
budget (it is planned, not spent). :func:`plan_stages` gives the plan.

Optimization
------------
Loss: ``BCEWithLogitsLoss`` (one sigmoid per class), with ``pos_weight`` from ``class_weights`` (None: 1;
``"balanced"``: negatives / positives of each class in the stage's training data, counted from the table or
image labels, from ``p_tumor`` for Liu's sampler, from the labels of the stream's first draws for the X-ray
lesion sampler; a list: one value per class). Validation loss is unweighted.

Optimizers: ``rmsprop`` is Liu et al.'s (momentum 0.9, decay ``alpha`` 0.9, epsilon 1.0; note that PyTorch adds
epsilon outside the square root and starts the mean square at 0, TensorFlow 1 inside and at 1: equivalent when
gradients are small, slightly different early on), ``adam`` (PyTorch defaults), ``sgd`` (momentum 0.9).
**Learning-rate rule**: ``lr=None`` means ``0.05 * global_batch / 32`` for RMSProp (Liu's 0.05 was for batches of
32 per update; ``global_batch = batch_size * world_size`` because DDP averages the ranks' gradients into one
update), ``0.01 * global_batch / 32`` for SGD, and ``1e-3`` (not scaled) for Adam. Every optimizer's rate is
halved every ``lr_halve_examples`` training examples (Liu: 2,000,000), counted over all ranks; the schedule
(:class:`ExampleHalvingLR`) runs across the curriculum's stages.

Validation runs after every epoch on the ``val`` split: loss, AUROC per class (scikit-learn; a class with one
label only in the validation set gets NaN and a warning "AUROC is undefined", once per stage and class),
accuracy at 0.5, Youden thresholds. Early stopping (``early_stopping_patience`` epochs without improvement) watches
the mean AUROC over the defined classes, or the validation loss when no class has a defined AUROC; it ends the
current stage (the curriculum then moves on to the whole stage).

Files in ``out_dir``
--------------------
``last.safetensors`` / ``last.json``
    the latest weights (after every epoch, and on cancel), via :func:`napari_patchdx.models.save_checkpoint`; the
    sidecar holds the config, the metrics history and per-class Youden thresholds of the latest validation.
``best.safetensors`` / ``best.json``
    the best epoch of the latest stage by the monitored metric (a new stage starts a new best, so after a
    curriculum ``best`` is the best whole-image model).
``resume/state-NNNNNN.safetensors`` / ``.json`` and the pointer ``train_state.json``
    the resume state, without pickle: the safetensors file holds the model's tensors (``model.*``), the
    optimizer's tensors (``optim.<param>.<name>``) and the torch RNG states (``rng.*``); the JSON holds
    everything else (optimizer param groups and scalars, the scheduler, numpy's and Python's RNG states, the
    position: stage, epoch, step, draws consumed, examples seen; the history, the best score, the config) and the
    sha256 of the tensors file. Each save writes ``last``, then a new numbered state (tensors, then JSON, each
    atomically), then atomically replaces the pointer, then deletes states older than the previous one. A
    numbered state carries its own weights, so whatever instant a run is killed, the pointer names a complete,
    consistent state (a kill after ``last`` but before the pointer resumes from the previous state and redoes
    that epoch; ``last`` is then rewritten identically). Loading checks the sha256 and falls back to the newest
    intact numbered state.
``train_manifest.json``
    config, data, package versions, device, world size, input files (size; sha256 for files up to 64 MiB),
    one entry per session with its timings; ``python -m napari_patchdx.training train_manifest.json OUT`` repeats
    the run from it alone. A patch table given as a DataFrame is saved as ``train_patches.csv`` for that purpose.

Determinism and resume
----------------------
Every random choice is a pure function of the seed and a position: sampler draw ``i``, the augmentation of item
``i`` in epoch ``e``, the permutation of a map-style epoch, and the torch / numpy / Python global RNGs, reseeded
at the start of every epoch from ``(seed, stage, epoch, rank)``. The resume state also saves the RNG states for
cancels mid-epoch. So with ``deterministic=True`` on the CPU, a run resumed after ``kill -9`` or a cancel ends
with weights identical to an uninterrupted run, whatever ``num_workers``.

Multi-GPU
---------
Under ``torchrun --nproc_per_node N -m napari_patchdx.training CONFIG.json OUT_DIR`` (RANK / WORLD_SIZE / LOCAL_RANK
set), :func:`main` starts the process group (NCCL on CUDA, gloo on the CPU), each rank uses ``cuda:LOCAL_RANK``,
the model is wrapped in DistributedDataParallel, map-style data are sharded like ``DistributedSampler`` (padded,
rank ``r`` takes every ``world``-th index of the epoch's permutation) and streams by rank (rank ``r``'s batch
``k`` is global block ``k * world + r``); validation predictions are gathered so every rank takes the same
early-stopping decision; only rank 0 writes checkpoints, the resume state, the manifest and logs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import random
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import __version__
from .._config import choice, closest, integer, number, unknown_key
from .._fsutil import atomic_path, atomic_write_text, sha256_file
from ..errors import ConfigError, PatchdxError
from ..models import (
    ARCHITECTURES,
    MIN_INPUT_SIZE,
    build_model,
    check_compatible,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from ..progress import Job, Progress, run_job
from ..sampling.balanced import (
    SPLITS,
    BalancedSampler,
    CxrLesionSampler,
    PatchGeometry,
    SlideSource,
    assign_splits,
    load_cxr_cohort,
    read_cohort_labels,
    read_patch_table,
    write_patch_table,
)
from ..sampling.datasets import PatchStream, PatchTableDataset, resize_square, to_float
from ..transforms import cxr_eval_transforms, cxr_train_transforms, slide_train_transforms

__all__ = [
    "MANIFEST_NAME",
    "OPTIMIZERS",
    "POINTER_NAME",
    "STAGES",
    "TRACKS",
    "ExampleHalvingLR",
    "StagePlan",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "TrainingError",
    "WholeImageDataset",
    "available_devices",
    "main",
    "plan_stages",
    "resolve_device",
    "state_digest",
    "train",
    "train_job",
]

TRACKS: tuple[str, ...] = ("slide", "cxr")
"""``slide``: whole-slide patches, 3 channels, one class (tumour). ``cxr``: chest X-rays, 1 channel, 5 classes."""

STAGES: tuple[str, ...] = ("patches", "whole", "curriculum", "baseline")
"""What to train (see the module docstring)."""

OPTIMIZERS: tuple[str, ...] = ("rmsprop", "adam", "sgd")
"""Optimizer names accepted by :class:`TrainConfig`."""

DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:<index>", "mps")

RMSPROP_MOMENTUM = 0.9
RMSPROP_ALPHA = 0.9
RMSPROP_EPS = 1.0
SGD_MOMENTUM = 0.9
LIU_BATCH = 32
BASE_LR: dict[str, float] = {"rmsprop": 0.05, "adam": 1e-3, "sgd": 0.01}
"""Default learning rate of each optimizer (per ``LIU_BATCH`` examples for RMSProp and SGD, see the rule above)."""
_SCALED_LR = {"rmsprop": True, "sgd": True, "adam": False}
DEFAULT_STREAM_STEPS = 100
"""Batches per epoch of a slide stream when ``steps_per_epoch`` is None."""
DEFAULT_PATCH_SIZE = {"slide": 299, "cxr": 256}
DEFAULT_ARCH = {"slide": "inception_v3", "cxr": "resnet50"}

STATE_FORMAT = "napari-patchdx-train-state"
STATE_VERSION = 1
POINTER_NAME = "train_state.json"
MANIFEST_NAME = "train_manifest.json"
_HASH_LIMIT = 64 << 20
# settings that may change when a run is resumed (they do not change the trajectory of the weights)
_RESUMABLE_CHANGES = frozenset({"epochs", "early_stopping_patience", "device", "num_workers", "progress_every"})


class TrainingError(PatchdxError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN or infinite); the last good checkpoint is kept."""


# ===============================================================================================================
# devices
# ===============================================================================================================


def available_devices() -> list[str]:
    """Device strings usable here: ``"cpu"``, then ``"cuda"`` and ``"cuda:0"``... when CUDA works, ``"mps"``."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
        out.extend(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def _check_device_form(device: str) -> str:
    if not isinstance(device, str):
        raise ConfigError(f"device must be a string ({', '.join(DEVICE_FORMS)}), got {device!r}")
    text = device.strip().lower()
    if text in ("auto", "cpu", "cuda", "mps"):
        return text
    if text.startswith("cuda:") and text[5:].isdigit():
        return text
    raise ConfigError(f"device {device!r} is not one of {', '.join(DEVICE_FORMS)}")


def resolve_device(device: str = "auto", *, local_rank: int | None = None) -> torch.device:
    """The torch device for a device string; ``"auto"`` = CUDA, then MPS, then the CPU.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:<index>"`` or ``"mps"``.
        local_rank: under torchrun, the process's local rank: ``"auto"`` / ``"cuda"`` then mean
            ``cuda:<local_rank>``.

    Raises:
        ConfigError: a malformed string, or a device that is not available here (the message lists those that are).
    """
    text = _check_device_form(device)
    have = available_devices()
    if text == "auto":
        if "cuda" in have:
            text = "cuda"
        elif "mps" in have and local_rank is None:
            text = "mps"
        else:
            text = "cpu"
    if text == "cuda" and local_rank is not None and "cuda" in have:
        text = f"cuda:{local_rank}"
    if text not in have:
        raise ConfigError(f"device {device!r} is not available on this machine; available devices: {', '.join(have)}")
    if local_rank is not None and text.startswith("cuda:") and text != f"cuda:{local_rank}":
        raise ConfigError(
            f"device {device!r}: under torchrun each process uses cuda:<LOCAL_RANK> (here cuda:{local_rank}); "
            "set device to 'auto' or 'cuda'"
        )
    return torch.device(text)


# ===============================================================================================================
# configuration
# ===============================================================================================================


@dataclass
class TrainConfig:
    """Everything that decides a training run (validated on creation; ``to_dict`` / ``from_dict`` for JSON).

    Attributes:
        track: ``"slide"`` (RGB slide patches, one class) or ``"cxr"`` (grey chest X-rays, the cohort's classes).
        stage: ``"patches"``, ``"whole"``, ``"curriculum"`` or ``"baseline"`` (the slide track has patches only).
        arch: one of :data:`napari_patchdx.models.ARCHITECTURES`; None = the paper's (slide: inception_v3, cxr:
            resnet50).
        epochs: epochs per stage (see the budget rule in the module docstring).
        batch_size: examples per optimizer step on each rank.
        steps_per_epoch: batches per patch-stage epoch: needed for endless streams (None: 100 for slides, one
            whole-image epoch's worth for X-rays); with a patch table it caps the pass. Whole-image epochs are
            always one pass over the training images.
        optimizer: ``"rmsprop"`` (Liu et al.), ``"adam"`` or ``"sgd"``.
        lr: learning rate; None = the rule in the module docstring (RMSProp: 0.05 * batch_size * world / 32).
        lr_halve_examples: the rate is halved every this many training examples (Liu: 2,000,000).
        class_weights: BCE ``pos_weight`` per class: None, ``"balanced"`` or one positive number per class.
        early_stopping_patience: stop a stage after this many epochs without improvement; None = never.
        seed: the seed of everything random (model init, sampling, augmentation, order).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:<index>"``, ``"mps"``.
        num_workers: DataLoader worker processes (results do not depend on it).
        working_size: side of a whole chest X-ray after resizing, px (Park et al.: 1024); also the scale at which
            X-ray patches are cut.
        patch_size: side of a patch, px; None = the sampler's, else 299 (slides) or 256 (X-rays).
        center_size: side of the labelled central region of a slide patch (Liu: 128); None = min(128, patch).
        mpp: microns per slide-patch pixel when the trainer builds the sampler from ``TrainData.slides``.
        jitter: positional jitter of slide patches, patch pixels (Liu: 8), for ``TrainData.slides``.
        val_patches: number of validation patches drawn (once, reproducibly) from validation slides / X-rays.
        val_fraction: share of X-ray images held out for validation when the cohort has no split.
        deterministic: ``torch.use_deterministic_algorithms`` and no cuDNN autotuning (bit-exact resume on CPU).
        amp: bfloat16 autocast on CUDA (never elsewhere).
        pretrained: a local weights file to start the network from (see ``models.load_pretrained``).
        init_checkpoint: a napari-patchdx checkpoint to fine-tune; it must have this arch, classes and channels.
        progress_every: yield progress (and check the loss) every this many optimizer steps.
    """

    track: str = "slide"
    stage: str = "patches"
    arch: str | None = None
    epochs: int = 10
    batch_size: int = 32
    steps_per_epoch: int | None = None
    optimizer: str = "rmsprop"
    lr: float | None = None
    lr_halve_examples: int = 2_000_000
    class_weights: str | list[float] | None = None
    early_stopping_patience: int | None = None
    seed: int = 0
    device: str = "auto"
    num_workers: int = 4
    working_size: int = 1024
    patch_size: int | None = None
    center_size: int | None = None
    mpp: float | None = None
    jitter: float = 8.0
    val_patches: int = 256
    val_fraction: float = 0.2
    deterministic: bool = False
    amp: bool = True
    pretrained: str | None = None
    init_checkpoint: str | None = None
    progress_every: int = 4

    def __post_init__(self) -> None:
        self.track = choice("track", self.track, TRACKS)
        self.stage = choice("stage", self.stage, STAGES)
        if self.track == "slide" and self.stage != "patches":
            raise ConfigError(
                f"stage {self.stage!r} needs whole images: the slide track trains on patches only "
                "(the whole, curriculum and baseline stages are for chest X-rays, track='cxr')"
            )
        if self.arch is None:
            self.arch = DEFAULT_ARCH[self.track]
        self.arch = choice("arch", self.arch, ARCHITECTURES)
        self.epochs = integer("epochs", self.epochs, 1)
        self.batch_size = integer("batch_size", self.batch_size, 1)
        self.steps_per_epoch = integer("steps_per_epoch", self.steps_per_epoch, 1, optional=True)
        self.optimizer = choice("optimizer", self.optimizer, OPTIMIZERS)
        self.lr = number("lr", self.lr, optional=True)
        self.lr_halve_examples = integer("lr_halve_examples", self.lr_halve_examples, 1)
        cw = self.class_weights
        if isinstance(cw, str):
            if cw != "balanced":
                raise ConfigError(f"class_weights must be None, 'balanced' or a list of numbers, got {cw!r}")
        elif cw is not None:
            if not isinstance(cw, Sequence) or not cw:
                raise ConfigError(f"class_weights must be None, 'balanced' or a list of numbers, got {cw!r}")
            self.class_weights = [number(f"class_weights[{i}]", w) for i, w in enumerate(cw)]  # type: ignore[misc]
        self.early_stopping_patience = integer(
            "early_stopping_patience", self.early_stopping_patience, 1, optional=True
        )
        self.seed = integer("seed", self.seed, 0)
        self.device = _check_device_form(self.device)
        self.num_workers = integer("num_workers", self.num_workers, 0)
        self.working_size = integer("working_size", self.working_size, 32)
        self.patch_size = integer("patch_size", self.patch_size, 8, optional=True)
        self.center_size = integer("center_size", self.center_size, 1, optional=True)
        if self.patch_size is not None and self.center_size is not None and self.center_size > self.patch_size:
            raise ConfigError(f"center_size ({self.center_size}) must not exceed patch_size ({self.patch_size})")
        if self.track == "cxr" and self.patch_size is not None and self.patch_size > self.working_size:
            raise ConfigError(f"patch_size ({self.patch_size}) must not exceed working_size ({self.working_size})")
        self.mpp = number("mpp", self.mpp, optional=True)
        self.jitter = number("jitter", self.jitter, strict=False)
        self.val_patches = integer("val_patches", self.val_patches, 1)
        self.val_fraction = number("val_fraction", self.val_fraction)
        if self.val_fraction >= 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for key in ("deterministic", "amp"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key} must be true or false, got {getattr(self, key)!r}")
        for key in ("pretrained", "init_checkpoint"):
            value = getattr(self, key)
            if value is not None:
                if not isinstance(value, str | os.PathLike):
                    raise ConfigError(f"{key} must be a file path or None, got {value!r}")
                setattr(self, key, os.fspath(value))
        self.progress_every = integer("progress_every", self.progress_every, 1)
        size = self.patch_size if self.stage in ("patches", "curriculum") else self.working_size
        if size is not None and size < MIN_INPUT_SIZE[self.arch]:
            raise ConfigError(f"{self.arch} needs inputs of at least {MIN_INPUT_SIZE[self.arch]} px, got {size}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON data."""
        out = dataclasses.asdict(self)
        if isinstance(out["class_weights"], tuple):
            out["class_weights"] = list(out["class_weights"])
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Settings from a mapping (e.g. JSON); unknown keys are an error naming the closest valid key."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"training settings must be a mapping, got {type(values).__name__}")
        unknown = unknown_key(values, [f.name for f in dataclasses.fields(cls)])
        if unknown:
            raise ConfigError(f"unknown training setting {unknown[0]!r}; did you mean {unknown[1]!r}?")
        return cls(**dict(values))

    def effective_lr(self, world_size: int = 1) -> float:
        """The initial learning rate: ``lr``, or the optimizer's default scaled by the global batch (see above)."""
        if self.lr is not None:
            return float(self.lr)
        base = BASE_LR[self.optimizer]
        if _SCALED_LR[self.optimizer]:
            base *= self.batch_size * max(1, int(world_size)) / LIU_BATCH
        return base


# ===============================================================================================================
# data description
# ===============================================================================================================


SlideSpec = tuple[str | os.PathLike[str], str | os.PathLike[str] | None, str]


@dataclass
class TrainData:
    """Where the training data come from.

    Attributes:
        patch_table: a patch table (DataFrame, or a ``.csv`` / ``.parquet`` path): its ``train`` rows train the
            patch stage unless a sampler is given; its ``val`` rows validate it.
        sampler: Liu et al.'s balanced sampler (slides): an endless training stream from its ``train`` slides;
            its ``val`` slides give ``val_patches`` fixed validation patches (unless the table has ``val`` rows).
        slides: ``(slide, annotations or None, split)`` triples: the trainer prepares the slides and builds the
            sampler itself from the config's patch_size, center_size, mpp, jitter and seed (what the command
            line uses).
        cxr_root: a chest X-ray cohort folder (``labels.csv``, ``images/``, ``masks/``, ``lungs/`` as
            :func:`napari_patchdx.synth.cxr.make_cxr_cohort` writes it).
        splits: X-ray image id -> ``train`` / ``val`` / ``test``; else ``labels.csv``'s ``split`` column; else
            a reproducible split holding out ``val_fraction`` (stratified by any lesion).
        mpp: per-slide microns-per-pixel overrides (slide path -> um/px) for files that lack them.
    """

    patch_table: pd.DataFrame | str | os.PathLike[str] | None = None
    sampler: BalancedSampler | None = None
    slides: Sequence[SlideSpec] | None = None
    cxr_root: str | os.PathLike[str] | None = None
    splits: Mapping[str, str] | None = None
    mpp: Mapping[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The description as JSON data (a DataFrame or a sampler object cannot be written: ConfigError)."""
        if isinstance(self.patch_table, pd.DataFrame):
            raise ConfigError("a patch table given as a DataFrame cannot be written to JSON; save it and give its path")
        if self.sampler is not None:
            raise ConfigError("a sampler object cannot be written to JSON; describe the slides with TrainData.slides")
        out: dict[str, Any] = {}
        if self.patch_table is not None:
            out["patch_table"] = os.fspath(self.patch_table)
        if self.slides is not None:
            out["slides"] = [
                {"slide": os.fspath(s), "annotations": None if a is None else os.fspath(a), "split": sp}
                for s, a, sp in self.slides
            ]
        if self.cxr_root is not None:
            out["cxr_root"] = os.fspath(self.cxr_root)
        if self.splits is not None:
            out["splits"] = dict(self.splits)
        if self.mpp is not None:
            out["mpp"] = {str(k): float(v) for k, v in self.mpp.items()}
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainData:
        """A description from JSON data (keys as :meth:`to_dict` writes them)."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"the data description must be a mapping, got {type(values).__name__}")
        names = ["patch_table", "slides", "cxr_root", "splits", "mpp"]
        for key in values:
            if key not in names:
                raise ConfigError(f"unknown data key {key!r}; did you mean {closest(str(key), names)!r}?")
        slides = None
        if values.get("slides") is not None:
            slides = []
            for i, item in enumerate(values["slides"]):
                if isinstance(item, Mapping):
                    slides.append((item["slide"], item.get("annotations"), item.get("split", "train")))
                elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3:
                    slides.append((item[0], item[1], item[2]))
                else:
                    raise ConfigError(f"slides[{i}] must be {{slide, annotations, split}} or a triple, got {item!r}")
        return cls(
            patch_table=values.get("patch_table"),
            slides=slides,
            cxr_root=values.get("cxr_root"),
            splits=values.get("splits"),
            mpp=values.get("mpp"),
        )


# ===============================================================================================================
# datasets and orders
# ===============================================================================================================


class WholeImageDataset(Dataset):
    """Whole chest X-rays: item ``i`` is ``(image (1, size, size) float32, target (C,) float32)``.

    Each image is read with :func:`napari_patchdx.io.cxr.read_cxr` (float32 in [0, 1]), resized bilinearly to
    ``size`` square, then transformed (training: sharpen / blur and per-image standardisation; evaluation:
    standardisation) with generator ``[seed, epoch, i]``. Resized images are kept in a per-process cache of at
    most ``cache_mb`` megabytes.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        targets: np.ndarray,
        size: int,
        transforms: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None,
        seed: int = 0,
        cache_mb: float = 512.0,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.float32).reshape(len(self.paths), -1)
        self.size = int(size)
        self.transforms = transforms
        self.seed = int(seed)
        self.epoch = 0
        self.cache_items = max(1, int(cache_mb * 2**20 // (4 * self.size * self.size)))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation randomness (once per epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        """The resized image ``index`` before augmentation (float32 in [0, 1])."""
        from ..io.cxr import read_cxr

        if self._pid != os.getpid():
            self._cache, self._pid = OrderedDict(), os.getpid()
        cached = self._cache.get(index)
        if cached is None:
            cached = resize_square(read_cxr(self.paths[index]).image, self.size)
            self._cache[index] = cached
            while len(self._cache) > self.cache_items:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return cached

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.image(int(index))
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        out = self.transforms(image.copy(), rng) if self.transforms is not None else image.copy()
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)[None]), torch.from_numpy(
            self.targets[int(index)].copy()
        )


class _EpochOrder(Sampler[int]):
    """The indices one rank reads in one epoch, from batch ``start_batch`` on (a resumable ``DistributedSampler``).

    ``shuffle``: a permutation from ``numpy.random.default_rng(key)``; with several ranks it is padded by
    wrapping to a multiple of ``world`` (``pad``) and rank ``r`` takes positions ``r, r + world, ...``.
    """

    def __init__(
        self,
        n: int,
        key: Sequence[int],
        *,
        shuffle: bool,
        rank: int = 0,
        world: int = 1,
        pad: bool = True,
        batch_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        order = np.random.default_rng(list(key)).permutation(n) if shuffle else np.arange(n)
        if pad and world > 1 and n % world:
            order = np.concatenate([order, order[: world - n % world]])
        self.indices = order[rank::world].astype(np.int64)
        self.start = int(start_batch) * int(batch_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices[self.start :].tolist())

    def __len__(self) -> int:
        return max(0, len(self.indices) - self.start)


def _batches(n: int, batch_size: int, world: int) -> int:
    """Batches per epoch of ``n`` map-style items on each of ``world`` ranks (padded shards)."""
    return math.ceil(math.ceil(n / world) / batch_size) if n else 0


# ===============================================================================================================
# learning-rate schedule
# ===============================================================================================================


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


# ===============================================================================================================
# plans
# ===============================================================================================================


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


@dataclass
class _Inputs:
    """Training inputs resolved from a config and a :class:`TrainData` (tables, samplers, image lists)."""

    classes: tuple[str, ...]
    in_channels: int
    patch_size: int
    center_size: int | None = None
    mpp: float | None = None
    train_stream: BalancedSampler | CxrLesionSampler | None = None
    train_table: pd.DataFrame | None = None
    val_table: pd.DataFrame | None = None
    images: pd.DataFrame | None = None
    splits_auto: bool = False
    slide_mpp: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _table_classes(table: pd.DataFrame) -> tuple[str, ...]:
    multi = [c[len("label_") :] for c in table.columns if str(c).startswith("label_")]
    return tuple(multi) if multi else ("tumor",)


def _load_table(table: pd.DataFrame | str | os.PathLike[str] | None) -> tuple[pd.DataFrame | None, Path | None]:
    if table is None:
        return None, None
    if isinstance(table, pd.DataFrame):
        missing = [c for c in ("slide", "x", "y", "level", "size", "label", "split") if c not in table.columns]
        if missing:
            raise ConfigError(f"the patch table lacks columns {missing}")
        return table.reset_index(drop=True), None
    return read_patch_table(table), Path(table)


def _cxr_images(config: TrainConfig, data: TrainData) -> tuple[pd.DataFrame, tuple[str, ...], bool, list[Path]]:
    """The cohort's images: columns image, path, split and one 0/1 column per class; classes; auto split; files."""
    root = Path(data.cxr_root)  # type: ignore[arg-type]
    labels_csv = root / "labels.csv"
    table, classes = read_cohort_labels(root)
    values = table[list(classes)]
    ids = table["image"].astype(str).tolist()
    auto = False
    if data.splits is not None:
        fallback = table["split"].astype(str).tolist() if "split" in table.columns else ["train"] * len(ids)
        split = [str(data.splits.get(i, f)) for i, f in zip(ids, fallback, strict=True)]
    elif "split" in table.columns:
        split = table["split"].astype(str).tolist()
    else:
        strata = {i: int(v) for i, v in zip(ids, values.to_numpy().any(axis=1), strict=True)}
        fr = config.val_fraction
        mapping = assign_splits(ids, (1.0 - fr, fr, 0.0), seed=config.seed, strata=strata)
        split = [mapping[i] for i in ids]
        auto = True
    bad = sorted({s for s in split if s not in SPLITS})
    if bad:
        raise ConfigError(f"X-ray splits must be one of {SPLITS}, got {bad}")
    out = pd.DataFrame({"image": ids, "path": [str(root / str(p)) for p in table["png"]], "split": split})
    for c in classes:
        out[c] = values[c].to_numpy(np.float32)
    files = [labels_csv, *[Path(p) for p in out["path"]]]
    return out, classes, auto, files


def _split_sampler(sampler: BalancedSampler, split: str) -> BalancedSampler | None:
    """The sampler over the slides of one split (the sampler itself when all its slides are of that split)."""
    sources = [s for s in sampler.sources if s.split == split]
    if not sources:
        return None
    if len(sources) == len(sampler.sources):
        return sampler
    return BalancedSampler(
        sources,
        sampler.geometry,
        seed=sampler.seed,
        jitter=sampler.jitter,
        p_tumor=sampler.p_tumor,
        max_tries=sampler.max_tries,
    )


def _resolve_inputs(config: TrainConfig, data: TrainData, *, samplers: bool = True) -> Job[_Inputs]:
    """Resolve what each stage reads (yields progress while preparing slides).

    ``samplers=False`` skips what only training needs (X-ray lesion masks, drawing validation patches): enough
    for planning.
    """
    if not isinstance(data, TrainData):
        raise ConfigError(f"data must be a TrainData, got {type(data).__name__}")
    table, table_path = _load_table(data.patch_table)
    files: list[Path] = [table_path] if table_path is not None else []
    if config.track == "slide":
        if data.cxr_root is not None:
            raise ConfigError("cxr_root is for the chest X-ray track (track='cxr'); slides need a sampler or table")
        sampler = data.sampler
        if data.slides is not None:
            if sampler is not None:
                raise ConfigError("give either a sampler or slides, not both")
            if not data.slides:
                raise ConfigError("no training data: the slide list is empty")
            patch = config.patch_size or DEFAULT_PATCH_SIZE["slide"]
            geometry = PatchGeometry(patch, config.center_size or min(128, patch), config.mpp)
            sources = []
            for k, (path, annotations, split) in enumerate(data.slides):
                yield Progress(k, len(data.slides), f"preparing slide {Path(path).name}")
                mpp = (data.mpp or {}).get(os.fspath(path))
                sources.append(SlideSource.prepare(path, annotations, split=split, mpp=mpp))
                files.append(Path(path))
                if annotations is not None:
                    files.append(Path(annotations))
            sampler = BalancedSampler(sources, geometry, seed=config.seed, jitter=config.jitter)
        geometry = sampler.geometry if sampler is not None else None
        patch_size = config.patch_size or (geometry.patch_size if geometry else DEFAULT_PATCH_SIZE["slide"])
        if geometry is not None and patch_size != geometry.patch_size:
            raise ConfigError(f"patch_size {patch_size} differs from the sampler's {geometry.patch_size}")
        center = geometry.center_size if geometry else (config.center_size or min(128, patch_size))
        mpp = geometry.mpp if geometry else config.mpp
        if patch_size < MIN_INPUT_SIZE[config.arch]:
            raise ConfigError(f"{config.arch} needs inputs of at least {MIN_INPUT_SIZE[config.arch]} px")
        inputs = _Inputs(("tumor",), 3, patch_size, center, mpp, slide_mpp=dict(data.mpp or {}), files=files)
        if table is not None:
            inputs.classes = _table_classes(table)
        train_sampler = _split_sampler(sampler, "train") if sampler is not None else None
        if train_sampler is not None:
            inputs.train_stream = train_sampler
            if table is not None and (table["split"] == "train").any():
                warnings.warn(
                    "the patch table's training rows are not used: training draws from the sampler",
                    UserWarning,
                    stacklevel=3,
                )
        elif table is not None:
            inputs.train_table = table[table["split"] == "train"].reset_index(drop=True)
        if inputs.train_stream is None and (inputs.train_table is None or inputs.train_table.empty):
            if table is not None or sampler is not None:
                raise ConfigError("empty training set: no patch-table rows and no sampler slides have split 'train'")
            raise ConfigError("no training data: give TrainData(patch_table=..., sampler=... or slides=...)")
        if table is not None and (table["split"] == "val").any():
            inputs.val_table = table[table["split"] == "val"].reset_index(drop=True)
        elif sampler is not None and (val_sampler := _split_sampler(sampler, "val")) is not None:
            if samplers:
                yield Progress(0, 0, f"drawing {config.val_patches} validation patches")
                inputs.val_table = val_sampler.table(config.val_patches)
        else:
            raise ConfigError("no validation data: give patch-table rows or sampler slides with split 'val'")
        return inputs

    # chest X-rays
    if data.sampler is not None or data.slides is not None:
        raise ConfigError("a slide sampler or slide list is for the slide track (track='slide')")
    patch_size = config.patch_size or min(DEFAULT_PATCH_SIZE["cxr"], config.working_size)
    images: pd.DataFrame | None = None
    classes: tuple[str, ...] | None = None
    auto = False
    if data.cxr_root is not None:
        images, classes, auto, image_files = _cxr_images(config, data)
        files.extend(image_files)
    elif config.stage != "patches" or table is None:
        raise ConfigError("no training data: chest X-ray training needs TrainData(cxr_root=...) (or a patch table)")
    if table is not None:
        table_classes = _table_classes(table)
        if table_classes == ("tumor",):
            raise ConfigError("an X-ray patch table needs one label_<class> column per lesion class")
        if classes is not None and table_classes != classes:
            raise ConfigError(f"the patch table's classes {list(table_classes)} differ from the cohort's {classes}")
        classes = table_classes
    inputs = _Inputs(classes, 1, patch_size, images=images, splits_auto=auto, files=files)  # type: ignore[arg-type]
    if auto:
        inputs.notes.append(f"no split given: {config.val_fraction:.0%} of the images held out for validation")
    if table is not None:
        inputs.train_table = table[table["split"] == "train"].reset_index(drop=True)
        if inputs.train_table.empty:
            raise ConfigError("empty training set: the X-ray patch table has no rows with split 'train'")
        if (table["split"] == "val").any():
            inputs.val_table = table[table["split"] == "val"].reset_index(drop=True)
    if config.stage in ("patches", "curriculum") and (inputs.train_table is None or inputs.val_table is None):
        assert images is not None
        if inputs.train_table is None and not (images["split"] == "train").any():
            raise ConfigError("empty training set: no X-ray image has split 'train'")
        if inputs.val_table is None and not (images["split"] == "val").any():
            raise ConfigError("no validation data: no X-ray image has split 'val'")
        if samplers:
            yield Progress(0, 0, "reading lesion masks")
            sources = load_cxr_cohort(data.cxr_root, dict(zip(images["image"], images["split"], strict=True)))  # type: ignore[arg-type]
            kwargs = {"patch_size": patch_size, "working_size": config.working_size, "seed": config.seed}
            if inputs.train_table is None:
                inputs.train_stream = CxrLesionSampler([s for s in sources if s.split == "train"], **kwargs)
            if inputs.val_table is None:
                try:
                    val = CxrLesionSampler([s for s in sources if s.split == "val"], **kwargs)
                    inputs.val_table = val.table(config.val_patches)
                except ConfigError as exc:
                    raise ConfigError(f"validation patches: {exc}") from exc
    if config.stage != "patches":
        if images is None:
            raise ConfigError("whole-image training needs TrainData(cxr_root=...)")
        if not (images["split"] == "train").any():
            raise ConfigError("empty training set: no X-ray image has split 'train'")
        if not (images["split"] == "val").any():
            raise ConfigError("no validation data: no X-ray image has split 'val'")
    return inputs


def _plans(config: TrainConfig, inputs: _Inputs, world: int) -> list[StagePlan]:
    e = config.epochs
    whole = 0
    if inputs.images is not None:
        whole = _batches(int((inputs.images["split"] == "train").sum()), config.batch_size, world)
    if inputs.train_table is not None:
        patch = _batches(len(inputs.train_table), config.batch_size, world)
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
    return _plans(config, run_job(_resolve_inputs(config, data, samplers=False)), world_size)


# ===============================================================================================================
# distributed context, determinism, seeding
# ===============================================================================================================


@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int | None = None

    @classmethod
    def current(cls) -> _Dist:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
        return cls()

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sync_buffers(self, model: nn.Module) -> None:
        """Make every rank's buffers (BatchNorm statistics) equal to rank 0's."""
        if self.enabled:
            for buffer in model.buffers():
                dist.broadcast(buffer.data, src=0)


@contextlib.contextmanager
def _determinism(on: bool, device: torch.device) -> Iterator[None]:
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


def _seed_everything(*key: int) -> None:
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


# ===============================================================================================================
# resume state
# ===============================================================================================================


@dataclass
class _Position:
    """Where a run is: stage, epoch within it (completed epochs), step within the epoch, counters."""

    stage_index: int = 0
    epoch: int = 0
    step: int = 0
    global_step: int = 0
    examples: int = 0
    draws: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    epoch_seconds: float = 0.0
    started: bool = False


@dataclass
class _RunState:
    position: _Position = field(default_factory=_Position)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float | None = None
    bad_epochs: int = 0
    stopped_early: list[str] = field(default_factory=list)
    thresholds: list[float | None] | None = None
    seq: int = 0


def _json_safe(value: Any) -> Any:
    """NaN / inf -> None, tuples -> lists, numpy scalars -> Python (JSON-ready, strict)."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


_NUMERIC_KEYS = ("train_loss", "val_loss", "val_accuracy")


def _history_from_json(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for entry in entries:
        item = dict(entry)
        for key in _NUMERIC_KEYS:
            if item.get(key) is None:
                item[key] = math.nan
        item["val_auroc"] = {k: (math.nan if v is None else v) for k, v in (item.get("val_auroc") or {}).items()}
        out.append(item)
    return out


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    entries: dict[str, dict[str, Any]] = {}
    for pid, values in state["state"].items():
        entry = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                name = f"optim.{pid}.{key}"
                tensors[name] = value.detach().to("cpu").contiguous().clone()
                entry[key] = {"tensor": name}
            else:
                entry[key] = {"value": value}
        entries[str(pid)] = entry
    return {"param_groups": state["param_groups"], "state": entries}, tensors


def _optimizer_from_files(record: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    state = {}
    for pid, entry in record["state"].items():
        state[int(pid)] = {k: tensors[v["tensor"]] if "tensor" in v else v["value"] for k, v in entry.items()}
    return {"state": state, "param_groups": [dict(g) for g in record["param_groups"]]}


def _write_resume_state(out: Path, seq: int, payload: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Numbered state (tensors, then JSON), then the pointer, then old states removed (see the module docstring)."""
    from safetensors.torch import save_file

    folder = out / "resume"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"state-{seq:06d}"
    tensors_path = folder / f"{stem}.safetensors"
    with atomic_path(tensors_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": STATE_FORMAT})
    payload = dict(payload, seq=seq, tensors=tensors_path.name, tensors_sha256=sha256_file(tensors_path))
    atomic_write_text(folder / f"{stem}.json", json.dumps(_json_safe(payload), allow_nan=False) + "\n")
    position = payload["position"]
    pointer = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "seq": seq,
        "state": f"resume/{stem}.json",
        "stage": position["stage"],
        "stage_index": position["stage_index"],
        "epoch": position["epoch"],
        "step": position["step"],
        "global_step": position["global_step"],
        "finished": payload["finished"],
    }
    atomic_write_text(out / POINTER_NAME, json.dumps(pointer, indent=2) + "\n")
    for old in folder.glob("state-*.*"):
        try:
            number = int(old.name[6:12])
        except ValueError:
            continue
        if number < seq - 1:
            with contextlib.suppress(OSError):
                old.unlink()


def _read_resume_state(out: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The newest intact resume state in ``out`` (the pointer's, else the newest numbered one), or None."""
    from safetensors.torch import load_file

    candidates: list[Path] = []
    pointer = out / POINTER_NAME
    if pointer.is_file():
        try:
            candidates.append(out / json.loads(pointer.read_text(encoding="utf-8"))["state"])
        except (OSError, ValueError, KeyError, TypeError):
            warnings.warn(f"{pointer}: unreadable; looking for the newest intact state", UserWarning, stacklevel=3)
    folder = out / "resume"
    if folder.is_dir():
        candidates.extend(sorted(folder.glob("state-*.json"), reverse=True))
    seen: set[Path] = set()
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if payload.get("format") != STATE_FORMAT or int(payload.get("version", 0)) > STATE_VERSION:
                raise ValueError("not a resume state of this version")
            tensors_path = path.with_name(payload["tensors"])
            if sha256_file(tensors_path) != payload["tensors_sha256"]:
                raise ValueError("tensors do not match their sha256")
            tensors = load_file(str(tensors_path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"{path}: skipped ({exc})", UserWarning, stacklevel=3)
            continue
        if len(seen) > 1:
            warnings.warn(f"{out}: resuming from an older intact state, {path.name}", UserWarning, stacklevel=3)
        return payload, tensors
    return None


# ===============================================================================================================
# the job
# ===============================================================================================================


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


class _Trainer:
    """State and steps of one :func:`train_job` (kept in one object so the generator stays readable)."""

    def __init__(
        self,
        config: TrainConfig,
        out: Path,
        dctx: _Dist,
        device: torch.device,
        classes: Sequence[str],
        in_channels: int,
    ) -> None:
        self.config = config
        self.out = out
        self.dctx = dctx
        self.device = device
        self.classes = tuple(classes)
        self.in_channels = int(in_channels)
        self.cuda = device.type == "cuda"
        self.amp = self.cuda and config.amp
        self.run = _RunState()
        self.consistent = True
        self.warned: set[tuple[str, str]] = set()

    # -- data ----------------------------------------------------------------------------------------------------
    def stage_counts(self, name: str, inputs: _Inputs) -> tuple[np.ndarray, int] | None:
        """(positives per class, examples) of a stage's training data, for class weights and one-class warnings.

        Tables and image labels are counted exactly; Liu's sampler from ``p_tumor``; the X-ray lesion stream from
        the labels of its first draws when ``class_weights="balanced"``, else only which classes occur at all.
        """
        classes = list(self.classes)
        if name == "whole":
            images = inputs.images[inputs.images["split"] == "train"]  # type: ignore[index]
            return images[classes].to_numpy().sum(axis=0), len(images)
        if inputs.train_table is not None:
            cols = [f"label_{c}" for c in classes] if self.config.track == "cxr" else ["label"]
            if not all(c in inputs.train_table.columns for c in cols):
                cols = [c for c in inputs.train_table.columns if str(c).startswith("label_")] or ["label"]
            return inputs.train_table[cols].to_numpy().sum(axis=0), len(inputs.train_table)
        stream = inputs.train_stream
        if isinstance(stream, BalancedSampler):
            n = 10_000
            return np.array([round(stream.p_tumor * n)]), n
        if isinstance(stream, CxrLesionSampler):
            if self.config.class_weights == "balanced":
                n = min(512, max(64, self.config.batch_size * 16))
                rows = [stream.draw(i) for i in range(n)]
                return np.array([[r[f"label_{c}"] for c in classes] for r in rows]).sum(axis=0), n
            present = 0
            for source in stream.sources:
                present |= int(np.bitwise_or.reduce(source.lesion_bits, axis=None)) if source.lesion_bits.size else 0
            return np.array([(present >> k) & 1 for k in range(len(classes))]), 2
        return None

    def warn_one_class(self, name: str, counts: tuple[np.ndarray, int] | None) -> None:
        """Warn (once per stage) about classes without positives or without negatives in the training data."""
        if counts is None or not self.dctx.main:
            return
        positives, n = counts
        lacking = [
            f"{c} ({'no positives' if p == 0 else 'no negatives'})"
            for c, p in zip(self.classes, positives, strict=True)
            if p == 0 or p == n
        ]
        if lacking:
            warnings.warn(
                f"the training set of stage {name!r} has one class only for {', '.join(lacking)}; training continues",
                UserWarning,
                stacklevel=2,
            )

    def loader(self, dataset: Dataset, sampler: Sampler | None, key: Sequence[int]) -> DataLoader:
        """A DataLoader with its own seeded generator (the global torch RNG is not consumed)."""
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            num_workers=self.config.num_workers,
            pin_memory=self.cuda,
            generator=generator,
        )

    def stage_datasets(self, name: str, inputs: _Inputs) -> tuple[Dataset | None, Dataset]:
        """(map-style training dataset, or None for a stream; validation dataset), built once per stage."""
        c = self.config
        if name == "whole":
            assert inputs.images is not None
            sets = []
            for split, transforms in (("train", cxr_train_transforms()), ("val", cxr_eval_transforms())):
                images = inputs.images[inputs.images["split"] == split]
                sets.append(
                    WholeImageDataset(
                        images["path"].tolist(),
                        images[list(self.classes)].to_numpy(),
                        c.working_size,
                        transforms,
                        c.seed,
                    )
                )
            return sets[0], sets[1]
        train_tf = slide_train_transforms() if c.track == "slide" else cxr_train_transforms()
        val_tf = None if c.track == "slide" else cxr_eval_transforms()
        val = PatchTableDataset(inputs.val_table, inputs.patch_size, val_tf, c.seed, inputs.slide_mpp)  # type: ignore[arg-type]
        if inputs.train_stream is not None:
            return None, val
        train = PatchTableDataset(inputs.train_table, inputs.patch_size, train_tf, c.seed, inputs.slide_mpp)  # type: ignore[arg-type]
        return train, val

    def train_loader(
        self, inputs: _Inputs, train_set: Dataset | None, stage_index: int, epoch: int, step: int
    ) -> DataLoader:
        """The loader of one epoch from batch ``step`` on (streams start at the draws consumed so far)."""
        c, d = self.config, self.dctx
        key = (c.seed, stage_index + 1, epoch)
        if train_set is None:
            transforms = slide_train_transforms() if c.track == "slide" else cxr_train_transforms()
            stream = PatchStream(
                inputs.train_stream,
                transforms,
                patch_size=inputs.patch_size,
                start=self.run.position.draws,
                batch_size=c.batch_size,
                rank=d.rank,
                world=d.world,
                classes=None if c.track == "slide" else self.classes,
                mpp=inputs.slide_mpp,
            )
            return self.loader(stream, None, key)
        train_set.set_epoch(epoch)  # type: ignore[attr-defined]
        order = _EpochOrder(
            len(train_set),  # type: ignore[arg-type]
            key,
            shuffle=True,
            rank=d.rank,
            world=d.world,
            batch_size=c.batch_size,
            start_batch=step,
        )
        return self.loader(train_set, order, key)

    # -- steps ---------------------------------------------------------------------------------------------------
    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = to_float(x.to(self.device, non_blocking=True))
        if self.cuda and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluate(self, core: nn.Module, dataset: Dataset, label: str, total: int) -> Job[dict[str, Any]]:
        """Validation predictions of ``dataset`` (gathered over ranks): probs, targets, loss sum."""
        d = self.dctx
        order = _EpochOrder(len(dataset), (0,), shuffle=False, rank=d.rank, world=d.world, pad=False)
        loader = self.loader(dataset, order, (self.config.seed, 0, 0))
        core.eval()
        probs, targets = [], []
        loss_sum = 0.0
        batches = len(loader)
        with torch.no_grad():
            for k, (x, y) in enumerate(loader):
                with self.autocast():
                    logits = core(self.to_device(x))
                logits = logits.float()
                y = y.to(self.device, non_blocking=True).float()
                loss_sum += float(nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum"))
                probs.append(torch.sigmoid(logits).cpu().numpy())
                targets.append(y.cpu().numpy())
                if (k + 1) % self.config.progress_every == 0:
                    yield Progress(self.run.position.global_step, total, f"{label}: validation batch {k + 1}/{batches}")
        n_classes = len(self.classes)
        mine = (
            order.indices,
            np.concatenate(probs) if probs else np.zeros((0, n_classes), np.float32),
            np.concatenate(targets) if targets else np.zeros((0, n_classes), np.float32),
            loss_sum,
        )
        parts = d.gather(mine)
        index = np.concatenate([p[0] for p in parts])
        sort = np.argsort(index, kind="stable")
        return {
            "probs": np.concatenate([p[1] for p in parts])[sort],
            "targets": np.concatenate([p[2] for p in parts])[sort],
            "loss_sum": float(sum(p[3] for p in parts)),
        }

    def metrics(self, stage: str, result: Mapping[str, Any]) -> tuple[dict[str, Any], list[float | None]]:
        from sklearn.metrics import roc_auc_score

        from ..evaluation import youden_thresholds

        probs, targets = result["probs"], result["targets"]
        n = len(targets)
        val_loss = result["loss_sum"] / max(1, targets.size)
        aurocs: dict[str, float] = {}
        for c, name in enumerate(self.classes):
            y = targets[:, c] >= 0.5
            if n == 0 or y.all() or not y.any():
                aurocs[name] = math.nan
                if (stage, name) not in self.warned and self.dctx.main:
                    self.warned.add((stage, name))
                    only = "positive" if n and y.all() else "negative"
                    warnings.warn(
                        f"AUROC is undefined for class {name!r} in the validation set of stage {stage!r}: every "
                        f"example is {only}; it is reported as NaN and training continues",
                        UserWarning,
                        stacklevel=2,
                    )
            else:
                aurocs[name] = float(roc_auc_score(y, probs[:, c]))
        defined = [v for v in aurocs.values() if math.isfinite(v)]
        aurocs["mean"] = float(np.mean(defined)) if defined else math.nan
        accuracy = float(((probs >= 0.5) == (targets >= 0.5)).mean()) if n else math.nan
        thresholds: list[float | None] = []
        if n:
            for t in youden_thresholds(targets, probs):
                thresholds.append(float(np.clip(t, 0.0, 1.0)) if math.isfinite(t) else None)
        else:
            thresholds = [None] * len(self.classes)
        return {"val_loss": val_loss, "val_auroc": aurocs, "val_accuracy": accuracy}, thresholds

    # -- saving --------------------------------------------------------------------------------------------------
    def meta(self, core: nn.Module, stage: str, inputs: _Inputs) -> dict[str, Any]:
        c = self.config
        whole = stage == "whole"
        if c.track == "slide":
            normalization: dict[str, Any] = {"mode": "unit", "scale": "RGB uint8 / 255"}
        else:
            normalization = {"mode": "standardize", "transform": cxr_eval_transforms().to_dict()}
        return {
            "arch": c.arch,
            "num_classes": len(self.classes),
            "classes": list(self.classes),
            "in_channels": inputs.in_channels,
            "input_size": c.working_size if whole else inputs.patch_size,
            "center_size": None if (whole or c.track == "cxr") else inputs.center_size,
            "mpp": None if (whole or c.track == "cxr") else inputs.mpp,
            "normalization": normalization,
            "config": c.to_dict(),
            "metrics": _json_safe(self.run.history),
            "thresholds": self.run.thresholds,
            "task": c.track,
            "stage": stage,
            "epoch": self.run.position.epoch,
            "global_step": self.run.position.global_step,
        }

    def save(
        self,
        core: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: ExampleHalvingLR,
        stage: str,
        inputs: _Inputs,
        *,
        best: bool = False,
        finished: bool = False,
    ) -> None:
        """Write ``last`` (and ``best``), then the resume state (rank 0 only)."""
        if not self.dctx.main:
            return
        was = self.consistent
        self.consistent = False
        try:
            meta = self.meta(core, stage, inputs)
            save_checkpoint(self.out / "last", core, meta)
            if best:
                save_checkpoint(self.out / "best", core, meta)
            tensors = {f"model.{k}": v.detach().to("cpu").contiguous().clone() for k, v in core.state_dict().items()}
            optim_record, optim_tensors = _optimizer_to_files(optimizer)
            tensors.update(optim_tensors)
            tensors["rng.torch"] = torch.get_rng_state()
            cuda_names = []
            if self.cuda:
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    tensors[f"rng.cuda.{i}"] = s
                    cuda_names.append(f"rng.cuda.{i}")
            np_state = np.random.get_state()  # noqa: NPY002
            py_state = random.getstate()
            payload = {
                "format": STATE_FORMAT,
                "version": STATE_VERSION,
                "config": self.config.to_dict(),
                "arch": self.config.arch,
                "classes": list(self.classes),
                "in_channels": inputs.in_channels,
                "world_size": self.dctx.world,
                "position": dict(dataclasses.asdict(self.run.position), stage=stage),
                "history": self.run.history,
                "best_score": self.run.best_score,
                "bad_epochs": self.run.bad_epochs,
                "stopped_early": self.run.stopped_early,
                "thresholds": self.run.thresholds,
                "finished": finished,
                "scheduler": scheduler.state_dict(),
                "optimizer": optim_record,
                "rng": {
                    "numpy": [
                        np_state[0],
                        np_state[1].tolist(),
                        int(np_state[2]),
                        int(np_state[3]),
                        float(np_state[4]),
                    ],
                    "python": [py_state[0], list(py_state[1]), py_state[2]],
                    "cuda": cuda_names,
                },
            }
            self.run.seq += 1
            _write_resume_state(self.out, self.run.seq, payload, tensors)
        finally:
            self.consistent = was

    def restore(
        self,
        payload: Mapping[str, Any],
        tensors: Mapping[str, torch.Tensor],
        core: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: ExampleHalvingLR,
    ) -> None:
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        core.load_state_dict(model_state, strict=True)
        optimizer.load_state_dict(_optimizer_from_files(payload["optimizer"], tensors))
        scheduler.load_state_dict(payload["scheduler"])
        position = {k: v for k, v in payload["position"].items() if k != "stage"}
        self.run = _RunState(
            position=_Position(**position),
            history=_history_from_json(payload["history"]),
            best_score=payload["best_score"],
            bad_epochs=int(payload["bad_epochs"]),
            stopped_early=list(payload["stopped_early"]),
            thresholds=payload["thresholds"],
            seq=int(payload["seq"]),
        )
        torch.set_rng_state(tensors["rng.torch"])
        if self.cuda and payload["rng"]["cuda"]:
            torch.cuda.set_rng_state_all([tensors[name] for name in payload["rng"]["cuda"]])
        np_state = payload["rng"]["numpy"]
        np.random.set_state(  # noqa: NPY002
            (np_state[0], np.array(np_state[1], dtype=np.uint32), np_state[2], np_state[3], np_state[4])
        )
        py_state = payload["rng"]["python"]
        random.setstate((py_state[0], tuple(py_state[1]), py_state[2]))

    def check_resumable(self, payload: Mapping[str, Any]) -> None:
        check_compatible(
            {"arch": payload.get("arch"), "classes": payload.get("classes"), "in_channels": payload.get("in_channels")},
            arch=self.config.arch,
            classes=self.classes,
            in_channels=self.in_channels,
            path=self.out / POINTER_NAME,
        )
        saved = payload.get("config") or {}
        mine = self.config.to_dict()
        changed = [k for k in mine if k not in _RESUMABLE_CHANGES and saved.get(k, mine[k]) != mine[k]]
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {mine[k]!r}" for k in changed)
            raise ConfigError(
                f"{self.out} holds a run with other settings ({diffs}); resume with the same settings (only "
                f"{', '.join(sorted(_RESUMABLE_CHANGES))} may change) or train into another folder"
            )
        position = payload["position"]
        if int(payload.get("world_size", 1)) != self.dctx.world:
            if position["step"]:
                raise ConfigError(
                    f"{self.out}: the run stopped in the middle of an epoch with {payload.get('world_size')} "
                    f"process(es); resume it with the same number (now {self.dctx.world})"
                )
            if self.dctx.main:
                warnings.warn(
                    f"resuming a run of {payload.get('world_size')} process(es) with {self.dctx.world}: the result "
                    "will not be bit-identical to an uninterrupted run",
                    UserWarning,
                    stacklevel=2,
                )


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
    rest = dataclasses.replace(data, patch_table=None, sampler=None).to_dict()
    record.update(rest)
    return record


def _versions() -> dict[str, str]:
    import sklearn
    import torchvision

    return {
        "napari_patchdx": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit_learn": sklearn.__version__,
        "platform": platform.platform(),
    }


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(out / MANIFEST_NAME, json.dumps(_json_safe(manifest), indent=2, allow_nan=False) + "\n")


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
    dctx = _Dist.current()
    device = resolve_device(config.device, local_rank=dctx.local_rank if dctx.enabled else None)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    has_run = (out / POINTER_NAME).exists() or (out / "last.json").exists()
    if has_run and not resume:
        raise ConfigError(f"{out} already holds a training run; pass resume=True to continue it or use another folder")
    yield Progress(0, 0, "preparing the training data")
    inputs = yield from _resolve_inputs(config, data)
    plans = _plans(config, inputs, dctx.world)
    total = sum(p.total_steps for p in plans)
    trainer = _Trainer(config, out, dctx, device, inputs.classes, inputs.in_channels)
    if dctx.main:
        out.mkdir(parents=True, exist_ok=True)
    loaded = _read_resume_state(out) if resume and has_run else None
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
        previous = out / MANIFEST_NAME
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
            "versions": _versions(),
            "config": config.to_dict(),
        }
        manifest.setdefault("sessions", []).append(session)
        _write_manifest(out, manifest)

    try:
        with _determinism(config.deterministic, device):
            model = optimizer = scheduler = ddp = None
            try:
                _seed_everything(config.seed, 0, 0, 0)
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
                result = yield from _train_loop(trainer, model, ddp, optimizer, scheduler, inputs, plans, total, stop)
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


def _train_loop(
    trainer: _Trainer,
    core: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: ExampleHalvingLR,
    inputs: _Inputs,
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
                    _seed_everything(config.seed, pos.stage_index + 1, pos.epoch, dctx.rank)
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


def _flush(trainer: _Trainer, pending: list[tuple[torch.Tensor, int]], stage: str, steps: int) -> None:
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


# ===============================================================================================================
# command line (torchrun entry point)
# ===============================================================================================================


def _printer() -> Callable[[Progress], None]:
    last = [0.0]

    def show(report: Progress) -> None:
        now = time.monotonic()
        if report.partial is not None or now - last[0] >= 5.0:
            last[0] = now
            share = f"{100 * report.fraction:5.1f}% " if report.total else ""
            print(f"{share}{report.message}", flush=True)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m napari_patchdx.training CONFIG.json OUT_DIR``: train (under torchrun: on every rank).

    ``CONFIG.json`` holds ``{"config": {TrainConfig fields}, "data": {TrainData fields}}`` (a run's
    ``train_manifest.json`` has that shape too). Returns the exit status: 0 done, 1 cancelled, 2 error.
    """
    parser = argparse.ArgumentParser(prog="python -m napari_patchdx.training", description=main.__doc__)
    parser.add_argument("config", help="JSON file with 'config' and 'data' objects")
    parser.add_argument("out_dir", help="run folder (resumed when it holds a run)")
    parser.add_argument("--no-resume", action="store_true", help="refuse a folder that already holds a run")
    parser.add_argument("--rank-digests", help=argparse.SUPPRESS)  # tests: each rank writes its weights' sha256
    args = parser.parse_args(argv)
    try:
        spec = json.loads(Path(args.config).read_text(encoding="utf-8"))
        if not isinstance(spec, Mapping) or "config" not in spec or "data" not in spec:
            raise ConfigError("the file must hold a JSON object with 'config' and 'data'")
        config = TrainConfig.from_dict(spec["config"])
        data = TrainData.from_dict(spec["data"])
    except (OSError, ValueError) as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 2
    started_group = False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and config.device not in ("cpu", "mps")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if use_cuda else "gloo")
        started_group = True
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    try:
        result = run_job(
            train_job(config, data, args.out_dir, resume=not args.no_resume), _printer() if rank == 0 else None
        )
        if args.rank_digests:
            folder = Path(args.rank_digests)
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / f"rank{rank}.sha256", result.weights_sha256 + "\n")
        if rank == 0:
            print(f"done: {result.global_step} steps; last checkpoint {result.last}; best {result.best}", flush=True)
        return 1 if result.cancelled else 0
    except PatchdxError as exc:
        print(f"error (rank {rank}): {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the run resumes from its last save", file=sys.stderr, flush=True)
        return 1
    finally:
        if started_group:
            dist.destroy_process_group()

