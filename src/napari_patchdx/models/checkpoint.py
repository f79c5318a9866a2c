"""Safe checkpoints: ``<name>.safetensors`` weights plus a ``<name>.json`` sidecar, never a pickle.

Owns the checkpoint naming rules (:func:`checkpoint_paths`), reading and validating a sidecar
(:func:`read_checkpoint_meta`), checking it against what a caller needs (:func:`check_compatible`), loading
(:func:`load_checkpoint`, weights checked against the sidecar's sha256) and atomic saving
(:func:`save_checkpoint`), and the ``normalization`` entry of slide models (:func:`slide_normalization`,
:func:`stain_normalizer`): ``{"mode": "unit"}`` (RGB uint8 / 255) or ``{"mode": "macenko", "transform": ...}``
(Macenko stain normalisation to the reference the model was trained with, then / 255).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._fsutil import atomic_path, sha256_file
from ..errors import ConfigError, InputFileError
from ..jsonvalues import json_value
from ..transforms.base import Transform
from ..transforms.compose import transform_from_dict
from ..transforms.stain import MacenkoNormalize
from ..versions import __version__
from .load_report import describe_key_mismatch, list_examples, short_error
from .nets import ARCHITECTURES, MIN_INPUT_SIZE, PatchdxNet, build_random, count_parameters, detect_arch, validate_arch

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "check_compatible",
    "checkpoint_paths",
    "load_checkpoint",
    "load_safetensors",
    "read_checkpoint_meta",
    "read_checkpoint_weights",
    "save_checkpoint",
    "sidecar_for",
    "slide_normalization",
    "stain_normalizer",
]

CHECKPOINT_FORMAT = "napari-patchdx-checkpoint"
"""Value of the sidecar's ``format`` field."""

CHECKPOINT_VERSION = 1
"""Sidecar format version this module writes and reads."""

_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar")


def sidecar_for(path: Path) -> Path | None:
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
    sidecar = sidecar_for(path)
    if sidecar is None:
        raise InputFileError(
            path,
            "is a PyTorch pickle-style file, not a napari-patchdx checkpoint: checkpoints must be safetensors "
            "weights with a JSON sidecar (<name>.safetensors + <name>.json), which load without running any code; "
            "a pickle is never opened here (to start training from torchvision-style weights pass the file as "
            "pretrained=, which reads it with torch.load(weights_only=True))",
        )
    return sidecar.with_suffix(".safetensors"), sidecar


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU (no pickle involved)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InputFileError(path, f"is not a readable safetensors file ({short_error(exc)})") from None


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
        raise InputFileError(sidecar, f"is not a readable JSON checkpoint sidecar ({short_error(exc)})") from None
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
    norm = meta.get("normalization")
    if isinstance(norm, Mapping) and norm.get("mode") == "macenko":
        try:
            stain_normalizer(meta)
        except ConfigError as exc:
            raise InputFileError(sidecar, str(exc)) from None
    return meta


def slide_normalization(stain: Transform | None = None) -> dict[str, Any]:
    """The ``normalization`` entry of a slide checkpoint: what turns a uint8 RGB patch into the model's input.

    Args:
        stain: the model's stain normalisation (a :class:`~napari_patchdx.transforms.MacenkoNormalize`, alone or
            as the one step of a ``Compose``, as :func:`~napari_patchdx.transforms.slide_eval_transforms` gives
            it), or None.

    Returns:
        ``{"mode": "unit", "scale": "RGB uint8 / 255"}`` without ``stain``; else ``{"mode": "macenko", "scale":
        "RGB uint8 / 255", "transform": stain's to_dict}``: the patch normalised to the reference, rounded to uint8,
        then divided by 255 (as the training patches were).

    Raises:
        ConfigError: ``stain`` is neither a MacenkoNormalize nor a Compose of one.
    """
    if stain is None:
        return {"mode": "unit", "scale": "RGB uint8 / 255"}
    steps = list(getattr(stain, "transforms", [stain]))
    if len(steps) != 1 or not isinstance(steps[0], MacenkoNormalize):
        raise ConfigError(f"a slide checkpoint's stain normalisation must be one MacenkoNormalize, got {stain!r}")
    return {"mode": "macenko", "scale": "RGB uint8 / 255", "transform": steps[0].to_dict()}


def stain_normalizer(meta: Mapping[str, Any]) -> MacenkoNormalize | None:
    """The stain normalisation a slide checkpoint's sidecar asks for (``normalization`` mode ``"macenko"``).

    Args:
        meta: a checkpoint sidecar (or any mapping with its ``normalization`` entry).

    Returns:
        The :class:`~napari_patchdx.transforms.MacenkoNormalize` to apply to uint8 RGB patches / 255 before the
        model, or None for mode ``"unit"`` (or no ``normalization``: RGB / 255).

    Raises:
        ConfigError: another mode, or a ``"macenko"`` entry without a valid MacenkoNormalize ``transform``.
    """
    norm = meta.get("normalization") or {"mode": "unit"}
    mode = norm.get("mode", "unit") if isinstance(norm, Mapping) else None
    if mode == "unit":
        return None
    if mode != "macenko":
        raise ConfigError(
            f"slide inference supports normalization mode 'unit' (RGB / 255) or 'macenko' (stain normalisation), "
            f"not {mode!r}"
        )
    config = norm.get("transform")
    if not isinstance(config, Mapping) or config.get("type") != MacenkoNormalize.__name__:
        raise ConfigError(f"normalization mode 'macenko' needs a MacenkoNormalize 'transform', got {config!r}")
    return transform_from_dict(config)  # type: ignore[return-value]


def read_checkpoint_weights(sidecar: Path, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
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
    return load_safetensors(weights)


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
    if arch is not None and validate_arch(arch) != meta.get("arch"):
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
    state = read_checkpoint_weights(sidecar, meta)
    with torch.device("meta"):  # no random initialisation: every tensor comes from the file
        model = build_random(meta["arch"], meta["num_classes"], meta["in_channels"])
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in target.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        detected = detect_arch(list(state))
        found = f" (they look like {detected})" if detected not in (None, meta["arch"]) else ""
        raise InputFileError(
            weights,
            f"tensors do not fit the {meta['arch']} with {meta['num_classes']} classes and {meta['in_channels']} "
            f"input channels that {sidecar.name} describes{found}: {describe_key_mismatch(missing, unexpected, wrong)}",
        )
    state = {k: v if v.dtype == target[k].dtype else v.to(target[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    left = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:  # cannot happen with a complete state dict; kept as a guard against silent meta tensors
        raise InputFileError(weights, f"checkpoint leaves tensors unset: {list_examples(left)}")
    return model.to(device).eval(), meta


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
    if normalization.get("mode") == "macenko":
        stain_normalizer({"normalization": normalization})
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
    return json_value(sidecar, "checkpoint meta")


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
            ``{"mode": "unit"}`` for RGB /255, ``{"mode": "standardize"}`` for 1 channel; slide models trained with
            stain normalisation: :func:`slide_normalization`), ``config`` (training
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


def checkpoint_thresholds(path: str | os.PathLike[str]) -> dict[str, float | None]:
    """The per-class operating thresholds stored in a checkpoint's sidecar (Youden's J on the validation split).

    The one reader of stored thresholds (the command line, ``run()``, the widgets and the evaluation use it).

    Args:
        path: the checkpoint (``.json``, ``.safetensors``, stem or folder; see :func:`read_checkpoint_meta`).

    Returns:
        class name -> threshold in [0, 1]; None for a class whose threshold was undefined at validation (stored
        as null or NaN), and for every class when the checkpoint stores none.

    Raises:
        InputFileError: naming the sidecar, when the thresholds are not one per class or not probabilities.
    """
    meta = read_checkpoint_meta(path)
    classes = [str(c) for c in meta["classes"]]
    values = meta.get("thresholds")
    sidecar = checkpoint_paths(path)[1]
    if values is None:
        return dict.fromkeys(classes)
    if isinstance(values, Mapping):
        values = [values.get(c) for c in classes]
    if not isinstance(values, list) or len(values) != len(classes):
        raise InputFileError(sidecar, f"thresholds {values!r} are not one per class {classes}")
    out: dict[str, float | None] = {}
    for cls, value in zip(classes, values, strict=True):
        number = None if value is None else float(value)
        if number is not None and math.isfinite(number) and not 0.0 <= number <= 1.0:
            raise InputFileError(sidecar, f"threshold of class {cls!r} is {number!r}, not a probability in [0, 1]")
        out[cls] = number if number is not None and math.isfinite(number) else None
    return out
