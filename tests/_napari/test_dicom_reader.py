"""DICOM files in a real napari Viewer: a DICOM-WSI opens as a multiscale slide, a radiograph as an X-ray."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_patchdx import open_slide
from napari_patchdx.synth.cxr.dicom import write_cxr_dicom
from napari_patchdx.synth.wsi.slide import make_slide

from ..io.dicom_wsi import write_dicom_wsi

pytestmark = pytest.mark.gui

HEIGHT, WIDTH, MPP = 1200, 1500, 1.0


@pytest.fixture(scope="module")
def tiff_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic tumour slide (JPEG-tiled pyramidal TIFF, 1200 x 1500 px at 1 um/px) with its ASAP XML."""
    return make_slide(
        tmp_path_factory.mktemp("tiff") / "case.tif", height=HEIGHT, width=WIDTH, mpp=MPP, seed=11, tumor=True
    ).path


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory: pytest.TempPathFactory, tiff_slide: Path) -> list[Path]:
    """``tiff_slide`` as a DICOM-WSI series (``level-0.dcm`` .. ``level-2.dcm``), its XML beside level 0."""
    folder = tmp_path_factory.mktemp("dicom")
    series = write_dicom_wsi(tiff_slide, folder, seed="case")
    shutil.copy(tiff_slide.with_suffix(".xml"), folder / "level-0.xml")
    return series


def test_dicom_wsi_opens_as_a_multiscale_slide(make_napari_viewer, dicom_series, tiff_slide) -> None:
    viewer = make_napari_viewer(show=True)
    # open the smallest level's file: the whole series opens, named after (and with the ground truth of) level 0
    layers = viewer.open(str(dicom_series[2]), plugin="napari-patchdx")
    image, truth = layers
    assert image.name == "level-0" and truth.name == "level-0 ground truth" and truth.nshapes >= 1
    assert image.multiscale and image.rgb and len(image.data) == 3
    assert [tuple(level.shape) for level in image.data] == [(1200, 1500, 3), (600, 750, 3), (300, 375, 3)]
    meta = image.metadata["patchdx"]
    assert meta["kind"] == "slide" and meta["backend"] == "openslide" and meta["vendor"] == "dicom"
    assert meta["mpp"] == pytest.approx(MPP) and meta["path"] == str(dicom_series[0])
    np.testing.assert_allclose(image.scale, [MPP, MPP])
    assert [str(u) for u in image.units] == ["micrometer", "micrometer"]

    # the layer's pixels are the TIFF's: a level-0 window across tile borders and the whole smallest level
    tiff = open_slide(tiff_slide)
    np.testing.assert_array_equal(np.asarray(image.data[0][250:330, 490:620]), tiff.read_region(250, 490, 80, 130))
    np.testing.assert_array_equal(np.asarray(image.data[2]), tiff.read_level_region(2, 0, 0, 300, 375))

    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot[..., :3].astype(int).std() > 10, "canvas is blank"


def test_files_of_one_series_read_together_give_one_slide(make_napari_viewer, dicom_series) -> None:
    viewer = make_napari_viewer()
    layers = viewer.open([str(p) for p in reversed(dicom_series)], stack=True, plugin="napari-patchdx")
    assert [layer.name for layer in layers] == ["level-0", "level-0 ground truth"]
    assert layers[0].multiscale and layers[0].data[0].shape == (HEIGHT, WIDTH, 3)


def test_xray_dicom_still_opens_as_an_xray(make_napari_viewer, tmp_path) -> None:
    ramp = np.linspace(0.0, 1.0, 64 * 48).reshape(64, 48)
    path = write_cxr_dicom(tmp_path / "chest.dcm", ramp, spacing_mm=0.2, uid_entropy=["chest"])
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="napari-patchdx")
    assert not layer.multiscale and layer.data.shape == (64, 48)
    assert layer.metadata["patchdx"]["kind"] == "cxr"
    np.testing.assert_allclose(layer.scale, [0.2, 0.2])


def test_a_dicom_that_is_neither_is_refused_naming_the_file(make_napari_viewer, tmp_path) -> None:
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"not a dicom file at all" * 10)
    viewer = make_napari_viewer()
    with pytest.raises(Exception) as info:  # napari wraps the reader's error (ReaderPluginError)
        viewer.open(str(fake), plugin="napari-patchdx")
    chain, err = [], info.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__
    assert any(str(fake) in text and "content is not PNG, JPEG, TIFF or DICOM" in text for text in chain), chain
    assert not viewer.layers
