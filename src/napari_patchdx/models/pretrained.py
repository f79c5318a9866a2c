"""Starting a model from a local weights file: :func:`load_pretrained` and the key mapping it needs.

Reads a torchvision-style state dict (``torch.load(weights_only=True)``), a plain ``.safetensors`` state dict or
a napari-patchdx checkpoint, maps torchvision / DDP / compiled key names to ours, adapts the first convolution's
input channels and reports what it did (:class:`~napari_patchdx.models.load_report.PretrainedReport`).
Nothing is ever downloaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import InputFileError
from .checkpoint import load_safetensors, read_checkpoint_meta, read_checkpoint_weights, sidecar_for
from .load_report import PretrainedReport, describe_key_mismatch, list_examples, short_error
from .nets import PatchdxNet, detect_arch

__all__ = ["load_pretrained"]

log = logging.getLogger(__name__)

_FIRST_CONV = {
    "inception_v3": "features.Conv2d_1a_3x3.conv.weight",
    "resnet50": "features.conv1.weight",
    "small": "features.stem_1.conv.weight",
}
_HEAD_KEYS = ("classifier.weight", "classifier.bias")
_STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "weights")
_KEY_PREFIXES = ("module.", "_orig_mod.")


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
        raise InputFileError(path, f"does not hold a state dict of tensors (non-tensor entries: {list_examples(bad)})")
    return dict(obj)


def _read_pretrained(path: Path) -> tuple[dict[str, torch.Tensor], str, str | None]:
    """Tensors of a local weights file: (state, source description, architecture from a sidecar or None)."""
    sidecar = sidecar_for(path)
    if sidecar is not None and sidecar.is_file():
        meta = read_checkpoint_meta(sidecar)
        return read_checkpoint_weights(sidecar, meta), "napari-patchdx checkpoint", meta["arch"]
    if not path.is_file():
        raise InputFileError(
            path,
            "pretrained weights file not found (napari-patchdx never downloads weights: name a local "
            ".pth/.pt torchvision state dict, a .safetensors file or a napari-patchdx checkpoint)",
        )
    if path.suffix.lower() == ".safetensors":
        return load_safetensors(path), "safetensors state dict", None
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise InputFileError(
            path,
            "cannot be read safely with torch.load(weights_only=True), which only accepts plain tensors and "
            "refuses pickles that would run code; save the weights with torch.save(model.state_dict(), ...) "
            f"({short_error(exc)})",
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
        detected = detect_arch(list(mapped))
        if detected is not None and detected != model.arch:
            what = f"has {len(mapped)} tensors of {detected} but this is {model.arch}"
        elif detected is None:
            what = f"has {len(mapped)} tensors of an unknown architecture but this is {model.arch}"
        else:
            what = f"does not fit this {model.arch} with {model.in_channels} input channels"
        raise InputFileError(path, f"{what}: {describe_key_mismatch(missing, unexpected, wrong_shape)}")
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
