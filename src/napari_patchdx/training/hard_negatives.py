"""Hard-negative mining (Wang et al. 2016, the CAMELYON16 winner): train, map the training slides with the first
round's model, and fine-tune from its best checkpoint drawing a share of the patches from the cells it called
tumour that hold none (:func:`~napari_patchdx.sampling.focus.hard_negative_regions`,
:func:`~napari_patchdx.training.corrections.focus_train_job`: the fine-tuning step "review, correct, retrain" uses
too).

This module and :mod:`~napari_patchdx.training.corrections` are the modules of ``training`` that use ``inference``
(the second round needs heatmaps); ``inference`` never imports ``training``.

Folders (under the training folder ``out_dir``): ``round1/`` (the first round's run, resumable) with
``round1/heatmaps/`` (its heatmaps of the training slides), ``hard_negatives.json`` (per slide: false-positive cells
and area), and the second round's run in ``out_dir`` itself, so ``best`` / ``last`` are the final model's.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.names import file_name
from ..jsonvalues import write_json
from ..progress import SCALE, Job, Progress, relay
from ..sampling.focus import hard_negative_regions
from ..sampling.sources import SlideSource
from ..sampling.tables import read_patch_table
from .config import TrainConfig
from .corrections import focus_train_job
from .inputs import TrainData
from .job import train_job
from .loop import TrainResult

HARD_NEGATIVES_NAME = "hard_negatives.json"
"""The record of the mined regions, in the training folder."""

PathLike = str | os.PathLike[str]


def hard_negative_train_job(
    config: TrainConfig,
    data: TrainData,
    training_slides: Sequence[tuple[PathLike, PathLike | None]],
    out_dir: PathLike,
    *,
    resume: bool = True,
    stop: Callable[[], bool] | None = None,
    device: str = "cpu",
) -> Job[TrainResult]:
    """Two training rounds with hard negatives mined in between; returns the second round's result.

    Args:
        config: the settings (``hard_negatives``, ``hard_negative_threshold``, ``hard_negative_fraction``; the
            rest applies to both rounds, the second starting from the first round's best checkpoint).
        data: the first round's data; it must hold a patch table with ``val`` rows, which validate both rounds.
        training_slides: ``(slide, ground truth or None)`` of the training slides, mapped and mined.
        out_dir: the training folder (see the module's docstring).
        resume: resume interrupted rounds (and reuse finished heatmaps).
        stop: polled as in :func:`~napari_patchdx.training.job.train_job`.
        device: where the heatmaps are computed.

    Raises:
        ConfigError: the X-ray track, no training slides, no validation rows, or no false positive to mine (the
            first round's model is then already clean on its training slides: the error says so).
    """
    from ..inference.heatmaps import slide_heatmap_job

    if config.track != "slide":
        raise ConfigError("hard negatives are mined from slide heatmaps: slide track only")
    if not training_slides:
        raise ConfigError("hard negatives need the training slides (with their ground truth) to map")
    table = data.patch_table
    if table is None:
        raise ConfigError("hard negatives need a patch table whose 'val' rows validate both rounds")
    frame = table if not isinstance(table, str | os.PathLike) else read_patch_table(table)
    val = frame[frame["split"] == "val"].reset_index(drop=True)
    if val.empty:
        raise ConfigError("hard negatives need a patch table with 'val' rows (they validate both rounds)")
    out = Path(out_dir)
    first = dataclasses.replace(config, hard_negatives=False)
    round1 = yield from relay(
        train_job(first, data, out / "round1", resume=resume, stop=stop), 0.0, 0.45, prefix="round 1: "
    )
    if round1.cancelled or round1.best is None:
        return round1
    n = len(training_slides)
    regions = []
    sources: list[SlideSource] = []
    record: dict[str, Any] = {
        "threshold": config.hard_negative_threshold,
        "fraction": config.hard_negative_fraction,
        "first_round": str(round1.best),
        "slides": {},
    }
    for i, (path, truth) in enumerate(training_slides):
        name = file_name(path)
        source = SlideSource.prepare(path, truth, mpp=data.mpp, split="train")
        sources.append(source)
        heat = yield from relay(  # on the tissue mask just detected: tissue detection once per slide
            slide_heatmap_job(
                path,
                [round1.best],
                out / "round1" / "heatmaps",
                tta=False,
                device=device,
                mpp=data.mpp,
                tissue=source.tissue,
            ),
            0.45 + 0.1 * i / n,
            0.45 + 0.1 * (i + 1) / n,
            prefix=f"mapping {name}: ",
        )
        region = hard_negative_regions(heat.heatmap, heat.grid, source, config.hard_negative_threshold)
        cells = 0 if region is None else int(region.mask.sum())
        cell_mm2 = heat.grid.spacing[0] * heat.grid.spacing[1] * (heat.grid.mpp or 0.0) ** 2 / 1e6
        record["slides"][name] = {"false_positive_cells": cells, "area_mm2": cells * cell_mm2}
        if region is not None:
            regions.append(region)
        if stop is not None and stop():
            return dataclasses.replace(round1, cancelled=True)
    write_json(out / HARD_NEGATIVES_NAME, record)
    if not regions:
        raise ConfigError(
            f"the first round's model scores no normal training cell at or above {config.hard_negative_threshold:g}:"
            " there is no hard negative to mine (lower hard_negative_threshold, or train without hard_negatives)"
        )
    yield Progress(int(0.55 * SCALE), SCALE, f"{sum(int(r.mask.sum()) for r in regions)} false-positive cells mined")
    second = focus_train_job(
        config,
        sources,
        regions,
        val,
        out,
        fraction=config.hard_negative_fraction,
        init_checkpoint=round1.best,
        mpp=data.mpp,
        resume=resume,
        stop=stop,
    )
    return (yield from relay(second, 0.55, 1.0, prefix="round 2: "))
