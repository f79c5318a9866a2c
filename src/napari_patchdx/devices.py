"""Device strings: which torch devices this machine has and how a device setting resolves to one.

Used by the trainer, inference, the pipeline and the dask runner (``"auto"`` = CUDA, then MPS, then the CPU; under
torchrun ``cuda:<LOCAL_RANK>``).
"""

from __future__ import annotations

import torch

from .errors import ConfigError

__all__ = ["DEVICE_FORMS", "available_devices", "check_device_form", "resolve_device"]

DEVICE_FORMS = ("auto", "cpu", "cuda", "cuda:<index>", "mps")
"""The device strings a setting may take (``<index>``: a CUDA device number)."""


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


def check_device_form(device: str) -> str:
    """``device`` lower-cased and stripped when it has one of :data:`DEVICE_FORMS` (availability is not checked).

    Raises:
        ConfigError: not a string, or not one of the forms.
    """
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
    text = check_device_form(device)
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
