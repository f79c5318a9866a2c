"""The sampling jobs (shared by the widget, the command line and run()): slides or a chest X-ray cohort to a patch
table, with progress.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..io.annotations.model import AnnotationSet
from ..io.names import file_name
from ..progress import Job, Progress
from .balanced import BalancedSampler
from .cxr_lesions import CxrLesionSampler, load_cxr_cohort
from .grid import grid_table
from .patches import PatchGeometry
from .sources import SlideMpp, SlideSource, check_slide_mpp
from .tables import patch_frame
from .tissue_config import TissueConfig

__all__ = ["sample_cxr_job", "sample_slides_job"]


def sample_slides_job(
    slides: Sequence[tuple[str | os.PathLike[str], str | os.PathLike[str] | AnnotationSet | None]],
    *,
    method: str = "balanced",
    n: int = 1000,
    geometry: PatchGeometry | None = None,
    seed: int = 0,
    jitter: float = 8.0,
    stride: int | None = None,
    min_tissue: float = 0.25,
    tissue: TissueConfig | None = None,
    splits: Mapping[str, str] | None = None,
    mpp: SlideMpp = None,
    chunk: int = 64,
) -> Job[pd.DataFrame]:
    """Prepare ``slides`` (path, annotations) and sample a patch table, yielding progress.

    ``method`` is ``"balanced"`` (``n`` patches by Liu's sampler) or ``"grid"`` (every tissue cell). Slides are
    split by ``splits`` (stem -> split) or all ``train``. ``mpp`` gives slides their level-0 microns per pixel
    (one value, or slide name -> value; see :data:`~napari_patchdx.sampling.sources.SlideMpp`), overriding their
    files'; a slide whose mpp neither its file nor ``mpp`` gives is refused (tissue detection needs it). A progress
    report's ``partial`` holds each slide's :class:`TissueMask` once detected, then the rows drawn since the
    previous report, so a viewer can show them as they come.
    """
    if method not in ("balanced", "grid"):
        raise ConfigError(f"method must be 'balanced' or 'grid', got {method!r}")
    mpp = check_slide_mpp(mpp)
    geometry = geometry or PatchGeometry()
    total = len(slides) + (int(n) if method == "balanced" else len(slides))
    sources = []
    for k, (path, truth) in enumerate(slides):
        yield Progress(k, total, f"tissue detection: {Path(path).name}")
        split = (splits or {}).get(file_name(path), "train")
        sources.append(SlideSource.prepare(path, truth, tissue=tissue, split=split, mpp=mpp))
        yield Progress(k + 1, total, f"tissue: {Path(path).name}", partial=sources[-1].tissue)
    done = len(slides)
    parts: list[pd.DataFrame] = []
    if method == "grid":
        for source in sources:
            part = grid_table(source, geometry, stride=stride, min_tissue=min_tissue)
            parts.append(part)
            done += 1
            yield Progress(done, total, f"grid: {source.name}: {len(part)} patches", partial=part)
    else:
        sampler = BalancedSampler(sources, geometry, seed=seed, jitter=jitter)
        for start in range(0, int(n), chunk):
            part = sampler.table(min(chunk, int(n) - start), start=start)
            parts.append(part)
            done += len(part)
            yield Progress(done, total, f"sampled {start + len(part)} of {n} patches", partial=part)
    return pd.concat(parts, ignore_index=True) if parts else patch_frame([])


def sample_cxr_job(
    root: str | os.PathLike[str],
    *,
    n: int = 1000,
    patch_size: int = 256,
    working_size: int = 1024,
    positive_fraction: float = 0.5,
    jitter: float = 32.0,
    seed: int = 0,
    splits: Mapping[str, str] | None = None,
    chunk: int = 64,
) -> Job[pd.DataFrame]:
    """Sample ``n`` lesion / normal-lung patches from a chest X-ray cohort folder (curriculum step 1), with progress.

    Images are split by ``splits`` (image id -> split), else by a ``split`` column in ``labels.csv``, else train.
    """
    yield Progress(0, int(n), f"reading masks in {Path(root).name}")
    sampler = CxrLesionSampler(
        load_cxr_cohort(root, splits),
        patch_size=patch_size,
        working_size=working_size,
        positive_fraction=positive_fraction,
        jitter=jitter,
        seed=seed,
    )
    parts = []
    for start in range(0, int(n), chunk):
        part = sampler.table(min(chunk, int(n) - start), start=start)
        parts.append(part)
        yield Progress(start + len(part), int(n), f"sampled {start + len(part)} of {n} patches", partial=part)
    return pd.concat(parts, ignore_index=True) if parts else patch_frame([])
