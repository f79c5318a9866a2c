"""DICOM whole-slide images: routed by content, opened from any file of the series, same pixels as the source TIFF.

The series are written from synthetic JPEG-tiled TIFF slides by :func:`tests.io.dicom_wsi.write_dicom_wsi`, which
copies the compressed tiles byte for byte, so the DICOM must decode to exactly the TIFF's pixels.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from napari_patchdx import InputFileError, open_slide
from napari_patchdx.io.cxr.read import read_cxr
from napari_patchdx.io.detect import detect_kind, slides_in_folder
from napari_patchdx.io.slides.dicom import (
    WSI_SOP_CLASS,
    dicom_wsi_series,
    one_per_series,
    read_dicom_header,
    series_representative,
)
from napari_patchdx.synth.cxr.dicom import write_cxr_dicom
from napari_patchdx.synth.wsi.slide import make_slide

from .dicom_wsi import write_dicom_wsi

HEIGHT, WIDTH, MPP = 1200, 1500, 1.0  # level 0; the synthetic pyramid halves down to 300 x 375 (3 levels)


@pytest.fixture(scope="module")
def tiff_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic tumour slide: JPEG-tiled pyramidal TIFF, 1200 x 1500 px at 1 um/px, with its ASAP XML."""
    return make_slide(
        tmp_path_factory.mktemp("tiff") / "case.tif", height=HEIGHT, width=WIDTH, mpp=MPP, seed=11, tumor=True
    ).path


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory: pytest.TempPathFactory, tiff_slide: Path) -> list[Path]:
    """``tiff_slide`` as a DICOM-WSI series: ``level-0.dcm`` .. ``level-2.dcm`` in one folder."""
    return write_dicom_wsi(tiff_slide, tmp_path_factory.mktemp("dicom"), seed="case")


@pytest.fixture
def xray_dicom(tmp_path: Path) -> Path:
    """A single-frame DX radiograph (SOP class Digital X-Ray Image Storage - For Presentation)."""
    ramp = np.linspace(0.0, 1.0, 64 * 48).reshape(64, 48)
    return write_cxr_dicom(tmp_path / "chest.dcm", ramp, spacing_mm=0.2, uid_entropy=["chest"])


def test_writer_copies_the_tiff_tiles_into_a_standard_series(dicom_series: list[Path]) -> None:
    headers = [read_dicom_header(p) for p in dicom_series]
    assert all(h is not None and h.is_wsi and h.sop_class == WSI_SOP_CLASS for h in headers)
    assert len({h.series_uid for h in headers}) == 1
    assert [h.total_shape for h in headers] == [(1200, 1500), (600, 750), (300, 375)]
    assert [h.is_level for h in headers] == [True, True, True]
    ds = pydicom.dcmread(dicom_series[0], stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    assert ds.NumberOfFrames == 5 * 6 and (ds.Rows, ds.Columns) == (256, 256)
    spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    assert [float(v) for v in spacing] == pytest.approx([MPP / 1000, MPP / 1000])


def test_dicom_routed_by_content(dicom_series: list[Path], xray_dicom: Path) -> None:
    assert [detect_kind(p) for p in dicom_series] == ["slide"] * 3
    assert detect_kind(xray_dicom) == "cxr"
    header = read_dicom_header(xray_dicom)
    assert header is not None and not header.is_wsi and header.sop_class_name.startswith("Digital X-Ray")
    # the X-ray reader is untouched: the radiograph still reads as one 2-D image with its spacing
    cxr = read_cxr(xray_dicom)
    assert cxr.image.shape == (64, 48) and cxr.spacing == pytest.approx((0.2, 0.2))


@pytest.mark.parametrize("level", [0, 1, 2])
def test_dicom_slide_has_the_tiff_pixels_and_mpp(dicom_series: list[Path], tiff_slide: Path, level: int) -> None:
    tiff = open_slide(tiff_slide)
    with open_slide(dicom_series[0]) as dicom:
        assert dicom.backend == "openslide" and dicom.properties["openslide.vendor"] == "dicom"
        assert dicom.shape == (HEIGHT, WIDTH) and dicom.level_shapes == tiff.level_shapes
        assert dicom.level_downsamples == pytest.approx(tiff.level_downsamples)
        assert dicom.tile_shapes[level] == (256, 256)
        assert dicom.mpp == pytest.approx(MPP)
        meta = dicom.metadata()
        assert meta["mpp"] == pytest.approx(MPP) and meta["mpp_source"] == "file" and meta["vendor"] == "dicom"
        h, w = tiff.level_shapes[level]
        # the same JPEG bytes decoded by OpenSlide (DICOM) and tifffile (TIFF): identical, edge tiles included
        np.testing.assert_array_equal(
            dicom.read_level_region(level, 0, 0, h, w), tiff.read_level_region(level, 0, 0, h, w)
        )
    # a region read in level-0 coordinates across tile borders
    with open_slide(dicom_series[0]) as dicom:
        np.testing.assert_array_equal(
            dicom.read_region(301, 517, 90, 140, level), tiff.read_region(301, 517, 90, 140, level)
        )


def test_any_file_of_the_series_opens_the_series(dicom_series: list[Path], tiff_slide: Path) -> None:
    tiff = open_slide(tiff_slide)
    expected = tiff.read_region(600, 700, 64, 80)
    for path in dicom_series:
        with open_slide(path) as dicom:
            assert dicom.level_shapes == ((1200, 1500), (600, 750), (300, 375)), path.name
            assert dicom.mpp == pytest.approx(MPP)
            np.testing.assert_array_equal(dicom.read_region(600, 700, 64, 80), expected)
    # every file of the series stands for the one slide, named after its level-0 file
    assert {series_representative(p) for p in dicom_series} == {dicom_series[0]}
    assert one_per_series([dicom_series[2], dicom_series[1], dicom_series[0]]) == [dicom_series[0]]


def test_series_needs_its_instances_in_one_folder(tmp_path: Path, dicom_series: list[Path]) -> None:
    # OpenSlide finds the other instances in the opened file's folder only: a level copied alone is the whole slide
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(dicom_series[1], alone / "level-1.dcm")
    with open_slide(alone / "level-1.dcm") as dicom:
        assert dicom.level_shapes == ((600, 750),)
        assert dicom.mpp == pytest.approx(2 * MPP)  # that level's own pixel spacing


def test_two_series_in_one_folder_are_two_slides(tmp_path: Path, tiff_slide: Path, dicom_series: list[Path]) -> None:
    folder = tmp_path / "both"
    first = write_dicom_wsi(tiff_slide, folder, prefix="a", seed="first")
    other_tiff = make_slide(tmp_path / "other.tif", height=700, width=900, mpp=0.5, seed=12, tumor=False).path
    second = write_dicom_wsi(other_tiff, folder, prefix="b", seed="second")
    shutil.copy(tiff_slide.with_suffix(".xml"), folder / "a-0.xml")

    series = dicom_wsi_series(folder)
    assert sorted(len(v) for v in series.values()) == [2, 3]
    # each file opens its own series (chosen by Series Instance UID), never the other one's levels
    with open_slide(first[2]) as a, open_slide(second[1]) as b:
        assert a.shape == (HEIGHT, WIDTH) and a.level_count == 3 and a.mpp == pytest.approx(MPP)
        assert b.shape == (700, 900) and b.level_count == 2 and b.mpp == pytest.approx(0.5)
        assert a.properties["dicom.SeriesInstanceUID"] != b.properties["dicom.SeriesInstanceUID"]
    # a folder lists each series once, as its level-0 file, with the ground truth named after it
    assert slides_in_folder(folder) == [(first[0], folder / "a-0.xml"), (second[0], None)]
    assert one_per_series([*second, *first]) == [second[0], first[0]]


def test_folder_listing_mixes_dicom_tiff_and_xrays(tmp_path: Path, tiff_slide: Path, xray_dicom: Path) -> None:
    folder = tmp_path / "mixed"
    series = write_dicom_wsi(tiff_slide, folder, prefix="wsi", seed="mixed")
    shutil.copy(tiff_slide, folder / "plain.tif")
    shutil.copy(xray_dicom, folder / "chest.dcm")
    assert [p for p, _ in slides_in_folder(folder)] == [folder / "plain.tif", series[0]]
    assert one_per_series([folder / "chest.dcm", series[1]]) == [folder / "chest.dcm", series[0]]


def test_a_dicom_that_is_not_a_slide_is_refused_by_name(tmp_path: Path, xray_dicom: Path) -> None:
    with pytest.raises(InputFileError, match=r"chest\.dcm: a DICOM of SOP class Digital X-Ray.*not a whole-slide"):
        open_slide(xray_dicom)
    fake = tmp_path / "fake.dcm"
    fake.write_bytes(b"not a dicom file at all" * 10)
    assert detect_kind(fake) == "cxr"  # the X-ray reader names the problem
    with pytest.raises(InputFileError, match=r"fake\.dcm: not a readable DICOM"):
        open_slide(fake)
    with pytest.raises(InputFileError, match=r"fake\.dcm: content is not PNG, JPEG, TIFF or DICOM"):
        read_cxr(fake)


def test_a_label_without_its_pyramid_is_refused_by_name(tmp_path: Path, dicom_series: list[Path]) -> None:
    ds = pydicom.dcmread(dicom_series[2])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LABEL", "NONE"]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["label"])
    label = tmp_path / "label.dcm"
    ds.save_as(label, enforce_file_format=True)
    assert detect_kind(label) == "slide"
    with pytest.raises(InputFileError, match=r"label\.dcm: a DICOM-WSI label image whose series .* no pyramid level"):
        open_slide(label)
    # beside its pyramid the label opens the series
    shutil.copy(dicom_series[0], tmp_path / "level-0.dcm")
    with open_slide(label) as dicom:
        assert dicom.shape == (HEIGHT, WIDTH)
    assert series_representative(label) == tmp_path / "level-0.dcm"


def test_broken_wsi_dicom_error_names_the_file(tmp_path: Path, dicom_series: list[Path]) -> None:
    ds = pydicom.dcmread(dicom_series[2])
    ds.SamplesPerPixel = 1  # OpenSlide reads 8-bit RGB only
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad, enforce_file_format=True)
    with pytest.raises(InputFileError, match=r"bad\.dcm: OpenSlide cannot open it .*SamplesPerPixel"):
        open_slide(bad)
