"""The networks: :class:`PatchdxNet` (trunk + GAP + linear head), the "small" trunk and building them.

Owns the architecture names and their input sizes (:data:`ARCHITECTURES`, :data:`MIN_INPUT_SIZE`,
:data:`DEFAULT_INPUT_SIZE`), the building blocks of :class:`SmallNet`, a freshly initialised model of each
architecture (:func:`build_random`, nothing downloaded), and recognising an architecture from state-dict keys
(:func:`detect_arch`). See the package docstring for the state-dict key layout.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .load_report import PretrainedReport

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_INPUT_SIZE",
    "MIN_INPUT_SIZE",
    "PatchdxNet",
    "SmallNet",
    "build_random",
    "count_parameters",
    "detect_arch",
    "validate_arch",
]

ARCHITECTURES: tuple[str, ...] = ("inception_v3", "resnet50", "small")
"""Names accepted by :func:`build_model`."""

MIN_INPUT_SIZE: dict[str, int] = {"inception_v3": 75, "resnet50": 32, "small": 32}
"""Smallest input side (px) each architecture accepts."""

DEFAULT_INPUT_SIZE: dict[str, int] = {"inception_v3": 299, "resnet50": 224, "small": 299}
"""The input side (px) each architecture was designed for (patches may use another size)."""

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


def validate_arch(arch: str) -> str:
    """``arch`` itself when it is one of :data:`ARCHITECTURES`; ConfigError otherwise."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    return arch


def build_random(arch: str, num_classes: int, in_channels: int) -> PatchdxNet:
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


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``model`` (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@functools.cache
def _trunk_signature(arch: str) -> dict[str, tuple[int, ...]]:
    """Trunk keys and shapes of ``arch`` (3 input channels), built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        model = build_random(arch, 1, 3)
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("features.")}


def detect_arch(keys: Sequence[str]) -> str | None:
    """The architecture whose trunk keys best overlap ``keys`` (Jaccard >= 0.5), or None."""
    trunk = {k for k in keys if k.startswith("features.")}
    best, best_score = None, 0.0
    for arch in ARCHITECTURES:
        reference = set(_trunk_signature(arch))
        score = len(trunk & reference) / max(1, len(trunk | reference))
        if score > best_score:
            best, best_score = arch, score
    return best if best_score >= 0.5 else None
