"""Models for inference: loading an ensemble, its fingerprint, precision and layout, and patch probabilities.

:func:`predict_patches` is the tumour probability of a batch of patches: the sigmoid of one logit, averaged over
the 8 orientations (test-time augmentation) and over the ensemble. :func:`predict_sum` / :func:`mean_probs` are the
same in two steps, so that the slide heatmap can keep batches in flight on CUDA.

Each model gets the input its checkpoint's ``normalization`` asks for (:func:`stain_normalize_batch`): RGB / 255,
or, for a model trained with Macenko normalisation, every patch normalised to the model's stain reference on the
CPU, rounded to uint8 as the training patches were, then / 255 (once per batch for all the models that share a
reference).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..models.checkpoint import stain_normalizer
from ..sampling.datasets import to_float
from ..transforms.orientation import ORIENTATIONS, orient_torch
from ..transforms.stain import MacenkoNormalize

#: Model precisions: ``"bf16"`` (autocast to bfloat16) or ``"fp32"``; ``None`` means bf16 on CUDA, fp32 elsewhere.
PRECISIONS = ("bf16", "fp32")

#: A model and its checkpoint meta, as inference uses them.
ModelSpec = tuple[nn.Module, dict[str, Any]]


def load_models(models: Any, device: str | torch.device) -> list[ModelSpec]:
    """``(model, meta)`` pairs from a pair, a checkpoint path, or a list of either; models in eval mode."""
    from ..models.checkpoint import load_checkpoint

    single = isinstance(models, tuple) and len(models) == 2 and isinstance(models[0], nn.Module)
    if single or isinstance(models, str | os.PathLike):
        models = [models]
    out: list[ModelSpec] = []
    for item in models:
        if isinstance(item, str | os.PathLike):
            model, meta = load_checkpoint(item, device=device)
        else:
            model, meta = item
            model = model.to(device)
        if torch.device(device).type == "cuda":
            model = model.to(memory_format=torch.channels_last)  # the layout cuDNN's fast kernels want
        model.eval()
        out.append((model, dict(meta)))
    if not out:
        raise ConfigError("no model given for inference")
    first = out[0][1]
    for _, meta in out[1:]:
        for key in ("input_size", "center_size", "mpp"):
            if meta.get(key) != first.get(key):
                raise ConfigError(
                    f"ensemble models disagree on {key}: {first.get(key)!r} vs {meta.get(key)!r}; "
                    "they must read the same patches"
                )
    return out


def fingerprint(model: nn.Module, meta: dict[str, Any]) -> str:
    """A checkpoint's weights sha256, or a hash of the model's tensors (for in-memory models); for a model with
    stain normalisation, a hash of that and of its settings (the reference included)."""
    sha = meta.get("weights_sha256")
    if isinstance(sha, str) and sha:
        weights = sha
    else:
        h = hashlib.sha256(type(model).__name__.encode())
        for name, t in model.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        weights = h.hexdigest()
    stain = stain_normalizer(meta)
    if stain is None:
        return weights
    return hashlib.sha256(f"{weights}\n{json.dumps(stain.to_dict(), sort_keys=True)}".encode()).hexdigest()


def stain_normalize_batch(batch: torch.Tensor, stain: MacenkoNormalize) -> torch.Tensor:
    """uint8 (N, 3, H, W) RGB patches normalised by ``stain``, patch by patch, on the CPU.

    Each patch goes through ``stain`` as a float32 (H, W, 3) image / 255 and is rounded back to uint8 (``x * 255 +
    0.5``), as a training patch is after its transforms (:mod:`napari_patchdx.sampling.datasets`). Returns a new
    uint8 CPU tensor (N, 3, H, W), channels-last in memory; ``batch`` is not changed.
    """
    images = batch.detach().cpu().numpy()
    out = np.empty((images.shape[0], images.shape[2], images.shape[3], 3), dtype=np.uint8)
    for i, chw in enumerate(images):
        normalized = stain(chw.transpose(1, 2, 0).astype(np.float32) / 255.0)
        out[i] = (np.clip(normalized, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def resolve_precision(precision: str | None, device: str | torch.device) -> str:
    """``precision`` checked, or the default for ``device``: bf16 on CUDA, fp32 elsewhere."""
    if precision is None:
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(
            f"precision must be one of {PRECISIONS} (or None: bf16 on CUDA, fp32 elsewhere), got {precision!r}"
        )
    return precision


def precision_autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` (CUDA, or CPU when asked for), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_channels_last(channels_last: bool | None, device: str | torch.device) -> bool:
    """``channels_last``, or its default: on (cuDNN's fast layout on CUDA; 1.6-2x faster convolutions of the small
    network on CPU too, benchmarks/inference.py; probabilities differ from NCHW input by ~1e-10)."""
    return True if channels_last is None else bool(channels_last)


def predict_sum(
    models: Sequence[ModelSpec],
    batch: torch.Tensor,
    *,
    tta: bool,
    device: str | torch.device,
    class_index: int,
    precision: str,
    channels_last: bool,
) -> tuple[torch.Tensor, int]:
    """Sum of the sigmoid probabilities over orientations and models, float64 (N,) on ``device``, and how many
    terms it holds. Launches the work without waiting for it on CUDA (the copy of a pinned ``batch`` is
    non-blocking); call under ``torch.inference_mode()``."""
    dev = torch.device(device)
    ks = range(ORIENTATIONS) if tta else (0,)
    stains = [stain_normalizer(meta) for _, meta in models]
    keys = [None if stain is None else json.dumps(stain.to_dict(), sort_keys=True) for stain in stains]
    inputs: dict[str | None, torch.Tensor] = {}  # the batch as read (None) and once per stain reference
    for stain, key in zip(stains, keys, strict=True):
        if key in inputs:
            continue
        if stain is None:
            inputs[key] = batch if batch.device == dev else batch.to(dev, non_blocking=True)
        else:
            inputs[key] = stain_normalize_batch(batch, stain).to(dev, non_blocking=True)
    total = torch.zeros(batch.shape[0], dtype=torch.float64, device=dev)
    with precision_autocast(dev, precision):
        for (model, _), key in zip(models, keys, strict=True):
            x = to_float(inputs[key])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for k in ks:
                logits = model(orient_torch(x, k) if k else x)
                total += torch.sigmoid(logits[:, class_index].float()).double()
    return total, len(models) * len(ks)


def mean_probs(total: torch.Tensor, terms: int) -> np.ndarray:
    """float32 numpy mean of a :func:`predict_sum` (waits for the device)."""
    return (total / terms).cpu().numpy().astype(np.float32)


@torch.inference_mode()
def predict_patches(
    models: Sequence[ModelSpec],
    batch: torch.Tensor,
    *,
    tta: bool = True,
    device: str | torch.device = "cpu",
    class_index: int = 0,
    precision: str | None = None,
    channels_last: bool | None = None,
) -> np.ndarray:
    """Tumour probability of uint8 NCHW RGB patches: sigmoid of logit ``class_index``, averaged over the 8
    orientations (when ``tta``) and over ``models``. Returns float32 (N,).

    ``precision``: ``"bf16"`` runs the models under bfloat16 autocast, ``"fp32"`` in float32; None (default) is
    bf16 on CUDA and fp32 elsewhere. ``channels_last``: feed the models channels-last (NHWC-strided) input;
    None (default) is on (faster on CUDA and on CPU). On CUDA the batch is copied without blocking (fastest from
    pinned memory).
    """
    total, terms = predict_sum(
        models,
        batch,
        tta=tta,
        device=device,
        class_index=class_index,
        precision=resolve_precision(precision, device),
        channels_last=resolve_channels_last(channels_last, device),
    )
    return mean_probs(total, terms)
