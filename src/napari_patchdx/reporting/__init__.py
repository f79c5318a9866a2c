"""The HTML report of one run or several: curves, metrics, per-case tables, thumbnails, suspected label errors.

:func:`build_report` reads run directories laid out as the pipeline writes them (see ``docs/architecture.md``)::

    RUN_DIR/
      train/last.json        checkpoint sidecar whose "metrics" list is the training history (optional)
      evaluate/metrics.json  written by napari_patchdx.evaluation.evaluate_slides / evaluate_cxr
      evaluate/froc.png, roc.png, slides.csv | images.csv, thumbs/<name>.png, suspects.json

and writes one self-contained HTML page: every image is copied into a folder beside the page
(``<page stem>_files/``) and linked relatively, so the page and its folder can be moved or zipped together; no
script, no external resource. Every piece of text that comes from a file (run, slide, image and class names,
notes) is escaped with :func:`html.escape`. A part a run lacks (no training history, no evaluation yet) is skipped
with a note saying what is missing. ``metrics.json`` beside the page holds the metrics of the run, or, for several
runs, one object keyed by run name. Every file is written atomically (:mod:`napari_patchdx._fsutil`).

Modules: :mod:`.load` (reading run directories), :mod:`.formatting` (escaping and number formatting),
:mod:`.assets` (images copied or drawn beside the page), :mod:`.sections` (the HTML of each part) and
:mod:`.build` (:func:`build_report`, the entry point).
"""

from __future__ import annotations

from .build import build_report
from .load import ReportRun, load_run
from .settings import ReportSettings

__all__ = [
    "ReportRun",
    "ReportSettings",
    "build_report",
    "load_run",
]
