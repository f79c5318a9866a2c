""":func:`sample`: training patches from slides or a chest X-ray cohort, in one call (the sample stage's job run to
its end, the patch table optionally written)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from ..io.cohort import cohort_folder
from ..io.detect import slide_inputs
from ..progress import Progress, run_job
from .job import sample_cxr_job, sample_slides_job
from .patches import PatchGeometry
from .settings import SampleSettings
from .sources import SlideMpp
from .tables import write_patch_table

PathLike = str | os.PathLike[str]


def sample(
    inputs: PathLike | Sequence[PathLike],
    out: PathLike | None = None,
    *,
    settings: SampleSettings | None = None,
    geometry: PatchGeometry | None = None,
    jitter: float = 8.0,
    splits: Mapping[str, str] | None = None,
    working_size: int = 1024,
    patch_size: int = 256,
    mpp: SlideMpp = None,
    seed: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
) -> pd.DataFrame:
    """Draw training patches and return the patch table (written to ``out`` too when given).

    Args:
        inputs: slide files and / or folders of slides (each slide's ground truth is the ``<name>.xml`` /
            ``<name>.geojson`` beside it: slides without one are normal), or one chest X-ray cohort folder (with
            ``labels.csv``).
        out: the patch table to write (``.csv`` or ``.parquet``), or None.
        settings: how many patches and which sampler (:class:`~napari_patchdx.sampling.settings.SampleSettings`).
        geometry: slides: patch side, labelled centre region (px) and magnification
            (:class:`~napari_patchdx.sampling.patches.PatchGeometry`; default 299 / 128 px at level 0).
        jitter: slides: positional jitter of each patch, patch pixels (Liu et al.: 8).
        splits: slide or image name -> ``"train"`` / ``"val"`` / ``"test"`` (slides: written in the table, default
            train; X-rays: only ``"train"`` images are sampled, default the cohort's ``labels.csv`` split column).
        working_size, patch_size: X-rays: the working resolution and the patch side, pixels.
        mpp: slides: level-0 microns per pixel for slides whose files lack it (one value, or slide name -> value).
        seed: the random seed (draw ``i`` depends only on ``(seed, i)``).
        on_progress: called with each :class:`~napari_patchdx.progress.Progress` report.

    Returns:
        The patch table (:data:`~napari_patchdx.sampling.tables.PATCH_COLUMNS`): slide path, level-0 top-left
        ``x`` / ``y``, level, read size, label, split.

    Raises:
        InputFileError: an input that is not a slide or a cohort folder (named), an unreadable slide or annotation.
        ConfigError: a bad setting, or no tumour annotations for the balanced sampler.
    """
    settings = settings or SampleSettings()
    cohort = cohort_folder(inputs)
    if cohort is not None:
        job = sample_cxr_job(
            cohort, n=settings.n, patch_size=patch_size, working_size=working_size, seed=seed, splits=splits
        )
    else:
        job = sample_slides_job(
            slide_inputs([inputs] if isinstance(inputs, str | os.PathLike) else inputs),
            method=settings.method,
            n=settings.n,
            geometry=geometry,
            seed=seed,
            jitter=jitter,
            min_tissue=settings.min_tissue,
            splits=splits,
            mpp=mpp,
        )
    table = run_job(job, on_progress)
    if out is not None:
        write_patch_table(table, out)
    return table
