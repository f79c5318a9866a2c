"""Stage fingerprints: the chained hashes that decide whether a stage's recorded outputs are still current.

A stage's fingerprint hashes its own settings and the previous stage's fingerprint; the first stage's also hashes
the inputs' checksums and the split. Settings that do not change the results are left out. The microns per pixel
the configuration gives slides (``mpp``) count where the slides are read: the training and validation slides' in
the sample stage's, the predicted slides' in the infer stage's (and so, chained, in every later one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..sampling.sources import slide_mpp
from .config import RunConfig
from .inputs import RunInputs

# settings that do not change a stage's results: not part of its fingerprint
_TRAIN_NOT_FINGERPRINTED = ("device", "num_workers", "progress_every")


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _given_mpp(config: RunConfig, inputs: RunInputs, splits: Sequence[str]) -> dict[str, Any]:
    """``{"mpp": {slide name: um/px}}`` for the slides of ``splits`` the configuration's ``mpp`` gives, or ``{}``
    (so that a run without the setting keeps the fingerprints it had before the setting existed)."""
    if config.track != "slides" or config.mpp is None:
        return {}
    given = {it.name: slide_mpp(config.mpp, it.path) for it in inputs.split(*splits)}
    given = {k: v for k, v in given.items() if v is not None}
    return {"mpp": given} if given else {}


def stage_fingerprints(config: RunConfig, inputs: RunInputs, records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The chained fingerprint of every stage (see :mod:`napari_patchdx.pipeline`)."""

    def rel(path: str) -> str:
        p = Path(path)
        with contextlib.suppress(ValueError):
            return p.relative_to(inputs.root.resolve()).as_posix()
        return p.name

    data = sorted((rel(r["path"]), r["sha256"]) for r in records)
    t = config.training
    if config.track == "slides":
        geometry = {k: getattr(t, k) for k in ("patch_size", "center_size", "mpp", "jitter", "val_patches")}
    else:
        geometry = {k: getattr(t, k) for k in ("patch_size", "working_size")}
    fps: dict[str, str] = {}
    fps["sample"] = _digest(
        {
            "stage": "sample",
            "track": config.track,
            "inputs": data,
            "splits": {it.name: it.split for it in inputs.items},
            "sample": dataclasses.asdict(config.sample),
            "geometry": geometry,
            "seed": config.seed,
            **_given_mpp(config, inputs, ("train", "val")),
        }
    )
    train = {k: v for k, v in t.to_dict().items() if k not in _TRAIN_NOT_FINGERPRINTED}
    fps["train"] = _digest({"stage": "train", "after": fps["sample"], "train": train})
    fps["infer"] = _digest(
        {
            "stage": "infer",
            "after": fps["train"],
            "infer": dataclasses.asdict(config.infer),
            **_given_mpp(config, inputs, config.infer.splits),
        }
    )
    fps["evaluate"] = _digest(
        {
            "stage": "evaluate",
            "after": fps["infer"],
            "evaluate": dataclasses.asdict(config.evaluate),
            "seed": config.seed,
        }
    )
    fps["report"] = _digest({"stage": "report", "after": fps["evaluate"], "report": dataclasses.asdict(config.report)})
    return fps
