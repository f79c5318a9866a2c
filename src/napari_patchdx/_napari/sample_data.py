"""npe2 sample data: a small synthetic slide with its ground truth, a synthetic chest X-ray with lesion boxes.

Opening a sample also installs the plugin's viewer hooks (:func:`~napari_patchdx._napari.hooks.install_viewer_hooks`)
in the current viewer, before any of the plugin's dock widgets is opened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from platformdirs import user_cache_dir

from ..layerdata import LayerData, boxes_layer, cxr_layer, slide_file_layers
from .hooks import install_in_current_viewer

#: Bump when the generator's output changes so cached samples are rebuilt.
SAMPLE_VERSION = 1


def _cache_dir() -> Path:
    path = Path(user_cache_dir("napari-patchdx")) / "samples"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sample_slide() -> list[LayerData]:
    """A 4096 x 4096 px synthetic lymph-node slide (0.5 um/px) with tumours, and its ground-truth Shapes layer.

    Generated once (deterministically) into the user cache folder, then opened through the plugin's reader.
    """
    from ..synth.wsi.slide import make_slide

    install_in_current_viewer()
    path = _cache_dir() / f"sample_slide_v{SAMPLE_VERSION}.tif"
    if not path.is_file():
        make_slide(path, height=4096, width=4096, mpp=0.5, seed=7, tumor=True)
    return slide_file_layers(path)


def sample_cxr() -> list[LayerData]:
    """A 1024 x 1024 synthetic chest X-ray (about 0.4 mm/px) with a nodule and a pleural effusion, and their boxes."""
    from ..io.cxr.read import CxrImage
    from ..synth.cxr.render import render_cxr

    install_in_current_viewer()
    image, lesions, info = render_cxr(11, size=1024, lesions=("nodule", "pleural_effusion"))
    spacing = (float(info["spacing_mm"][0]), float(info["spacing_mm"][1]))
    cxr = CxrImage(image=image, spacing=spacing, meta={"source": "synthetic", "seed": 11}, path=None)
    boxes = np.array([lesion.box for lesion in lesions], dtype=np.float64).reshape(-1, 4)
    return [
        cxr_layer(cxr, name="synthetic chest x-ray"),
        boxes_layer(boxes, [lesion.cls for lesion in lesions], spacing=spacing, name="lesion boxes"),
    ]
