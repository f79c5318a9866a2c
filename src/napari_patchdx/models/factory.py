"""The model factory: :func:`build_model`, a fresh network optionally started from local pretrained weights."""

from __future__ import annotations

import os

from ..errors import ConfigError
from .nets import PatchdxNet, build_random, validate_arch
from .pretrained import load_pretrained

__all__ = ["build_model"]


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
    validate_arch(arch)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ConfigError(f"in_channels must be a positive integer, got {in_channels!r}")
    model = build_random(arch, num_classes, in_channels)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model
