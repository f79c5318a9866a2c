"""Patch sampling: from slides / X-rays and their annotations to a patch table, and torch datasets over it.

The patch table (a pandas DataFrame, saved as CSV or Parquet; :mod:`~napari_patchdx.sampling.tables`) has one row
per patch: ``slide``, ``x``, ``y`` (level-0 top-left corner of the read window), ``level``, ``size``, ``label`` and
``split``; X-ray tables add one ``label_<class>`` 0/1 column per lesion class.

Sampling never builds a full-resolution mask: positions are drawn on the tissue mask's low-resolution grid
(about 8 um/px), and the exact central-region label of each drawn patch is computed by rasterising the
annotations inside that one central region. Draw ``i`` of a sampler is a pure function of ``(seed, i)``, so a
stream can be resumed at any index and reproduced from its seed alone.

Modules, from the bottom up:

* :mod:`~napari_patchdx.sampling.tissue_config`, :mod:`~napari_patchdx.sampling.tissue_mask`,
  :mod:`~napari_patchdx.sampling.tissue`: tissue detection settings, the tissue mask and its files, the detection.
* :mod:`~napari_patchdx.sampling.patches`: the geometry of a slide patch.
* :mod:`~napari_patchdx.sampling.splits`: train / val / test splits per slide or image.
* :mod:`~napari_patchdx.sampling.tables`: the patch table's columns, reading and writing it.
* :mod:`~napari_patchdx.sampling.sources`: slides ready for sampling (tissue, tumour, split).
* :mod:`~napari_patchdx.sampling.balanced`: Liu et al.'s balanced sampler.
* :mod:`~napari_patchdx.sampling.grid`: the grid sampler (inference, exhaustive sets).
* :mod:`~napari_patchdx.sampling.cxr_lesions`: chest X-ray cohorts and the lesion patch sampler.
* :mod:`~napari_patchdx.sampling.settings`: the stage's settings (:class:`SampleSettings`).
* :mod:`~napari_patchdx.sampling.job`: the sampling jobs with progress (widget, command line, run()).
* :mod:`~napari_patchdx.sampling.sample_files`: :func:`sample`, the stage in one call on slide files or a cohort.
* :mod:`~napari_patchdx.sampling.datasets`: torch datasets that read and augment patches (imports torch; not
  re-exported here).
"""

from __future__ import annotations

from .balanced import BalancedSampler
from .cxr_lesions import CxrLesionSampler, CxrSource, load_cxr_cohort
from .grid import grid_table
from .job import sample_cxr_job, sample_slides_job
from .patches import PatchGeometry
from .sample_files import sample
from .settings import SAMPLE_METHODS, SampleSettings
from .sources import SlideSource
from .splits import SPLITS, assign_splits
from .tables import PATCH_COLUMNS, read_patch_table, write_patch_table
from .tissue import NoTissueWarning, detect_tissue, tissue_from_rgb
from .tissue_config import TissueConfig
from .tissue_mask import MASK_SUFFIXES, TissueMask

__all__ = [
    "MASK_SUFFIXES",
    "PATCH_COLUMNS",
    "SAMPLE_METHODS",
    "SPLITS",
    "BalancedSampler",
    "CxrLesionSampler",
    "CxrSource",
    "NoTissueWarning",
    "PatchGeometry",
    "SampleSettings",
    "SlideSource",
    "TissueConfig",
    "TissueMask",
    "assign_splits",
    "detect_tissue",
    "grid_table",
    "load_cxr_cohort",
    "read_patch_table",
    "sample",
    "sample_cxr_job",
    "sample_slides_job",
    "tissue_from_rgb",
    "write_patch_table",
]
