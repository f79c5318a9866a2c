"""The resume state: numbered ``resume/state-NNNNNN`` files (safetensors + JSON, no pickle) and the pointer
``train_state.json``, written and read so that a killed run always finds a complete state (see the package
docstring).
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._fsutil import atomic_path, atomic_write_text, sha256_file
from ..jsonvalues import write_json

STATE_FORMAT = "napari-patchdx-train-state"
STATE_VERSION = 1
POINTER_NAME = "train_state.json"


@dataclass
class RunPosition:
    """Where a run is: stage, epoch within it (completed epochs), step within the epoch, counters."""

    stage_index: int = 0
    epoch: int = 0
    step: int = 0
    global_step: int = 0
    examples: int = 0
    draws: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    epoch_seconds: float = 0.0
    started: bool = False


@dataclass
class RunState:
    """What a run has done and decided so far: position, history, early-stopping state, thresholds, save number."""

    position: RunPosition = field(default_factory=RunPosition)
    history: list[dict[str, Any]] = field(default_factory=list)
    best_score: float | None = None
    bad_epochs: int = 0
    stopped_early: list[str] = field(default_factory=list)
    thresholds: list[float | None] | None = None
    seq: int = 0


_NUMERIC_KEYS = ("train_loss", "val_loss", "val_accuracy")


def history_from_json(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History entries read from JSON, with None back to NaN in the numeric metrics."""
    out = []
    for entry in entries:
        item = dict(entry)
        for key in _NUMERIC_KEYS:
            if item.get(key) is None:
                item[key] = math.nan
        item["val_auroc"] = {k: (math.nan if v is None else v) for k, v in (item.get("val_auroc") or {}).items()}
        out.append(item)
    return out


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """An optimizer's state as (JSON record, tensors named ``optim.<param>.<name>``) for the resume state."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    entries: dict[str, dict[str, Any]] = {}
    for pid, values in state["state"].items():
        entry = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                name = f"optim.{pid}.{key}"
                tensors[name] = value.detach().to("cpu").contiguous().clone()
                entry[key] = {"tensor": name}
            else:
                entry[key] = {"value": value}
        entries[str(pid)] = entry
    return {"param_groups": state["param_groups"], "state": entries}, tensors


def optimizer_from_files(record: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The optimizer state dict that :func:`optimizer_to_files` split into a record and tensors."""
    state = {}
    for pid, entry in record["state"].items():
        state[int(pid)] = {k: tensors[v["tensor"]] if "tensor" in v else v["value"] for k, v in entry.items()}
    return {"state": state, "param_groups": [dict(g) for g in record["param_groups"]]}


def write_resume_state(out: Path, seq: int, payload: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Numbered state (tensors, then JSON), then the pointer, then old states removed (see the package docstring)."""
    from safetensors.torch import save_file

    folder = out / "resume"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"state-{seq:06d}"
    tensors_path = folder / f"{stem}.safetensors"
    with atomic_path(tensors_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": STATE_FORMAT})
    payload = dict(payload, seq=seq, tensors=tensors_path.name, tensors_sha256=sha256_file(tensors_path))
    write_json(folder / f"{stem}.json", payload, indent=None)
    position = payload["position"]
    pointer = {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "seq": seq,
        "state": f"resume/{stem}.json",
        "stage": position["stage"],
        "stage_index": position["stage_index"],
        "epoch": position["epoch"],
        "step": position["step"],
        "global_step": position["global_step"],
        "finished": payload["finished"],
    }
    atomic_write_text(out / POINTER_NAME, json.dumps(pointer, indent=2) + "\n")
    for old in folder.glob("state-*.*"):
        try:
            number = int(old.name[6:12])
        except ValueError:
            continue
        if number < seq - 1:
            with contextlib.suppress(OSError):
                old.unlink()


def read_resume_state(out: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    """The newest intact resume state in ``out`` (the pointer's, else the newest numbered one), or None."""
    from safetensors.torch import load_file

    candidates: list[Path] = []
    pointer = out / POINTER_NAME
    if pointer.is_file():
        try:
            candidates.append(out / json.loads(pointer.read_text(encoding="utf-8"))["state"])
        except (OSError, ValueError, KeyError, TypeError):
            warnings.warn(f"{pointer}: unreadable; looking for the newest intact state", UserWarning, stacklevel=3)
    folder = out / "resume"
    if folder.is_dir():
        candidates.extend(sorted(folder.glob("state-*.json"), reverse=True))
    seen: set[Path] = set()
    for path in candidates:
        if path in seen:
            continue
        seen.add(path)
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            if payload.get("format") != STATE_FORMAT or int(payload.get("version", 0)) > STATE_VERSION:
                raise ValueError("not a resume state of this version")
            tensors_path = path.with_name(payload["tensors"])
            if sha256_file(tensors_path) != payload["tensors_sha256"]:
                raise ValueError("tensors do not match their sha256")
            tensors = load_file(str(tensors_path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.warn(f"{path}: skipped ({exc})", UserWarning, stacklevel=3)
            continue
        if len(seen) > 1:
            warnings.warn(f"{out}: resuming from an older intact state, {path.name}", UserWarning, stacklevel=3)
        return payload, tensors
    return None
