"""Train / val / test splits, assigned per slide or image (never per patch), reproducibly from a seed."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..io.annotations.model import as_tumour_truth
from ..io.names import file_name

__all__ = ["SPLITS", "assign_splits", "hold_out_slides"]

SPLITS = ("train", "val", "test")


def assign_splits(
    names: Sequence[str],
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    *,
    seed: int = 0,
    strata: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Assign each slide / image (never a patch) to train, val or test, reproducibly from ``seed``.

    Within each stratum (e.g. tumour vs normal) the names are shuffled and cut by ``fractions`` using the
    largest-remainder rule, so the proportions hold per stratum and every name gets exactly one split.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ConfigError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    if len(set(names)) != len(names):
        raise ConfigError("split names must be unique (one entry per slide or image)")
    groups: dict[Any, list[str]] = {}
    for name in sorted(names):
        groups.setdefault((strata or {}).get(name), []).append(name)
    out: dict[str, str] = {}
    rng = np.random.default_rng(seed)
    for key in sorted(groups, key=str):
        members = list(groups[key])
        rng.shuffle(members)
        raw = np.array(fractions) * len(members)
        counts = np.floor(raw).astype(int)
        for i in np.argsort(-(raw - counts), kind="stable")[: len(members) - counts.sum()]:
            counts[i] += 1
        start = 0
        for split, count in zip(SPLITS, counts, strict=True):
            for name in members[start : start + count]:
                out[name] = split
            start += count
    return out


def hold_out_slides(
    slides: Sequence[tuple[str | os.PathLike[str], Any]], *, seed: int = 0
) -> list[tuple[Path, Any, str]]:
    """``(slide, ground truth or None)`` pairs as ``(slide, ground truth, split)``: about a quarter held out for
    validation (``"val"``, the rest ``"train"``), stratified by ground truth, with at least one tumour slide on each
    side (balanced sampling needs tumour in both). Slides are told apart by their name
    (:func:`~napari_patchdx.io.names.file_name`). The ground truth is a file (returned as a Path) or any object,
    e.g. an annotation set drawn in a viewer (returned as given); only whether it marks tumour matters
    (:func:`~napari_patchdx.io.annotations.model.as_tumour_truth`).

    Raises:
        ConfigError: fewer than two slides with ground truth.
    """
    pairs = [(Path(p), Path(a) if isinstance(a, str | os.PathLike) else a) for p, a in slides]
    tumour = [file_name(p) for p, a in pairs if as_tumour_truth(a) is not None]
    if len(tumour) < 2:
        raise ConfigError(
            f"{len(tumour)} of the chosen slides have tumour ground truth; choose at least two "
            "(one is held out for validation)"
        )
    strata = {file_name(p): as_tumour_truth(a) is not None for p, a in pairs}
    splits = assign_splits(list(strata), (0.75, 0.25, 0.0), seed=seed, strata=strata)
    if not any(splits[s] == "val" for s in tumour):
        splits[sorted(tumour)[-1]] = "val"
    if all(splits[s] == "val" for s in tumour):
        splits[sorted(tumour)[0]] = "train"
    return [(p, a, splits[file_name(p)]) for p, a in pairs]
