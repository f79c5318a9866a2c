"""Training settings: :class:`TrainConfig` (validated on creation) and the constants behind its defaults.

The stages, the budget rule and the learning-rate rule these settings select are described in the package
docstring (:mod:`napari_patchdx.training`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._config import choice, integer, number, text, unknown_key
from ..devices import check_device_form
from ..errors import ConfigError
from ..models.nets import ARCHITECTURES, MIN_INPUT_SIZE
from ..transforms.compose import STAIN_MODES

TRACKS: tuple[str, ...] = ("slide", "cxr")
"""``slide``: whole-slide patches, 3 channels, one class (tumour). ``cxr``: chest X-rays, 1 channel, 5 classes."""

STAGES: tuple[str, ...] = ("patches", "whole", "curriculum", "baseline")
"""What to train (see the package docstring)."""

OPTIMIZERS: tuple[str, ...] = ("rmsprop", "adam", "sgd")
"""Optimizer names accepted by :class:`TrainConfig`."""

RMSPROP_MOMENTUM = 0.9
RMSPROP_ALPHA = 0.9
RMSPROP_EPS = 1.0
SGD_MOMENTUM = 0.9
LIU_BATCH = 32
BASE_LR: dict[str, float] = {"rmsprop": 0.05, "adam": 1e-3, "sgd": 0.01}
"""Default learning rate per optimizer (per ``LIU_BATCH`` examples for RMSProp and SGD, see the package docstring)."""
_SCALED_LR = {"rmsprop": True, "sgd": True, "adam": False}
DEFAULT_STREAM_STEPS = 100
"""Batches per epoch of a slide stream when ``steps_per_epoch`` is None."""
DEFAULT_PATCH_SIZE = {"slide": 299, "cxr": 256}
DEFAULT_ARCH = {"slide": "inception_v3", "cxr": "resnet50"}


@dataclass
class TrainConfig:
    """Everything that decides a training run (validated on creation; ``to_dict`` / ``from_dict`` for JSON).

    Attributes:
        track: ``"slide"`` (RGB slide patches, one class) or ``"cxr"`` (grey chest X-rays, the cohort's classes).
        stage: ``"patches"``, ``"whole"``, ``"curriculum"`` or ``"baseline"`` (the slide track has patches only).
        arch: one of :data:`napari_patchdx.models.ARCHITECTURES`; None = the paper's (slide: inception_v3, cxr:
            resnet50).
        epochs: epochs per stage (see the budget rule in the package docstring).
        batch_size: examples per optimizer step on each rank.
        steps_per_epoch: batches per patch-stage epoch: needed for endless streams (None: 100 for slides, one
            whole-image epoch's worth for X-rays); with a patch table it caps the pass. Whole-image epochs are
            always one pass over the training images.
        optimizer: ``"rmsprop"`` (Liu et al.), ``"adam"`` or ``"sgd"``.
        lr: learning rate; None = the rule in the package docstring (RMSProp: 0.05 * batch_size * world / 32).
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
        stain: colour treatment of slide patches (slides only): ``"liu"`` (Liu et al.'s TF colour jitter, the
            default), ``"hed"`` (Tellez et al.'s HED jitter), ``"macenko"`` (Macenko normalisation to
            ``stain_reference``, also at validation and inference: the checkpoint records the reference) or
            ``"none"`` (orientations only); see :mod:`napari_patchdx.transforms`.
        hed_sigma: half-range of the HED jitter's multipliers and offsets, in [0, 1) (Tellez et al.'s HED-light:
            0.05); used with ``stain="hed"``.
        stain_reference: the Macenko target (``stain="macenko"`` only): a JSON stain reference, the sidecar of a
            checkpoint trained with Macenko normalisation, or an image of stained tissue; None = fitted to 64
            training patches.
        hard_negatives: a second training round (Wang et al. 2016, the CAMELYON16 winner): the first round's model
            maps the training slides, and fine-tuning from its best checkpoint draws ``hard_negative_fraction`` of
            its patches from the cells it scored at least ``hard_negative_threshold`` that hold no tumour (slides
            only; see :mod:`napari_patchdx.training.hard_negatives`).
        hard_negative_threshold: the probability from which a normal cell is a false positive, in (0, 1].
        hard_negative_fraction: the share of second-round patches drawn from the false-positive regions, in (0, 1].
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
    stain: str = "liu"
    hed_sigma: float = 0.05
    stain_reference: str | None = None
    hard_negatives: bool = False
    hard_negative_threshold: float = 0.5
    hard_negative_fraction: float = 0.3
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
        self.device = check_device_form(self.device)
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
        self.stain = choice("stain", self.stain, STAIN_MODES)
        if self.track == "cxr" and self.stain != "liu":
            raise ConfigError(
                f"stain {self.stain!r} is a slide setting: chest X-rays are augmented by sharpening / blurring "
                "and standardised (track='cxr' keeps the default stain)"
            )
        self.hed_sigma = number("hed_sigma", self.hed_sigma, strict=False)
        if self.hed_sigma >= 1:
            raise ConfigError(f"hed_sigma must be in [0, 1), got {self.hed_sigma}")
        self.stain_reference = text("stain_reference", self.stain_reference, optional=True)
        if self.stain_reference is not None and self.stain != "macenko":
            raise ConfigError(
                f"stain_reference applies to stain='macenko' only (stain is {self.stain!r}); remove it or set "
                "stain: macenko"
            )
        if not isinstance(self.hard_negatives, bool):
            raise ConfigError(f"hard_negatives must be true or false, got {self.hard_negatives!r}")
        if self.hard_negatives and self.track != "slide":
            raise ConfigError("hard_negatives mines false positives of slide heatmaps: slide track only")
        self.hard_negative_threshold = number("hard_negative_threshold", self.hard_negative_threshold)
        self.hard_negative_fraction = number("hard_negative_fraction", self.hard_negative_fraction)
        for key in ("hard_negative_threshold", "hard_negative_fraction"):
            if getattr(self, key) > 1:
                raise ConfigError(f"{key} must be in (0, 1], got {getattr(self, key)}")
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
        """The initial learning rate: ``lr``, or the optimizer's default scaled by the global batch.

        The rule is in the package docstring.
        """
        if self.lr is not None:
            return float(self.lr)
        base = BASE_LR[self.optimizer]
        if _SCALED_LR[self.optimizer]:
            base *= self.batch_size * max(1, int(world_size)) / LIU_BATCH
        return base
