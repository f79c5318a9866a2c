"""Synthetic chest PA radiographs with exact lesion masks: the chest X-ray demo data and test fixtures.

Model
-----
An image is a projection ("density", a line integral of attenuation; bright = dense) built from analytic
anatomy, then passed through a vendor-like acquisition chain:

* **Anatomy** lives in *anatomy coordinates* (u, v) in [0, 1], u to the image's right (the patient's left, PA
  view), v downwards. A seeded patient pose (rotation of a few degrees, scale, offset) maps them onto pixels, so
  anatomy, lesions and masks are all evaluated at pixel centres of the rotated frame and nothing is resampled.
  Soft tissue of an elliptical trunk with shoulders; two lung fields (apex cap, lateral wall, sharp costophrenic
  angle, diaphragm domes, the right one higher) darker in their middle; mediastinum, aortic knob and a tilted
  elliptical heart extending to the image's right; trachea and main bronchi; vertebral column; posterior ribs
  (arches with cortical rims), fainter anterior ribs running down medially, clavicles; a gastric bubble under
  the left dome and breast shadows on some images; branching pulmonary vessels from the hila, tapering and
  fading towards the periphery.
* **Lesions** (:data:`CXR_CLASSES`) are additive density terms with a compact support inside the lungs:
  nodule (round, lobulated, soft-edged, 8-30 mm), consolidation (fluffy union of blobs, air bronchograms),
  interstitial opacity (reticular / reticulonodular texture over a zone), pleural effusion (fluid filling a
  lung base up to a meniscus that rises towards the chest wall: the costophrenic angle blunted, the dome hidden
  once the fluid rises above it, 5-35 % of the lung field) and pneumothorax (a vessel-free,
  darker apical/lateral rim bounded by a thin visceral pleural line). Their strength is set per class by
  ``contrast`` (see :data:`DEFAULT_CONTRAST`).
* **Acquisition**: quantum-like noise whose amplitude grows with density, a vendor filter (Gaussian blur or
  unsharp-mask sharpening, or none) applied in the density domain, a heel-effect gradient, then a display curve
  (gain, offset, gamma, S-curve) to float32 in [0, 1].

Anatomy, pose, lesions, vendor and noise draw from separate random streams of the image seed, so the same seed
rendered with ``lesions=[]`` is the identical image without its lesions. A lesion's mask is the support of its
density term dilated by the vendor filter's radius (``info["mask_dilation_px"]``): exactly the pixels it can
change, every pixel outside the union of masks equals the lesion-free rendering.

Geometry is (row, col) = (y, x) in native pixels; boxes are half-open ``(y0, x0, y1, x1)``.

Modules, each importing only those above it: :mod:`.data_model` (classes, contrast, lesion and cohort records),
:mod:`.pose` (patient pose), :mod:`.anatomy` (the anatomy model), :mod:`.drawing` (tubes, ribs, resampling),
:mod:`.anatomy_layers` (anatomy density), :mod:`.lesions` (the five lesion classes), :mod:`.acquisition`
(vendor chain), :mod:`.render` (:func:`render_cxr`), :mod:`.dicom` (:func:`write_cxr_dicom`), :mod:`.png`
and :mod:`.cohort` (:func:`make_cxr_cohort`).
"""

from __future__ import annotations

from .cohort import make_cxr_cohort
from .data_model import CXR_CLASSES, DEFAULT_CONTRAST, CxrCohort, Lesion
from .dicom import write_cxr_dicom
from .render import render_cxr

__all__ = [
    "CXR_CLASSES",
    "DEFAULT_CONTRAST",
    "CxrCohort",
    "Lesion",
    "make_cxr_cohort",
    "render_cxr",
    "write_cxr_dicom",
]
