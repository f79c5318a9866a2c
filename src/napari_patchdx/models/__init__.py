"""Model factory and safe checkpoints: Inception-v3, ResNet-50 and a ~300K-parameter "small" network.

Every model is a :class:`PatchdxNet`: a convolutional trunk ``features`` and one linear ``classifier`` applied
after global average pooling (GAP), so that for an input ``x`` of shape (N, in_channels, H, W)::

    f = model.features(x)                    # (N, C, h, w), the last convolutional block
    logits = model.classifier(f.mean((2, 3)))  # (N, num_classes) == model(x) in eval mode

and the class activation map of class k is ``CAM_k = sum_c W[k, c] * f[c] + b[k]`` (:meth:`PatchdxNet.cam`),
whose spatial mean is exactly logit k. The model returns logits, one per class: the slide task has one class
(tumour vs normal), the chest X-ray task five independent ones; train with ``BCEWithLogitsLoss`` and read
probabilities with a sigmoid. No normalisation happens inside the model: the data pipeline applies the
``normalization`` its checkpoint sidecar records.

Architectures (:data:`ARCHITECTURES`)
-------------------------------------
``inception_v3``
    torchvision's Inception-v3 (Liu et al. 2017) without the auxiliary head, trunk up to ``Mixed_7c``
    (C = 2048; 8 x 8 cells at 299 px; inputs >= 75 px). Dropout 0.5 before the classifier while training,
    as in torchvision.
``resnet50``
    torchvision's ResNet-50 (Park et al. 2019), trunk up to ``layer4`` (C = 2048; stride 32).
``small``
    :class:`SmallNet`, a compact Inception-like network in the spirit of Liu's "small" variant: about 300K
    parameters (299,793 with one class, 300,565 with five), C = 192, stride 16 (19 x 19 cells at 299 px), any
    input >= 32 px.

State-dict keys (stable; checkpoints depend on them)
----------------------------------------------------
``features.<name>.*`` for the trunk and ``classifier.weight`` (num_classes, C) / ``classifier.bias``
(num_classes,). For the torchvision architectures ``<name>`` is torchvision's own module name, so torchvision
key ``k`` maps to ``features.k`` and ``fc.*`` maps to ``classifier.*`` (``AuxLogits.*`` is dropped):
``features.conv1.weight``, ``features.layer4.2.bn3.running_var``, ``features.Conv2d_1a_3x3.conv.weight``,
``features.Mixed_7c.branch_pool.bn.bias``... For ``small``: ``features.stem_1`` ... ``features.mixed_c2``
(see :class:`SmallNet`).

Offline and safe
----------------
Nothing is ever downloaded: torchvision models are built with ``weights=None``. Pretrained weights come only
from a local file the user names (:func:`load_pretrained`): a torchvision-style state dict read with
``torch.load(weights_only=True)`` (which refuses pickles that would run code) or a napari-patchdx checkpoint.
A checkpoint is ``<name>.safetensors`` (weights only) plus a ``<name>.json`` sidecar (architecture, classes,
input size, normalisation, training config, metrics, thresholds, sha256 of the weights); it is read without
any pickle (:func:`load_checkpoint`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import enum
import functools
import json
import logging
import math
import os
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import __version__
from .._fsutil import atomic_path, sha256_file
from ..errors import ConfigError, InputFileError

__all__ = [
    "ARCHITECTURES",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "DEFAULT_INPUT_SIZE",
    "MIN_INPUT_SIZE",
    "PatchdxNet",
    "PretrainedReport",
    "SmallNet",
    "build_model",
    "check_compatible",
    "checkpoint_paths",
    "count_parameters",
    "load_checkpoint",
    "load_pretrained",
    "read_checkpoint_meta",
    "save_checkpoint",
]

log = logging.getLogger(__name__)

ARCHITECTURES: tuple[str, ...] = ("inception_v3", "resnet50", "small")
"""Names accepted by :func:`build_model`."""

MIN_INPUT_SIZE: dict[str, int] = {"inception_v3": 75, "resnet50": 32, "small": 32}
"""Smallest input side (px) each architecture accepts."""

DEFAULT_INPUT_SIZE: dict[str, int] = {"inception_v3": 299, "resnet50": 224, "small": 299}
"""The input side (px) each architecture was designed for (patches may use another size)."""

CHECKPOINT_FORMAT = "napari-patchdx-checkpoint"
"""Value of the sidecar's ``format`` field."""

CHECKPOINT_VERSION = 1
"""Sidecar format version this module writes and reads."""

_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar")
_FIRST_CONV = {
    "inception_v3": "features.Conv2d_1a_3x3.conv.weight",
    "resnet50": "features.conv1.weight",
    "small": "features.stem_1.conv.weight",
}
_HEAD_KEYS = ("classifier.weight", "classifier.bias")
_INCEPTION_TRUNK = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
)
_RESNET_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
_STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "weights")
_KEY_PREFIXES = ("module.", "_orig_mod.")


# --------------------------------------------------------------------------------------------------- models


class PatchdxNet(nn.Module):
    """A convolutional trunk, global average pooling and one linear layer; returns logits.

    Attributes:
        features: the trunk, ``(N, in_channels, H, W) -> (N, num_features, h, w)``.
        classifier: ``nn.Linear(num_features, num_classes)``.
        dropout: dropout on the pooled features (only active in training mode; p = 0.5 for Inception-v3,
            0 otherwise).
        arch: architecture name (one of :data:`ARCHITECTURES`).
        in_channels: input channels (3 for RGB, 1 for X-rays).
        num_classes: number of logits.
        num_features: channels C of ``features``.
        pretrained_report: what :func:`load_pretrained` loaded, or None.
    """

    def __init__(
        self, features: nn.Module, classifier: nn.Linear, arch: str, *, in_channels: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.features = features
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier
        self.arch = arch
        self.in_channels = int(in_channels)
        self.num_classes = int(classifier.out_features)
        self.num_features = int(classifier.in_features)
        self.pretrained_report: PretrainedReport | None = None

    @staticmethod
    def pool(features: torch.Tensor) -> torch.Tensor:
        """Global average pooling: (N, C, h, w) -> (N, C), the mean over h and w."""
        return features.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) of images ``x`` (N, in_channels, H, W), already normalised."""
        return self.classifier(self.dropout(self.pool(self.features(x))))

    def cam(self, x: torch.Tensor | None = None, *, features: torch.Tensor | None = None) -> torch.Tensor:
        """Class activation maps (N, num_classes, h, w) in logit units, from images ``x`` or given ``features``.

        ``CAM_k = sum_c W[k, c] * features[c] + b[k]``; the mean of ``CAM_k`` over (h, w) equals logit k.
        """
        if features is None:
            if x is None:
                raise ValueError("cam() needs images x or features")
            features = self.features(x)
        weight, bias = self.classifier.weight, self.classifier.bias
        maps = torch.einsum("kc,nchw->nkhw", weight, features)
        return maps if bias is None else maps + bias[None, :, None, None]

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, in_channels={self.in_channels}, num_classes={self.num_classes}"


class _ConvBN(nn.Module):
    """Conv (no bias, 'same' padding) -> BatchNorm -> ReLU. Keys ``conv.weight``, ``bn.*``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class _MixedBlock(nn.Module):
    """Inception block at constant resolution: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | avgpool-1x1, concatenated."""

    def __init__(self, c_in: int, b1: int, b3_red: int, b3: int, d3_red: int, d3: int, pool: int) -> None:
        super().__init__()
        self.branch1x1 = _ConvBN(c_in, b1, 1)
        self.branch3x3 = nn.Sequential(_ConvBN(c_in, b3_red, 1), _ConvBN(b3_red, b3, 3))
        self.branch3x3dbl = nn.Sequential(_ConvBN(c_in, d3_red, 1), _ConvBN(d3_red, d3, 3), _ConvBN(d3, d3, 3))
        self.branch_pool = _ConvBN(c_in, pool, 1)
        self.out_channels = b1 + b3 + d3 + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), self.branch3x3(x), self.branch3x3dbl(x), self.branch_pool(pooled)], 1)


class _ReductionBlock(nn.Module):
    """Inception grid reduction (stride 2): 1x1-3x3/2 | 1x1-3x3-3x3/2 | maxpool/2, concatenated."""

    def __init__(self, c_in: int, b3_red: int, b3: int, d3_red: int, d3: int) -> None:
        super().__init__()
        self.branch3x3 = nn.Sequential(_ConvBN(c_in, b3_red, 1), _ConvBN(b3_red, b3, 3, stride=2))
        self.branch3x3dbl = nn.Sequential(
            _ConvBN(c_in, d3_red, 1), _ConvBN(d3_red, d3, 3), _ConvBN(d3, d3, 3, stride=2)
        )
        self.out_channels = c_in + b3 + d3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool2d(x, 3, stride=2, padding=1)
        return torch.cat([self.branch3x3(x), self.branch3x3dbl(x), pooled], 1)


class SmallNet(nn.Module):
    """Trunk of the "small" architecture: a ~300K-parameter Inception-like network (Liu et al. 2017's idea).

    Layout (channels, and spatial size for a 299 px input)::

        stem_1  3x3/2 conv        in -> 16     150
        stem_2  3x3 conv          16 -> 24     150
        stem_3  3x3 conv          24 -> 32     150
        pool    3x3/2 max pool                  75
        mixed_a1, mixed_a2        -> 64         75
        reduce_b                  -> 128        38
        mixed_b1, mixed_b2        -> 120        38
        reduce_c                  -> 208        19
        mixed_c1, mixed_c2        -> 192        19

    Every conv is followed by BatchNorm and ReLU; all padding is 'same', so any input >= 32 px works and the
    output has ceil(H / 16) x ceil(W / 16) cells. 299,600 parameters; :attr:`out_channels` = 192.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.stem_1 = _ConvBN(in_channels, 16, 3, stride=2)
        self.stem_2 = _ConvBN(16, 24, 3)
        self.stem_3 = _ConvBN(24, 32, 3)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.mixed_a1 = _MixedBlock(32, 16, 16, 24, 12, 16, 8)
        self.mixed_a2 = _MixedBlock(64, 16, 16, 24, 12, 16, 8)
        self.reduce_b = _ReductionBlock(64, 32, 40, 16, 24)
        self.mixed_b1 = _MixedBlock(128, 32, 24, 40, 16, 24, 24)
        self.mixed_b2 = _MixedBlock(120, 32, 24, 40, 16, 24, 24)
        self.reduce_c = _ReductionBlock(120, 32, 48, 24, 40)
        self.mixed_c1 = _MixedBlock(208, 48, 32, 64, 24, 40, 40)
        self.mixed_c2 = _MixedBlock(192, 48, 32, 64, 24, 40, 40)
        self.out_channels = self.mixed_c2.out_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, 192, ceil(H / 16), ceil(W / 16))."""
        for module in self.children():
            x = module(x)
        return x


def _validate_arch(arch: str) -> str:
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return arch


def _build_random(arch: str, num_classes: int, in_channels: int) -> PatchdxNet:
    """A freshly initialised model (nothing downloaded)."""
    from torchvision import models as tvm

    if arch == "small":
        trunk = SmallNet(in_channels)
        return PatchdxNet(trunk, nn.Linear(trunk.out_channels, num_classes), arch, in_channels=in_channels)
    if arch == "resnet50":
        tv = tvm.resnet50(weights=None, num_classes=num_classes)
        if in_channels != 3:
            tv.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(tv.conv1.weight, mode="fan_out", nonlinearity="relu")
        trunk = nn.Sequential(OrderedDict((name, getattr(tv, name)) for name in _RESNET_TRUNK))
        return PatchdxNet(trunk, tv.fc, arch, in_channels=in_channels)
    tv = tvm.inception_v3(weights=None, aux_logits=False, init_weights=True, num_classes=num_classes)
    if in_channels != 3:
        tv.Conv2d_1a_3x3.conv = nn.Conv2d(in_channels, 32, kernel_size=3, stride=2, bias=False)
        nn.init.trunc_normal_(tv.Conv2d_1a_3x3.conv.weight, mean=0.0, std=0.1, a=-2, b=2)
    trunk = nn.Sequential(OrderedDict((name, getattr(tv, name)) for name in _INCEPTION_TRUNK))
    return PatchdxNet(trunk, tv.fc, arch, in_channels=in_channels, dropout=float(tv.dropout.p))


def build_model(
    arch: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    pretrained: str | os.PathLike[str] | None = None,
) -> PatchdxNet:
    """Build a :class:`PatchdxNet` returning ``num_classes`` logits for (N, in_channels, H, W) inputs.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        num_classes: number of logits (1 for tumour vs normal slides, 5 for the X-ray lesion classes).
        in_channels: 3 for RGB, 1 for grey X-rays (the first convolution is built for that many channels).
        pretrained: a local weights file to start from (see :func:`load_pretrained`); None for random weights.
            Nothing is ever downloaded. What was loaded is in ``model.pretrained_report``.

    Raises:
        ConfigError: unknown ``arch``, or ``num_classes`` / ``in_channels`` below 1.
        InputFileError: ``pretrained`` is missing, unsafe, unreadable or of another architecture.
    """
    _validate_arch(arch)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ConfigError(f"in_channels must be a positive integer, got {in_channels!r}")
    model = _build_random(arch, num_classes, in_channels)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel / DataParallel (``.module``) or torch.compile wrapper."""
    for _ in range(4):
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


# ----------------------------------------------------------------------------------------- pretrained weights


@dataclass(frozen=True)
class PretrainedReport:
    """What :func:`load_pretrained` did.

    Attributes:
        path: the weights file.
        source: "torch state dict", "safetensors state dict" or "napari-patchdx checkpoint".
        loaded: model keys taken from the file.
        reinitialized: model keys kept at their fresh initialisation because the file's tensor has another
            shape or is absent (the classifier head when the class count differs).
        adapted: keys loaded after adapting the input channels (RGB kernels summed into one grey channel, or
            a grey kernel repeated over the channels and divided by their number).
        ignored: keys in the file the model has no use for (e.g. Inception's ``AuxLogits.*``).
    """

    path: Path
    source: str
    loaded: tuple[str, ...]
    reinitialized: tuple[str, ...]
    adapted: tuple[str, ...]
    ignored: tuple[str, ...]

    def summary(self) -> str:
        """One line for logs and manifests."""
        parts = [f"{len(self.loaded)} tensors loaded from {self.path} ({self.source})"]
        if self.reinitialized:
            parts.append(f"re-initialised: {', '.join(self.reinitialized)}")
        if self.adapted:
            parts.append(f"input channels adapted: {', '.join(self.adapted)}")
        if self.ignored:
            parts.append(f"{len(self.ignored)} unused tensors ignored ({_examples(self.ignored)})")
        return "; ".join(parts)


def _examples(keys: Sequence[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def _key_mismatch(missing: Sequence[str], unexpected: Sequence[str], wrong_shape: Sequence[str]) -> str:
    """'N missing (a, b, ...); M unexpected (...); K of another shape (...)' for a state-dict mismatch."""
    details = []
    if missing:
        details.append(f"{len(missing)} missing ({_examples(missing)})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected ({_examples(unexpected)})")
    if wrong_shape:
        details.append(f"{len(wrong_shape)} of another shape ({_examples(wrong_shape, 3)})")
    return "; ".join(details)


def _short_error(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def _trunk_signature(arch: str) -> dict[str, tuple[int, ...]]:
    """Trunk keys and shapes of ``arch`` (3 input channels), built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = _build_random(arch, 1, 3)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("features.")}


def _detect_arch(keys: Sequence[str]) -> str | None:
    """The architecture whose trunk keys best overlap ``keys`` (Jaccard >= 0.5), or None."""
    trunk = {k for k in keys if k.startswith("features.")}
    best, best_score = None, 0.0
    for arch in ARCHITECTURES:
        reference = set(_trunk_signature(arch))
        score = len(trunk & reference) / max(1, len(trunk | reference))
        if score > best_score:
            best, best_score = arch, score
    return best if best_score >= 0.5 else None


def _to_patchdx_keys(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map torchvision / DDP / compiled key names to ours; returns (mapped state, ignored keys)."""
    mapped: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for original, tensor in state.items():
        key = original
        stripped = True
        while stripped:
            stripped = False
            for prefix in _KEY_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
        if key.startswith(("features.", "classifier.")):
            mapped[key] = tensor
        elif key.startswith("fc."):
            mapped["classifier." + key[3:]] = tensor
        elif key.startswith("AuxLogits."):
            ignored.append(original)
        else:
            mapped["features." + key] = tensor
    return mapped, ignored


def _extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside what ``torch.load`` returned (a state dict, or one under a usual wrapper key)."""
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _STATE_DICT_WRAPPERS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise InputFileError(path, f"does not hold a state dict of tensors (found {type(obj).__name__})")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor) or not isinstance(k, str)]
    if bad:
        raise InputFileError(path, f"does not hold a state dict of tensors (non-tensor entries: {_examples(bad)})")
    return dict(obj)


def _read_pretrained(path: Path) -> tuple[dict[str, torch.Tensor], str, str | None]:
    """Tensors of a local weights file: (state, source description, architecture from a sidecar or None)."""
    sidecar = _sidecar_for(path)
    if sidecar is not None and sidecar.is_file():
        meta = read_checkpoint_meta(sidecar)
        return _read_checkpoint_weights(sidecar, meta), "napari-patchdx checkpoint", meta["arch"]
    if not path.is_file():
        raise InputFileError(
            path,
            "pretrained weights file not found (napari-patchdx never downloads weights: name a local "
            ".pth/.pt torchvision state dict, a .safetensors file or a napari-patchdx checkpoint)",
        )
    if path.suffix.lower() == ".safetensors":
        return _load_safetensors(path), "safetensors state dict", None
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise InputFileError(
            path,
            "cannot be read safely with torch.load(weights_only=True), which only accepts plain tensors and "
            "refuses pickles that would run code; save the weights with torch.save(model.state_dict(), ...) "
            f"({_short_error(exc)})",
        ) from None
    return _extract_state_dict(obj, path), "torch state dict", None


def load_pretrained(model: PatchdxNet, path: str | os.PathLike[str]) -> PretrainedReport:
    """Load a local weights file into ``model``'s trunk (and head when its shape fits), in place.

    Accepted files: a torchvision-style state dict (``.pth`` / ``.pt``, torchvision key names such as
    ``conv1.weight`` / ``fc.weight``, or ours; ``module.`` / ``_orig_mod.`` prefixes and a ``state_dict`` /
    ``model`` wrapper are handled) read with ``torch.load(weights_only=True, map_location="cpu")``, a plain
    ``.safetensors`` state dict, or a napari-patchdx checkpoint (``.json``, ``.safetensors`` with sidecar, or
    stem). Every trunk tensor must be present with the right shape, except that the first convolution's input
    channels are adapted (RGB kernels summed for a 1-channel model). The classifier head is loaded when its
    shape matches and otherwise stays freshly initialised (listed in ``reinitialized``).

    Returns:
        the report, also stored as ``model.pretrained_report`` and logged.

    Raises:
        InputFileError: the file is missing, unsafe (a pickle with code), unreadable, or holds another
            architecture (the message names it and lists a few mismatching keys).
    """
    path = Path(path)
    state, source, file_arch = _read_pretrained(path)
    mapped, ignored = _to_patchdx_keys(state)
    if file_arch is not None and file_arch != model.arch:
        raise InputFileError(
            path,
            f"has {len(mapped)} tensors of {file_arch} (a napari-patchdx checkpoint) but this is {model.arch}",
        )
    target = model.state_dict()
    trunk_keys = [k for k in target if k.startswith("features.")]
    missing = [k for k in trunk_keys if k not in mapped and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in mapped if k not in target]
    wrong_shape: list[str] = []
    adapted: list[str] = []
    new_state = dict(target)
    loaded: list[str] = []
    for key in trunk_keys:
        if key not in mapped:
            continue
        src, dst = mapped[key], target[key]
        if src.shape != dst.shape:
            src = _adapt_first_conv(src, dst) if key == _FIRST_CONV[model.arch] else None
            if src is None:
                wrong_shape.append(f"{key} {tuple(mapped[key].shape)} vs {tuple(dst.shape)}")
                continue
            adapted.append(key)
        new_state[key] = src.to(dtype=dst.dtype)
        loaded.append(key)
    if missing or unexpected or wrong_shape:
        detected = _detect_arch(list(mapped))
        if detected is not None and detected != model.arch:
            what = f"has {len(mapped)} tensors of {detected} but this is {model.arch}"
        elif detected is None:
            what = f"has {len(mapped)} tensors of an unknown architecture but this is {model.arch}"
        else:
            what = f"does not fit this {model.arch} with {model.in_channels} input channels"
        raise InputFileError(path, f"{what}: {_key_mismatch(missing, unexpected, wrong_shape)}")
    reinitialized: list[str] = []
    for key in _HEAD_KEYS:
        if key not in target:
            continue
        if key in mapped and mapped[key].shape == target[key].shape:
            new_state[key] = mapped[key].to(dtype=target[key].dtype)
            loaded.append(key)
        else:
            reinitialized.append(key)
    model.load_state_dict(new_state, strict=True)
    report = PretrainedReport(path, source, tuple(loaded), tuple(reinitialized), tuple(adapted), tuple(ignored))
    model.pretrained_report = report
    log.info("pretrained weights: %s", report.summary())
    return report


def _adapt_first_conv(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor | None:
    """First-conv kernels (O, I, k, k) adapted to ``dst``'s input channels, or None when they cannot be."""
    if src.ndim != 4 or src.shape[0] != dst.shape[0] or src.shape[2:] != dst.shape[2:]:
        return None
    if dst.shape[1] == 1:
        return src.sum(dim=1, keepdim=True)
    if src.shape[1] == 1:
        return src.repeat(1, dst.shape[1], 1, 1) / dst.shape[1]
    return None


# ------------------------------------------------------------------------------------------------ checkpoints


def _sidecar_for(path: Path) -> Path | None:
    """The sidecar a checkpoint path refers to (``.json`` itself, ``x.safetensors`` -> ``x.json``, stem ->
    ``stem.json``, folder -> ``folder/model.json``), or None for a pickle-style suffix."""
    if path.is_dir():
        return path / "model.json"
    suffix = path.suffix.lower()
    if suffix == ".json":
        return path
    if suffix == ".safetensors":
        return path.with_suffix(".json")
    if suffix in _PICKLE_SUFFIXES:
        return None
    return path.with_name(path.name + ".json")


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(weights, sidecar)`` paths of a checkpoint given as its ``.json``, ``.safetensors``, stem or folder.

    A folder stands for ``folder/model``. Raises InputFileError for a pickle-style name (``.pt``, ``.pth``,
    ``.ckpt``...): checkpoints are safetensors + JSON and are never unpickled.
    """
    path = Path(path)
    sidecar = _sidecar_for(path)
    if sidecar is None:
        raise InputFileError(
            path,
            "is a PyTorch pickle-style file, not a napari-patchdx checkpoint: checkpoints must be safetensors "
            "weights with a JSON sidecar (<name>.safetensors + <name>.json), which load without running any code; "
            "a pickle is never opened here (to start training from torchvision-style weights pass the file as "
            "pretrained=, which reads it with torch.load(weights_only=True))",
        )
    return sidecar.with_suffix(".safetensors"), sidecar


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU (no pickle involved)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputFileError(path, f"is not a readable safetensors file ({_short_error(exc)})") from None


def read_checkpoint_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated sidecar of a checkpoint (``.json``, ``.safetensors``, stem or folder), weights untouched.

    Raises:
        InputFileError: no sidecar, not JSON, another format or a newer version, or inconsistent fields.
    """
    weights, sidecar = checkpoint_paths(path)
    if not sidecar.is_file():
        if weights.is_file():
            raise InputFileError(
                sidecar, f"checkpoint sidecar not found beside {weights.name} (without it the model is unknown)"
            )
        raise InputFileError(Path(path), "checkpoint not found (expected <name>.safetensors + <name>.json)")
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(sidecar, f"is not a readable JSON checkpoint sidecar ({_short_error(exc)})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise InputFileError(sidecar, f"is not a napari-patchdx checkpoint sidecar (no format {CHECKPOINT_FORMAT!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version < 1:
        raise InputFileError(sidecar, f"has an invalid checkpoint format version {version!r}")
    if version > CHECKPOINT_VERSION:
        raise InputFileError(
            sidecar,
            f"was written by a newer napari-patchdx (checkpoint format version {version}; this one reads "
            f"version {CHECKPOINT_VERSION}); update napari-patchdx",
        )
    required = ("arch", "num_classes", "classes", "in_channels", "input_size", "weights_sha256")
    absent = [k for k in required if k not in meta]
    if absent:
        raise InputFileError(sidecar, f"checkpoint sidecar lacks {', '.join(absent)}")
    if meta["arch"] not in ARCHITECTURES:
        raise InputFileError(
            sidecar, f"is a checkpoint of unknown architecture {meta['arch']!r} (known: {', '.join(ARCHITECTURES)})"
        )
    classes = meta["classes"]
    if (
        not isinstance(meta["num_classes"], int)
        or not isinstance(classes, list)
        or len(classes) != meta["num_classes"]
        or not all(isinstance(c, str) for c in classes)
    ):
        raise InputFileError(sidecar, f"classes {classes!r} do not match num_classes {meta['num_classes']!r}")
    if not isinstance(meta["in_channels"], int) or meta["in_channels"] < 1:
        raise InputFileError(sidecar, f"has an invalid in_channels {meta['in_channels']!r}")
    return meta


def _read_checkpoint_weights(sidecar: Path, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, after checking the weights file exists and matches the sidecar's sha256."""
    weights = sidecar.with_suffix(".safetensors")
    if not weights.is_file():
        raise InputFileError(weights, f"weights file of checkpoint {sidecar.name} not found")
    actual = sha256_file(weights)
    if actual != meta["weights_sha256"]:
        raise InputFileError(
            weights,
            f"weights do not match their sidecar {sidecar.name} (sha256 {actual[:12]}... but the sidecar "
            f"records {str(meta['weights_sha256'])[:12]}...): the files were changed or come from different saves",
        )
    return _load_safetensors(weights)


def check_compatible(
    meta: Mapping[str, Any],
    *,
    arch: str | None = None,
    classes: Sequence[str] | None = None,
    in_channels: int | None = None,
    path: str | os.PathLike[str] | None = None,
) -> None:
    """Check a checkpoint sidecar against what a caller needs; None arguments are not checked.

    Classes must match in order (logit k is class k).

    Raises:
        InputFileError: a mismatch, when ``path`` (the checkpoint) is given; the message names it.
        ConfigError: a mismatch without ``path``, or an unknown ``arch``.
    """
    problems = []
    if arch is not None and _validate_arch(arch) != meta.get("arch"):
        problems.append(f"is a {meta.get('arch')} checkpoint but {arch} is needed")
    if classes is not None and list(classes) != list(meta.get("classes") or []):
        problems.append(f"was trained for classes {meta.get('classes')} but {list(classes)} are needed")
    if in_channels is not None and in_channels != meta.get("in_channels"):
        problems.append(f"takes {meta.get('in_channels')}-channel input but {in_channels} channels are needed")
    if not problems:
        return
    if path is not None:
        raise InputFileError(path, "; ".join(problems))
    raise ConfigError("checkpoint " + "; ".join(problems))


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    arch: str | None = None,
    classes: Sequence[str] | None = None,
    in_channels: int | None = None,
    device: str | torch.device = "cpu",
) -> tuple[PatchdxNet, dict[str, Any]]:
    """Build the model a checkpoint's sidecar describes and load its safetensors weights (no pickle).

    Args:
        path: the checkpoint's ``.json``, ``.safetensors``, stem or folder (``folder/model``).
        arch, classes, in_channels: when given, the checkpoint must match (see :func:`check_compatible`).
        device: where the model is placed (the weights are read on the CPU first).

    Returns:
        ``(model in eval mode, sidecar dict)``.

    Raises:
        InputFileError: a pickle-style file (``.pt`` / ``.pth`` / ``.ckpt``: refused, never opened), missing
            sidecar or weights, weights whose sha256 differs from the sidecar's, tensors that do not fit the
            architecture the sidecar names, or a mismatch with ``arch`` / ``classes`` / ``in_channels``.
    """
    weights, sidecar = checkpoint_paths(path)
    meta = read_checkpoint_meta(sidecar)
    check_compatible(meta, arch=arch, classes=classes, in_channels=in_channels, path=sidecar)
    state = _read_checkpoint_weights(sidecar, meta)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = _build_random(meta["arch"], meta["num_classes"], meta["in_channels"])
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in target.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        detected = _detect_arch(list(state))
        found = f" (they look like {detected})" if detected not in (None, meta["arch"]) else ""
        raise InputFileError(
            weights,
            f"tensors do not fit the {meta['arch']} with {meta['num_classes']} classes and {meta['in_channels']} "
            f"input channels that {sidecar.name} describes{found}: {_key_mismatch(missing, unexpected, wrong)}",
        )
    state = {k: v if v.dtype == target[k].dtype else v.to(target[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    left = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:  # cannot happen with a complete state dict; kept as a guard against silent meta tensors
        raise InputFileError(weights, f"checkpoint leaves tensors unset: {_examples(left)}")
    return model.to(device).eval(), meta


def _jsonable(value: Any, where: str) -> Any:
    """``value`` as plain JSON data (non-finite floats become None); ConfigError for what JSON cannot hold."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, where)
    if isinstance(value, np.generic | torch.Tensor) and getattr(value, "ndim", 0) == 0:
        return _jsonable(value.item(), where)
    if isinstance(value, np.ndarray | torch.Tensor):
        return _jsonable(value.tolist(), where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value), where)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int, float, bool, PurePath)):
                raise ConfigError(f"checkpoint meta {where}: key {key!r} cannot be a JSON key")
            out[str(key)] = _jsonable(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(item, where) for item in value), key=repr)
    raise ConfigError(f"checkpoint meta {where}: a {type(value).__name__} cannot be stored in a JSON sidecar")


def _thresholds(value: Any, classes: list[str]) -> list[float | None] | None:
    """Per-class decision thresholds as a list aligned with ``classes`` (from a list or a class -> value dict)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        unknown = [str(k) for k in value if k not in classes]
        if unknown:
            raise ConfigError(f"thresholds for unknown classes {unknown} (classes are {classes})")
        value = [value.get(c) for c in classes]
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != len(classes):
        raise ConfigError(f"thresholds must be one per class ({len(classes)}) or a class -> value mapping")
    out: list[float | None] = []
    for cls, item in zip(classes, value, strict=True):
        if item is None:
            out.append(None)
            continue
        number = float(item)
        if not 0.0 <= number <= 1.0:
            raise ConfigError(f"threshold of class {cls!r} must be a probability in [0, 1], got {item!r}")
        out.append(number)
    return out


def _sidecar_dict(model: PatchdxNet, meta: Mapping[str, Any], weights_name: str, sha: str) -> dict[str, Any]:
    """The full sidecar: validated caller fields, model fields, provenance; extra caller keys kept."""
    for key, actual in (("arch", model.arch), ("num_classes", model.num_classes), ("in_channels", model.in_channels)):
        if meta.get(key) is not None and meta[key] != actual:
            raise ConfigError(f"checkpoint meta says {key}={meta[key]!r} but the model has {key}={actual!r}")
    classes = meta.get("classes")
    if (
        not isinstance(classes, Sequence)
        or isinstance(classes, str)
        or len(classes) != model.num_classes
        or not all(isinstance(c, str) and c for c in classes)
    ):
        raise ConfigError(f"checkpoint meta needs 'classes': {model.num_classes} class names, got {classes!r}")
    classes = list(classes)
    if len(set(classes)) != len(classes):
        raise ConfigError(f"checkpoint class names must be unique, got {classes}")
    input_size = meta.get("input_size")
    if isinstance(input_size, bool) or not isinstance(input_size, int | np.integer) or input_size < 1:
        raise ConfigError(f"checkpoint meta needs 'input_size' (patch / image side in px), got {input_size!r}")
    if input_size < MIN_INPUT_SIZE[model.arch]:
        raise ConfigError(f"input_size {input_size} px is below {model.arch}'s minimum {MIN_INPUT_SIZE[model.arch]}")
    center = meta.get("center_size")
    if center is not None and (
        isinstance(center, bool) or not isinstance(center, int | np.integer) or not 0 < center <= input_size
    ):
        raise ConfigError(f"center_size must be None or an integer in (0, input_size], got {center!r}")
    mpp = meta.get("mpp")
    if mpp is not None and (isinstance(mpp, bool) or not isinstance(mpp, int | float | np.number) or not mpp > 0):
        raise ConfigError(f"mpp (um/px of the patches) must be None or positive, got {mpp!r}")
    normalization = meta.get("normalization")
    if normalization is None:
        normalization = {"mode": "unit"} if model.in_channels == 3 else {"mode": "standardize"}
    if not isinstance(normalization, Mapping) or not isinstance(normalization.get("mode"), str):
        raise ConfigError(f"normalization must be a mapping with a 'mode', got {normalization!r}")
    sidecar: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "arch": model.arch,
        "num_classes": model.num_classes,
        "classes": classes,
        "in_channels": model.in_channels,
        "input_size": int(input_size),
        "center_size": None if center is None else int(center),
        "mpp": None if mpp is None else float(mpp),
        "normalization": normalization,
        "config": meta.get("config") or {},
        "metrics": meta.get("metrics") or [],
        "thresholds": _thresholds(meta.get("thresholds"), classes),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "napari_patchdx": __version__,
        "num_parameters": count_parameters(model),
        "weights": weights_name,
        "weights_sha256": sha,
    }
    for key, value in meta.items():  # extra caller fields (e.g. task, stage, seed) are kept as given
        if key not in sidecar:
            sidecar[key] = value
    return _jsonable(sidecar, "meta")


def _write_sidecar_text(path: Path, text: str) -> None:
    """Write the sidecar JSON text to ``path`` (a temporary file), UTF-8 with ``\\n`` line ends."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    meta: Mapping[str, Any],
    *,
    overwrite: bool = True,
) -> tuple[Path, Path]:
    """Write ``<name>.safetensors`` (weights) and ``<name>.json`` (sidecar) atomically; returns both paths.

    Args:
        path: the stem (``run/model``), either file name, or an existing folder (-> ``folder/model``);
            missing parent folders are created.
        model: a :class:`PatchdxNet` (also inside DDP / DataParallel / torch.compile wrappers).
        meta: ``classes`` (num_classes names, logit order) and ``input_size`` (px) are required; optional
            ``center_size`` (px, slide patches), ``mpp`` (um/px of the patches), ``normalization`` (default
            ``{"mode": "unit"}`` for RGB /255, ``{"mode": "standardize"}`` for 1 channel), ``config`` (training
            config), ``metrics`` (history list), ``thresholds`` (per class, list or class -> value, stored as a
            list aligned with ``classes``). Other keys are kept. ``arch`` / ``num_classes`` / ``in_channels``
            come from the model (given ones must agree). Non-finite floats are stored as null.
        overwrite: replace an existing checkpoint of that name (False: FileExistsError).

    Both files are first written completely under temporary names; then the weights are renamed into place,
    then the sidecar, so a sidecar never points to missing weights and a failure before the renames leaves a
    previous checkpoint untouched. (A crash between the two renames leaves the old sidecar beside the new
    weights; the sha256 check then refuses the pair instead of loading it.)

    Raises:
        ConfigError: ``model`` is not a PatchdxNet, or ``meta`` is incomplete or inconsistent.
    """
    net = _unwrap(model)
    if not isinstance(net, PatchdxNet):
        raise ConfigError(f"save_checkpoint needs a model from build_model(), got {type(net).__name__}")
    target = Path(path)
    if target.is_dir():
        target = target / "model"
    if target.suffix.lower() in _PICKLE_SUFFIXES:
        raise ConfigError(f"{target}: checkpoints are written as <name>.safetensors + <name>.json; name a stem")
    weights_path, sidecar_path = checkpoint_paths(target)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    header = {"format": CHECKPOINT_FORMAT, "arch": net.arch, "num_classes": str(net.num_classes)}
    header["in_channels"] = str(net.in_channels)
    _sidecar_dict(net, meta, weights_path.name, "0" * 64)  # validate before writing anything

    from safetensors.torch import save_file

    weights_cm = atomic_path(weights_path, overwrite=overwrite, mkdir=True)
    weights_tmp = weights_cm.__enter__()
    try:
        save_file(tensors, str(weights_tmp), metadata=header)
        text = json.dumps(_sidecar_dict(net, meta, weights_path.name, sha256_file(weights_tmp)), indent=2) + "\n"
        sidecar_cm = atomic_path(sidecar_path, overwrite=overwrite)
        sidecar_tmp = sidecar_cm.__enter__()
        try:
            _write_sidecar_text(sidecar_tmp, text)
        except BaseException:
            sidecar_cm.__exit__(*sys.exc_info())
            raise
    except BaseException:
        weights_cm.__exit__(*sys.exc_info())
        raise
    try:  # commit: weights first, sidecar last
        weights_cm.__exit__(None, None, None)
    except BaseException:
        with contextlib.suppress(BaseException):
            sidecar_cm.__exit__(*sys.exc_info())
        raise
    sidecar_cm.__exit__(None, None, None)
    return weights_path, sidecar_path
