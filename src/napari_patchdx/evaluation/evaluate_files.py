""":func:`evaluate`: one call for either track: slides with their heatmaps (lesion points, CAMELYON16 FROC, slide
AUC) or a chest X-ray cohort with its CAMs (AUROC, operating points, pointing game), routed by the inputs."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ..io.cohort import cohort_folder
from ..io.detect import slide_inputs
from ..progress import Progress, run_job
from ..sampling.sources import SlideMpp
from .settings import EvaluateSettings
from .slide_files import evaluate_slides_job
from .xrays import evaluate_cxr_job

PathLike = str | os.PathLike[str]


def evaluate(
    inputs: PathLike | Sequence[PathLike],
    predictions: PathLike,
    out: PathLike,
    *,
    settings: EvaluateSettings | None = None,
    annotations: Mapping[str, PathLike | None] | None = None,
    images: Sequence[str] | None = None,
    thresholds: Mapping[str, float | None] | None = None,
    mpp: SlideMpp = None,
    seed: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Evaluate predictions against ground truth and write the ``evaluate/`` files into ``out``; returns the metrics.

    Args:
        inputs: slide files and / or folders of slides (slides track), or one chest X-ray cohort folder with
            ``labels.csv`` (and ``lesions.csv`` for the pointing game).
        predictions: the folder of ``<name>.heatmap.ome.tif`` (slides) or ``<image>.cam.ome.tif`` (X-rays) files
            that inference wrote.
        out: the output folder (created).
        settings: NMS threshold and radius, FROC level, slide score, bootstrap resamples
            (:class:`~napari_patchdx.evaluation.settings.EvaluateSettings`; the X-ray track uses ``n_boot``).
        annotations: slides: slide name -> ground-truth file or None (default: the file beside each slide).
        images: X-rays: the image ids to evaluate (default: every prediction).
        thresholds: X-rays: per-class operating thresholds (e.g. a checkpoint's Youden thresholds,
            :func:`~napari_patchdx.models.checkpoint.checkpoint_thresholds`).
        mpp: slides: level-0 microns per pixel for slides whose files lack it (one value, or slide name -> value);
            also the FROC protocol's (CAMELYON16: 0.243).
        seed: the bootstrap seed.
        on_progress: called with each :class:`~napari_patchdx.progress.Progress` report.

    Returns:
        The metrics (also written to ``out/metrics.json``): see :func:`~napari_patchdx.evaluation.evaluate_slides`
        and :func:`~napari_patchdx.evaluation.evaluate_cxr`.

    Raises:
        InputFileError: an input that is not a slide or a cohort folder, a missing prediction, an unreadable file.
        ConfigError: a bad setting, or a slide-only option given for X-rays (or the reverse).
    """
    settings = settings or EvaluateSettings()
    cohort = cohort_folder(inputs)
    if cohort is not None:
        if annotations is not None or mpp is not None:
            raise ConfigError(
                "annotations and mpp are for slides; a chest X-ray cohort's ground truth is its labels.csv"
            )
        job = evaluate_cxr_job(
            predictions, cohort, out, images=images, thresholds=thresholds, n_boot=settings.n_boot, seed=seed
        )
    else:
        if images is not None or thresholds is not None:
            raise ConfigError("images and thresholds are for a chest X-ray cohort, not for slides")
        job = evaluate_slides_job(
            [p for p, _ in slide_inputs([inputs] if isinstance(inputs, str | os.PathLike) else inputs)],
            predictions,
            out,
            annotations=annotations,
            mpp=mpp,
            seed=seed,
            **settings.slide_options(),
        )
    return run_job(job, on_progress)
