"""Inference: tumour-probability heatmaps of whole slides (Liu et al. 2017) and lesion CAMs of chest X-rays.

Slides
------
:func:`slide_heatmap_job` slides the patch window over the grid sampler's cells
(:func:`napari_patchdx.sampling.balanced.grid_table`: stride = the central region by default, cell ``(row, col)``
covers level-0 ``[row, row + 1) * stride0`` and its patch is centred on the cell) and writes one probability per
cell: the sigmoid of the logit, averaged over the 8 orientations (test-time augmentation) and over the ensemble of
models. Cells that were not evaluated (no tissue, or a patch touching an unreadable tile) are **NaN**, never 0:
"unknown" is not "normal".

Read each byte once, in bounded memory: the grid is processed in bands of cell rows, and each band in column
blocks of at most ``block_width`` level pixels (default 16 tiles). A block is one tile-aligned buffer of the plan's
pyramid level holding all its patches' read windows; only the tiles some patch touches are filled. Every level
tile is decoded at most once per run: a tile that a later block (the next column block, or the next band) needs
again is kept, as its own small array, until its last use, so memory holds one block buffer, the tiles on the
current band boundary and the batches in flight — it grows with neither the slide's height nor, beyond that
one row of boundary tiles, its width. Patches are cut from the block buffer one model batch at a time, never a
whole band at once. Reading and cutting run in a background thread (``read_threads`` > 1 adds a pool that decodes
tile runs and cuts batches in parallel, for GPUs) and stay ``prefetch`` batches ahead of the model; the partial
store is written by a third thread, so neither decoding nor disk writes stall the model. On CUDA the model runs
under bf16 autocast (``precision``), in channels-last layout, fed from pinned host memory with non-blocking
copies.

Nothing lost: bands are written as they finish into ``<out_dir>/<slide>.heatmap.partial.npy`` (a ``.npy``
memmap) and ``<slide>.heatmap.partial.json`` records, atomically, how many cell rows are done and for which
configuration, so an interrupted job resumes from its last finished band. The finished heatmap is
``<out_dir>/<slide>.heatmap.ome.tif`` (float32, pyramidal when large) with its geometry in the sidecar
``<slide>.heatmap.json``; a finished heatmap with the same configuration is loaded, not recomputed, unless
``resume=False``.

Chest X-rays
------------
:func:`cxr_predict` resizes each image to the checkpoint's working size, standardises it like
:func:`napari_patchdx.transforms.cxr_eval_transforms` and returns per-class probabilities and class activation
maps upsampled to the native image (CAM cell ``(r, c)`` covers native pixels ``[r, r + 1) * H / h`` x
``[c, c + 1) * W / w``).

Modules
-------
* :mod:`.ensemble` — loading the models, their fingerprint, precision and layout; :func:`predict_patches`.
* :mod:`.band_plan` — the reading plan: bands of cell rows, column blocks, the last use of every tile.
* :mod:`.patch_reader` — filling a block's buffer (each tile decoded once) and cutting its patches.
* :mod:`.patch_stream` — batches of patches from a background thread; :func:`iter_slide_patches`.
* :mod:`.heatmap_files` — heatmap file names, :func:`read_heatmap` and the heatmap writer.
* :mod:`.heatmaps` — :func:`slide_heatmap_job`, :func:`heatmap_grid`, :func:`patch_geometry`, :class:`HeatmapResult`.
* :mod:`.distributed_heatmaps` — :func:`heatmaps_job`: the heatmaps of many slides, on a dask cluster or serially.
* :mod:`.xray` — :func:`cxr_predict`, :class:`CxrPrediction` and the CAM files.
"""

from __future__ import annotations

from .distributed_heatmaps import heatmaps_job, predict_slides
from .ensemble import PRECISIONS, predict_patches
from .heatmap_files import read_heatmap
from .heatmaps import HeatmapResult, HeatmapRows, heatmap_grid, patch_geometry, slide_heatmap_job
from .patch_stream import iter_slide_patches
from .settings import DistributedSettings, InferSettings
from .xray import CxrPrediction, cxr_predict, read_cxr_prediction, save_cxr_prediction
from .xray_job import XrayInput, XrayOutcome, predict_xrays, predict_xrays_job

__all__ = [
    "PRECISIONS",
    "CxrPrediction",
    "DistributedSettings",
    "HeatmapResult",
    "HeatmapRows",
    "InferSettings",
    "XrayInput",
    "XrayOutcome",
    "cxr_predict",
    "heatmap_grid",
    "heatmaps_job",
    "iter_slide_patches",
    "patch_geometry",
    "predict_patches",
    "predict_slides",
    "predict_xrays",
    "predict_xrays_job",
    "read_cxr_prediction",
    "read_heatmap",
    "save_cxr_prediction",
    "slide_heatmap_job",
]
