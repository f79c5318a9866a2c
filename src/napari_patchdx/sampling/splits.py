"""Train / val / test splits, assigned per slide or image (never per patch), reproducibly from a seed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["SPLITS", "assign_splits"]

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
