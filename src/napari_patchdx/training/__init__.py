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

Modules
-------
:mod:`~napari_patchdx.training.config` (the settings), :mod:`~napari_patchdx.training.inputs` (the data description
and what each stage reads), :mod:`~napari_patchdx.training.datasets` (whole images, epoch order),
:mod:`~napari_patchdx.training.schedule` (learning-rate schedule, stage plans), :mod:`~napari_patchdx.training.ddp`
(distributed context, determinism, seeding), :mod:`~napari_patchdx.training.resume` (the resume state),
:mod:`~napari_patchdx.training.trainer` (loaders, validation, saving), :mod:`~napari_patchdx.training.loop` (the
epochs), :mod:`~napari_patchdx.training.job` (:func:`train_job`, the manifest), :mod:`~napari_patchdx.training.cli`
(the torchrun entry point), :mod:`~napari_patchdx.training.hard_negatives` (Wang et al.'s second round) and
:mod:`~napari_patchdx.training.corrections` (retraining with a user's corrections: numbered, resumable rounds that
fine-tune with the corrected regions weighted up and compare before / after; their settings in
:mod:`~napari_patchdx.training.retrain_settings`). Device strings live in
:mod:`napari_patchdx.devices`.
"""

from __future__ import annotations

from ..devices import DEVICE_FORMS, available_devices, resolve_device
from .cli import main
from .config import DEFAULT_PATCH_SIZE, OPTIMIZERS, STAGES, TRACKS, TrainConfig
from .corrections import (
    CorrectionRound,
    SlideCorrection,
    correction_regions,
    corrections_round_job,
    focus_train_job,
    latest_round,
    round_checkpoint,
)
from .datasets import WholeImageDataset
from .ddp import state_digest
from .inputs import TrainData
from .job import TRAIN_MANIFEST_NAME, train, train_job
from .loop import TrainingError, TrainResult
from .resume import POINTER_NAME
from .retrain_settings import RetrainSettings
from .schedule import ExampleHalvingLR, StagePlan, plan_stages

__all__ = [
    "DEFAULT_PATCH_SIZE",
    "DEVICE_FORMS",
    "OPTIMIZERS",
    "POINTER_NAME",
    "STAGES",
    "TRACKS",
    "TRAIN_MANIFEST_NAME",
    "CorrectionRound",
    "ExampleHalvingLR",
    "RetrainSettings",
    "SlideCorrection",
    "StagePlan",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "TrainingError",
    "WholeImageDataset",
    "available_devices",
    "correction_regions",
    "corrections_round_job",
    "focus_train_job",
    "latest_round",
    "main",
    "plan_stages",
    "resolve_device",
    "round_checkpoint",
    "state_digest",
    "train",
    "train_job",
]
