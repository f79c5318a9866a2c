""":class:`Trainer`: the state and the steps of one training job: its data loaders, validation and metrics,
checkpoints and the resume state it saves and restores.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import ConfigError
from ..jsonvalues import json_value
from ..models.checkpoint import check_compatible, save_checkpoint, slide_normalization
from ..progress import Job, Progress
from ..sampling.balanced import BalancedSampler
from ..sampling.cxr_lesions import CxrLesionSampler
from ..sampling.datasets import PatchReader, PatchStream, PatchTableDataset, to_float
from ..transforms.compose import (
    Compose,
    cxr_eval_transforms,
    cxr_train_transforms,
    slide_eval_transforms,
    slide_train_transforms,
)
from ..transforms.stain import REFERENCE_PATCHES, StainReference, fit_reference, load_reference
from .config import TrainConfig
from .datasets import EpochOrder, WholeImageDataset
from .ddp import DistContext
from .inputs import TrainInputs
from .resume import (
    POINTER_NAME,
    STATE_FORMAT,
    STATE_VERSION,
    RunPosition,
    RunState,
    history_from_json,
    optimizer_from_files,
    optimizer_to_files,
    write_resume_state,
)
from .schedule import ExampleHalvingLR

# settings that may change when a run is resumed (they do not change the trajectory of the weights)
_RESUMABLE_CHANGES = frozenset({"epochs", "early_stopping_patience", "device", "num_workers", "progress_every"})


class Trainer:
    """State and steps of one :func:`train_job` (kept in one object so the generator stays readable)."""

    def __init__(
        self,
        config: TrainConfig,
        out: Path,
        dctx: DistContext,
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
        self.run = RunState()
        self.consistent = True
        self.warned: set[tuple[str, str]] = set()
        self.stain_reference: StainReference | None = None

    def slide_transforms(self, inputs: TrainInputs) -> tuple[Compose, Compose | None]:
        """(training, validation) transforms of slide patches for ``config.stain``. With ``"macenko"`` the reference
        is read from ``config.stain_reference``, or fitted to REFERENCE_PATCHES training patches (drawn with the
        seed: the same on every rank and after a resume), once per run."""
        c = self.config
        if c.stain == "macenko" and self.stain_reference is None:
            if c.stain_reference is not None:
                self.stain_reference = load_reference(c.stain_reference)
            else:
                table = inputs.train_table
                if table is None:
                    table = inputs.train_stream.table(REFERENCE_PATCHES)  # type: ignore[union-attr]
                rows = table.sample(n=min(len(table), REFERENCE_PATCHES), random_state=c.seed)
                reader = PatchReader(inputs.patch_size, inputs.slide_mpp)
                patches = (reader.read(r.slide, r.x, r.y, r.level, r.size) for r in rows.itertuples(index=False))
                self.stain_reference = fit_reference(patches, seed=c.seed)
        return (
            slide_train_transforms(stain=c.stain, hed_sigma=c.hed_sigma, reference=self.stain_reference),
            slide_eval_transforms(c.stain, self.stain_reference),
        )

    # -- data ----------------------------------------------------------------------------------------------------
    def stage_counts(self, name: str, inputs: TrainInputs) -> tuple[np.ndarray, int] | None:
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

    def stage_datasets(self, name: str, inputs: TrainInputs) -> tuple[Dataset | None, Dataset]:
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
        if c.track == "slide":
            train_tf, val_tf = self.slide_transforms(inputs)
        else:
            train_tf, val_tf = cxr_train_transforms(), cxr_eval_transforms()
        val = PatchTableDataset(inputs.val_table, inputs.patch_size, val_tf, c.seed, inputs.slide_mpp)  # type: ignore[arg-type]
        if inputs.train_stream is not None:
            return None, val
        train = PatchTableDataset(inputs.train_table, inputs.patch_size, train_tf, c.seed, inputs.slide_mpp)  # type: ignore[arg-type]
        return train, val

    def train_loader(
        self, inputs: TrainInputs, train_set: Dataset | None, stage_index: int, epoch: int, step: int
    ) -> DataLoader:
        """The loader of one epoch from batch ``step`` on (streams start at the draws consumed so far)."""
        c, d = self.config, self.dctx
        key = (c.seed, stage_index + 1, epoch)
        if train_set is None:
            transforms = self.slide_transforms(inputs)[0] if c.track == "slide" else cxr_train_transforms()
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
        order = EpochOrder(
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
        """A batch on the run's device as float (channels-last for images on CUDA)."""
        x = to_float(x.to(self.device, non_blocking=True))
        if self.cuda and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bfloat16 autocast when AMP is on (CUDA only), else a no-op context."""
        if self.amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def evaluate(self, core: nn.Module, dataset: Dataset, label: str, total: int) -> Job[dict[str, Any]]:
        """Validation predictions of ``dataset`` (gathered over ranks): probs, targets, loss sum."""
        d = self.dctx
        order = EpochOrder(len(dataset), (0,), shuffle=False, rank=d.rank, world=d.world, pad=False)
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
        """Validation loss, AUROC per class and mean, accuracy at 0.5; Youden thresholds per class."""
        from sklearn.metrics import roc_auc_score

        from ..evaluation.xray_metrics import youden_thresholds

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
    def meta(self, core: nn.Module, stage: str, inputs: TrainInputs) -> dict[str, Any]:
        """The checkpoint sidecar of the current weights (what inference needs, the config, metrics, thresholds)."""
        c = self.config
        whole = stage == "whole"
        if c.track == "slide":
            normalization = slide_normalization(self.slide_transforms(inputs)[1])
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
            "metrics": json_value(self.run.history, "metrics"),
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
        inputs: TrainInputs,
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
            optim_record, optim_tensors = optimizer_to_files(optimizer)
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
            write_resume_state(self.out, self.run.seq, payload, tensors)
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
        """Load a resume state (weights, optimizer, scheduler, position, history, RNG states)."""
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        core.load_state_dict(model_state, strict=True)
        optimizer.load_state_dict(optimizer_from_files(payload["optimizer"], tensors))
        scheduler.load_state_dict(payload["scheduler"])
        position = {k: v for k, v in payload["position"].items() if k != "stage"}
        self.run = RunState(
            position=RunPosition(**position),
            history=history_from_json(payload["history"]),
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
        """Raise ConfigError when the saved run cannot be resumed with these settings and this world size."""
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
