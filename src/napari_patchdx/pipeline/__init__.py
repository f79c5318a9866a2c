"""The staged pipeline behind ``napari_patchdx.run()``, ``napari-patchdx run`` and the napari "Run pipeline" widget.

One run is one track over one input folder, in one run directory::

    RUN_DIR/
      config.yaml      the resolved configuration (every default filled in, absolute paths)
      manifest.json    config, seed, package versions, device, input sizes and sha256, per-stage fingerprints,
                       status and timings, one entry per session, the metrics, each slide's mpp and its source
      sample/          splits.csv (name, split, label, path, truth; slides: mpp) and patches.csv (the patch table)
      train/           the trainer's folder (best.* / last.* checkpoints, resume state, train_manifest.json)
      infer/           slides: <stem>.heatmap.ome.tif + .json; X-rays: <image>.cam.ome.tif + .json
      evaluate/        metrics.json, per-slide / per-image table, points/, plots, thumbnails, suspects.json
      report.html      the HTML report (its images in report_files/, the run's metrics in metrics.json)
      rounds/<k>/      retraining with corrections (slides and X-rays), one numbered round each (:func:`retrain`,
                       :func:`napari_patchdx.io.names.round_paths`)

Tracks
------
``slides``
    ``input`` is a folder of slides with their ground truth beside them (``<stem>.xml`` / ``<stem>.geojson``;
    a slide without one is normal). Sample: Liu et al.'s balanced sampler draws ``sample.n`` training patches from
    the training slides (``sample.method: grid`` takes every tissue cell instead) and ``train.val_patches``
    validation patches from the validation slides, into ``sample/patches.csv``; the patch geometry is the training
    config's (``train.patch_size``, ``center_size``, ``mpp``, ``jitter``). Train: patch training on that table.
    Infer: heatmaps (8-fold TTA by default) of the slides of ``infer.splits`` (the test split), on a dask cluster
    when ``distributed.workers`` or ``distributed.scheduler`` says so. Evaluate: lesion points by NMS, the
    CAMELYON16 FROC, slide-level AUC. Report.
``cxr``
    ``input`` is a chest X-ray cohort folder as :func:`napari_patchdx.synth.cxr.make_cxr_cohort` writes it
    (``labels.csv``, ``images/``, ``masks/`` or ``lesions.csv``, ``lungs/``). Sample: the split, and the first
    ``sample.n`` lesion / normal-lung patches of the training stream (exactly the patches the curriculum's step 1
    starts with: the trainer draws the same stream from the same seed) for inspection. Train: ``train.stage``
    (default ``curriculum``: lesion patches, then whole images; ``baseline``: whole images with the same budget).
    Infer: probabilities and CAMs of the images of ``infer.splits``. Evaluate: AUROC per class with intervals,
    sensitivity / specificity at the checkpoint's Youden thresholds, the pointing game. Report.

Splits are per slide / image (never per patch): ``splits`` is three fractions (train, val, test; stratified by
tumour / lesion, reproducible from ``seed``), a mapping name -> split, or a CSV file with columns ``name, split``.
By default an X-ray cohort's ``labels.csv`` ``split`` column is used when it has one, else the fractions
``[0.6, 0.2, 0.2]``.

Skipping and re-running
-----------------------
Every stage has a fingerprint: a hash of its own settings, of the previous stage's fingerprint and, for the first
stage, of the inputs' sha256 checksums and the split. A stage whose recorded status is ``complete``, whose
fingerprint matches and whose artifacts all exist is skipped; otherwise its folder is cleared and it runs again,
and so, through the chained fingerprints, do all the stages after it. Settings that do not change the results
(``device``, ``train.num_workers``, ``train.progress_every``, the ``distributed`` section, ``run_dir``) are left
out of the fingerprints. A stage that was interrupted (Ctrl-C, Stop, a crash) with the same fingerprint is
resumed where that is possible (training from its resume state, heatmaps band by band), else redone. ``force``
re-runs every stage.

Reproducing
-----------
``run(RUN_DIR / "manifest.json")`` loads the manifest's configuration and runs it into the same folder (every
stage whose inputs and outputs are intact is skipped), or, with ``run_dir=``, into a new one; a warning names any
input whose checksum differs from the manifest's. Input checksums are cached in the manifest by size and
modification time, so re-running a run over large slides does not re-hash them.
"""

from __future__ import annotations

from ..evaluation.settings import EvaluateSettings
from ..inference.settings import DistributedSettings, InferSettings
from ..reporting.settings import ReportSettings
from ..sampling.settings import SampleSettings
from .config import TRACKS, RunConfig, config_reference
from .manifest import MANIFEST_KIND
from .results import RunResult, headline, result_layers
from .retrain import retrain, retrain_job
from .runner import run, run_job
from .stages import STAGES

__all__ = [
    "MANIFEST_KIND",
    "STAGES",
    "TRACKS",
    "DistributedSettings",
    "EvaluateSettings",
    "InferSettings",
    "ReportSettings",
    "RunConfig",
    "RunResult",
    "SampleSettings",
    "config_reference",
    "headline",
    "result_layers",
    "retrain",
    "retrain_job",
    "run",
    "run_job",
]
