"""Chest X-ray reader: PNG / JPEG / TIFF / DICOM into one bright-is-dense float image, and its refusals."""

from __future__ import annotations

import os
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    generate_uid,
)

from napari_patchdx import InputFileError, read_cxr
from napari_patchdx.io.cxr.read import CxrImage, detect_format

ROWS, COLS = 96, 128  # not square, so a transposed image cannot pass


def phantom() -> np.ndarray:
    """A float (ROWS, COLS) image in [0, 1]: a diagonal ramp, a bright disc and a dark bar."""
    y, x = np.mgrid[0:ROWS, 0:COLS]
    img = 0.15 + 0.5 * (x / COLS) * (0.5 + 0.5 * y / ROWS)
    img[(y - 40) ** 2 + (x - 80) ** 2 < 15**2] = 0.95
    img[70:80, 10:60] = 0.02
    img[0, 0], img[-1, -1] = 0.0, 1.0
    return img


def quantise(img: np.ndarray, bits: int) -> np.ndarray:
    return np.rint(img * (2**bits - 1)).astype(np.uint16 if bits > 8 else np.uint8)


def assert_cxr(cxr: CxrImage, shape: tuple[int, int] = (ROWS, COLS)) -> None:
    assert isinstance(cxr, CxrImage)
    assert cxr.image.shape == shape
    assert cxr.image.dtype == np.float32
    assert cxr.image.flags.c_contiguous
    assert float(cxr.image.min()) >= 0.0 and float(cxr.image.max()) <= 1.0


def raises_for(path: Path, match: str) -> pytest.ExceptionInfo[InputFileError]:
    with pytest.raises(InputFileError, match=match) as info:
        read_cxr(path)
    assert str(info.value).startswith(f"{path}: ")
    assert info.value.path == path
    return info


# --------------------------------------------------------------------------------------------------------------
# PNG / JPEG / TIFF
# --------------------------------------------------------------------------------------------------------------


def test_png_8bit(tmp_path: Path) -> None:
    stored = quantise(phantom(), 8)
    path = tmp_path / "a.png"
    Image.fromarray(stored).save(path)
    cxr = read_cxr(path)
    assert_cxr(cxr)
    np.testing.assert_array_equal(cxr.image, (stored / 255.0).astype(np.float32))
    assert cxr.spacing is None
    assert cxr.path == path
    assert cxr.meta["format"] == "PNG" and cxr.meta["bits_stored"] == 8
    assert cxr.meta["original_dtype"] == "uint8" and cxr.meta["spacing_source"] is None


def test_png_16bit_with_phys_spacing(tmp_path: Path) -> None:
    stored = quantise(phantom(), 16)
    path = tmp_path / "b.png"
    Image.fromarray(stored).save(path, dpi=(254, 254))  # pHYs: 10000 px/m = 0.1 mm
    cxr = read_cxr(path)
    assert_cxr(cxr)
    np.testing.assert_array_equal(cxr.image, (stored / 65535.0).astype(np.float32))
    assert cxr.meta["bits_stored"] == 16 and cxr.meta["scale"] == "/65535"
    assert cxr.spacing == pytest.approx((0.1, 0.1), rel=1e-3)
    assert cxr.meta["spacing_source"] == "PNG pHYs"


def test_png_rgb_and_rgba_become_luminance(tmp_path: Path) -> None:
    gray = quantise(phantom(), 8)
    rgb = np.stack([gray, gray // 2, 255 - gray], axis=-1).astype(np.uint8)
    expected = (rgb.astype(np.float64) @ [0.299, 0.587, 0.114]) / 255.0
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    rgba = np.concatenate([rgb, np.full((ROWS, COLS, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    for name in ("rgb.png", "rgba.png"):
        cxr = read_cxr(tmp_path / name)
        assert_cxr(cxr)
        np.testing.assert_allclose(cxr.image, expected, atol=1e-6)
    assert "alpha dropped" in read_cxr(tmp_path / "rgba.png").meta["colour_conversion"]


def test_jpeg_8bit_gray_and_rgb(tmp_path: Path) -> None:
    img = phantom()
    Image.fromarray(quantise(img, 8)).save(tmp_path / "g.jpg", quality=95)
    cxr = read_cxr(tmp_path / "g.jpg")
    assert_cxr(cxr)
    assert float(np.abs(cxr.image - img).mean()) < 0.01
    assert cxr.meta["format"] == "JPEG" and cxr.meta["bits_stored"] == 8 and cxr.spacing is None
    rgb = np.repeat(quantise(img, 8)[..., None], 3, axis=-1)
    Image.fromarray(rgb).save(tmp_path / "c.jpeg", quality=95)
    cxr = read_cxr(tmp_path / "c.jpeg")
    assert_cxr(cxr)
    assert float(np.abs(cxr.image - img).mean()) < 0.01


@pytest.mark.parametrize("bits", [12, 16])
def test_jpeg_lossless_high_bit_depth(tmp_path: Path, bits: int) -> None:
    stored = quantise(phantom(), bits)
    path = tmp_path / f"l{bits}.jpg"
    path.write_bytes(imagecodecs.jpeg8_encode(stored, lossless=True, bitspersample=bits))
    cxr = read_cxr(path)
    assert_cxr(cxr)
    np.testing.assert_allclose(cxr.image, stored / (2.0**bits - 1), atol=1e-6)
    assert cxr.meta["bits_stored"] == bits and cxr.meta["jpeg_process"] == "lossless"


@pytest.mark.parametrize(
    ("bits", "resolution", "unit", "spacing"),
    [
        (8, (50.0, 40.0), "CENTIMETER", (0.25, 0.2)),  # x = 50 px/cm (cols), y = 40 px/cm (rows)
        (16, (254.0, 254.0), "INCH", (0.1, 0.1)),
        (16, (72.0, 72.0), "NONE", None),
        (16, (72.0, 72.0), "INCH", None),  # a writer's default dpi, not a measured pixel size
        (8, (96.0, 96.0), "INCH", None),
    ],
)
def test_tiff_bit_depths_and_resolution(tmp_path: Path, bits: int, resolution, unit: str, spacing) -> None:
    stored = quantise(phantom(), bits)
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, stored, photometric="minisblack", resolution=resolution, resolutionunit=unit)
    cxr = read_cxr(path)
    assert_cxr(cxr)
    np.testing.assert_allclose(cxr.image, stored / (2.0**bits - 1), atol=1e-6)
    assert cxr.meta["format"] == "TIFF" and cxr.meta["bits_stored"] == bits
    if spacing is None:
        assert cxr.spacing is None and cxr.meta["spacing_source"] is None
    else:
        assert cxr.spacing == pytest.approx(spacing)
        assert cxr.meta["spacing_source"] == "TIFF resolution"


def test_tiff_jpeg_ycbcr_becomes_luminance(tmp_path: Path) -> None:
    img = phantom()
    gray = quantise(img, 8)
    tint = np.stack([gray, np.clip(gray.astype(int) + 30, 0, 255), gray // 2], axis=-1).astype(np.uint8)
    for name, rgb in (("gray.tif", np.repeat(gray[..., None], 3, axis=-1)), ("tint.tif", tint)):
        # tifffile stores JPEG-compressed RGB as YCbCr (photometric 6) and decodes it back to RGB.
        tifffile.imwrite(tmp_path / name, rgb, photometric="rgb", compression="jpeg", compressionargs={"level": 95})
        with tifffile.TiffFile(tmp_path / name) as tif:
            assert tif.pages.first.photometric == tifffile.PHOTOMETRIC.YCBCR
        cxr = read_cxr(tmp_path / name)
        assert_cxr(cxr)
        assert cxr.meta["photometric_interpretation"] == "YCBCR" and cxr.meta["compression"] == "JPEG"
        assert "luminance" in cxr.meta["colour_conversion"] and cxr.meta["bits_stored"] == 8
        luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
        assert float(np.abs(cxr.image - luma).mean()) < 0.01
    assert float(np.abs(read_cxr(tmp_path / "gray.tif").image - img).mean()) < 0.01
    # Uncompressed YCbCr is handed back unconverted by tifffile: refused rather than misread.
    tifffile.imwrite(tmp_path / "raw.tif", np.repeat(gray[..., None], 3, axis=-1), photometric="ycbcr")
    raises_for(tmp_path / "raw.tif", r"photometric interpretation YCBCR \(compression NONE\) is not supported")


def test_tiff_tiled_compressed_and_miniswhite(tmp_path: Path) -> None:
    stored = quantise(phantom(), 16)
    tifffile.imwrite(tmp_path / "t.tiff", stored, tile=(32, 32), compression="zlib", photometric="minisblack")
    cxr = read_cxr(tmp_path / "t.tiff")
    assert cxr.meta["tiled"] is True
    np.testing.assert_allclose(cxr.image, stored / 65535.0, atol=1e-6)
    # MINISWHITE stores high values as dark: the reader inverts it back to bright = dense.
    tifffile.imwrite(tmp_path / "w.tif", 65535 - stored, photometric="miniswhite")
    cxr = read_cxr(tmp_path / "w.tif")
    assert cxr.meta["inverted"] is True
    np.testing.assert_allclose(cxr.image, stored / 65535.0, atol=1e-6)


def test_content_decides_not_an_unknown_suffix(tmp_path: Path) -> None:
    stored = quantise(phantom(), 16)
    for name in ("noext", "scan.bin", "IM.0001"):
        Image.fromarray(stored).save(tmp_path / name, format="PNG")
        assert read_cxr(tmp_path / name).meta["format"] == "PNG"
    assert detect_format(b"\x89PNG\r\n\x1a\n" + bytes(200)) == "PNG"
    assert detect_format(bytes(128) + b"DICM" + bytes(10)) == "DICOM"
    assert detect_format(b"MM\x00*" + bytes(200)) == "TIFF"
    assert detect_format(b"\xff\xd8\xff\xe0" + bytes(200)) == "JPEG"
    assert detect_format(b"GIF89a" + bytes(200)) is None


# --------------------------------------------------------------------------------------------------------------
# DICOM written here
# --------------------------------------------------------------------------------------------------------------


def dicom_file(path: Path, stored: np.ndarray, *, bits: int = 12, photometric: str = "MONOCHROME2", **tags) -> Path:
    """Write a minimal but valid DICOM Part-10 DX image with the given stored values and extra attributes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Manufacturer = "Test"
    ds.ViewPosition = "PA"
    ds.PatientName = "TEST^DICOM"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


FULL_12 = {"WindowCenter": "2048", "WindowWidth": "4096"}  # LINEAR window mapping 0..4095 onto 0..1 exactly


def test_dicom_monochrome1_and_2_read_back_to_the_same_image(tmp_path: Path) -> None:
    img = phantom()
    stored = quantise(img, 12)
    m2 = read_cxr(dicom_file(tmp_path / "m2.dcm", stored, **FULL_12))
    m1 = read_cxr(dicom_file(tmp_path / "m1.dcm", 4095 - stored, photometric="MONOCHROME1", **FULL_12))
    for cxr in (m1, m2):
        assert_cxr(cxr)
        np.testing.assert_allclose(cxr.image, img, atol=0.5 / 4095 + 1e-6)
        assert cxr.meta["voi"] == "window"
    np.testing.assert_allclose(m1.image, m2.image, atol=1e-6)
    assert m1.meta["inverted"] is True and m2.meta["inverted"] is False
    assert m1.meta["photometric_interpretation"] == "MONOCHROME1"
    # Without any VOI the full min..max range is used, and the two still agree.
    a = read_cxr(dicom_file(tmp_path / "a.dcm", stored))
    b = read_cxr(dicom_file(tmp_path / "b.dcm", 4095 - stored, photometric="MONOCHROME1"))
    assert a.meta["voi"] == "full range"
    np.testing.assert_allclose(a.image, b.image, atol=1e-6)
    assert float(a.image.min()) == 0.0 and float(a.image.max()) == 1.0


def test_dicom_presentation_lut_inverse_inverts_exactly_once(tmp_path: Path) -> None:
    img = phantom()
    inverted = 4095 - quantise(img, 12)
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        path = dicom_file(
            tmp_path / f"{photometric}.dcm",
            inverted,
            photometric=photometric,
            PresentationLUTShape="INVERSE",
            **FULL_12,
        )
        cxr = read_cxr(path)
        assert cxr.meta["inverted"] is True and cxr.meta["presentation_lut_shape"] == "INVERSE"
        np.testing.assert_allclose(cxr.image, img, atol=0.5 / 4095 + 1e-6)
    identity = read_cxr(dicom_file(tmp_path / "id.dcm", quantise(img, 12), PresentationLUTShape="IDENTITY", **FULL_12))
    assert identity.meta["inverted"] is False
    np.testing.assert_allclose(identity.image, img, atol=0.5 / 4095 + 1e-6)


def test_dicom_rescale_and_window(tmp_path: Path) -> None:
    stored = quantise(phantom(), 12)
    slope, intercept, centre, width = 2.0, -1000.0, 2500.0, 3001.0
    path = dicom_file(
        tmp_path / "r.dcm",
        stored,
        RescaleSlope="2",
        RescaleIntercept="-1000",
        WindowCenter=f"{centre:g}",
        WindowWidth=f"{width:g}",
    )
    cxr = read_cxr(path)
    modality = stored * slope + intercept
    # PS3.3 C.11.2.1.2.1 (LINEAR), output range mapped to [0, 1].
    expected = np.clip((modality - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(cxr.image, expected, atol=1e-5)
    assert cxr.meta["rescale_slope"] == 2.0 and cxr.meta["rescale_intercept"] == -1000.0
    assert cxr.meta["window_center"] == centre and cxr.meta["window_width"] == width
    assert (cxr.image == 0).any() and (cxr.image == 1).any()  # the window clips both ends


def test_dicom_multi_valued_window_uses_the_first(tmp_path: Path) -> None:
    stored = quantise(phantom(), 12)
    path = dicom_file(tmp_path / "mw.dcm", stored, WindowCenter=["2048", "1000"], WindowWidth=["4096", "200"])
    cxr = read_cxr(path)
    np.testing.assert_allclose(cxr.image, stored / 4095.0, atol=1e-5)
    assert cxr.meta["window_center"] == 2048.0


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_dicom_voi_lut_functions(tmp_path: Path, function: str) -> None:
    stored = quantise(phantom(), 12)
    centre, width = 1800.0, 2400.0
    path = dicom_file(tmp_path / "f.dcm", stored, WindowCenter="1800", WindowWidth="2400", VOILUTFunction=function)
    cxr = read_cxr(path)
    x = stored.astype(np.float64)
    if function == "LINEAR_EXACT":
        expected = np.clip((x - centre) / width + 0.5, 0.0, 1.0)
    else:
        expected = 1.0 / (1.0 + np.exp(-4.0 * (x - centre) / width))
    np.testing.assert_allclose(cxr.image, expected, atol=1e-5)
    assert cxr.meta["voi_lut_function"] == function


def test_dicom_voi_lut_sequence_on_integer_input(tmp_path: Path) -> None:
    stored = quantise(phantom(), 12)
    lut = np.rint(4095 * np.sqrt(np.arange(4096) / 4095)).astype(np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.add_new("LUTData", "OW", lut.astype("<u2").tobytes())
    # A rescale of 1 / 0 makes the modality output float: the reader must still index the LUT by integers.
    path = dicom_file(
        tmp_path / "lut.dcm",
        stored,
        VOILUTSequence=[item],
        RescaleSlope="1",
        RescaleIntercept="0",
        WindowCenter="100",
        WindowWidth="10",
    )
    cxr = read_cxr(path)
    assert cxr.meta["voi"] == "VOI LUT sequence"
    np.testing.assert_allclose(cxr.image, lut[stored] / float(lut.max()), atol=1e-6)


def test_dicom_voi_lut_sequence_output_uses_its_nominal_range(tmp_path: Path) -> None:
    """PS3.3 C.11.2.1.1: entries of an n-bit VOI LUT range over 0 .. 2**n - 1, and that range is black .. white."""
    stored = quantise(phantom(), 12)
    lut = np.rint(8000 + 32000 * np.arange(4096) / 4095).astype(np.uint16)  # uses only 8000..40000 of 16 bits
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new("LUTData", "OW", lut.astype("<u2").tobytes())
    cxr = read_cxr(dicom_file(tmp_path / "lut16.dcm", stored, VOILUTSequence=[item]))
    assert cxr.meta["voi"] == "VOI LUT sequence" and cxr.meta["voi_output_range"] == (0.0, 65535.0)
    np.testing.assert_allclose(cxr.image, lut[stored] / 65535.0, atol=1e-6)
    # A non-conformant table with entries beyond its declared 12 bits widens the range instead of saturating.
    item.LUTDescriptor = [4096, 0, 12]
    item.LUTData = (lut // 8).astype("<u2").tobytes()  # 1000..5000
    cxr = read_cxr(dicom_file(tmp_path / "wide.dcm", stored, VOILUTSequence=[item]))
    assert cxr.meta["voi_output_range"] == (0.0, 5000.0)
    np.testing.assert_allclose(cxr.image, (lut // 8)[stored] / 5000.0, atol=1e-6)


@pytest.mark.parametrize(
    ("tags", "spacing", "source"),
    [
        ({"PixelSpacing": ["0.15", "0.2"], "ImagerPixelSpacing": ["0.3", "0.3"]}, (0.15, 0.2), "PixelSpacing"),
        (
            {
                "PixelSpacing": ["0", "0"],
                "ImagerPixelSpacing": ["0.2", "0.25"],
                "EstimatedRadiographicMagnificationFactor": "1.25",
            },
            (0.16, 0.2),
            "ImagerPixelSpacing/ERMF",
        ),
        ({"ImagerPixelSpacing": ["0.143", "0.143"]}, (0.143, 0.143), "ImagerPixelSpacing"),
        ({"ImagerPixelSpacing": ["0", "0"]}, None, None),
        ({}, None, None),
    ],
)
def test_dicom_spacing_rules(tmp_path: Path, tags: dict, spacing, source) -> None:
    cxr = read_cxr(dicom_file(tmp_path / "s.dcm", quantise(phantom(), 12), **tags))
    if spacing is None:
        assert cxr.spacing is None
    else:
        assert cxr.spacing == pytest.approx(spacing)
    assert cxr.meta["spacing_source"] == source


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless], ids=["jpeg2000-lossless", "rle-lossless"])
def test_dicom_compressed_transfer_syntaxes_read_back_equal(tmp_path: Path, syntax) -> None:
    stored = quantise(phantom(), 12)
    plain = dicom_file(tmp_path / "plain.dcm", stored, photometric="MONOCHROME1", **FULL_12)
    ds = pydicom.dcmread(plain)
    kwargs = {"encoding_plugin": "pylibjpeg"} if syntax == JPEG2000Lossless else {}
    ds.compress(syntax, **kwargs)
    packed = tmp_path / "packed.dcm"
    ds.save_as(packed, enforce_file_format=True)
    assert pydicom.dcmread(packed).file_meta.TransferSyntaxUID == syntax
    a, b = read_cxr(plain), read_cxr(packed)
    np.testing.assert_array_equal(a.image, b.image)
    assert b.meta["transfer_syntax"] == str(syntax)


def test_dicom_without_a_decoder_names_the_transfer_syntax(tmp_path: Path) -> None:
    path = dicom_file(tmp_path / "jxl.dcm", np.zeros((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"  # JPEG 2000 Part 2 multi-component: no decoder
    ds.PixelData = encapsulate([b"\xff\x0a" + bytes(30)])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    raises_for(path, r"no decoder exists for transfer syntax JPEG 2000 Part 2 .*1\.2\.840\.10008\.1\.2\.4\.92")


# --------------------------------------------------------------------------------------------------------------
# DICOM files shipped with pydicom (on disk; never downloaded)
# --------------------------------------------------------------------------------------------------------------


def pydicom_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    if found is None:
        pytest.skip(f"{name} is not among pydicom's bundled test files")
    return Path(found)


@pytest.mark.parametrize(
    ("name", "shape", "spacing", "modality"),
    [
        ("CT_small.dcm", (128, 128), (0.661468, 0.661468), "CT"),
        ("MR_small.dcm", (64, 64), (0.3125, 0.3125), "MR"),
        ("JPEG2000.dcm", (1024, 256), (2.26, 2.26), "NM"),
        ("693_J2KI.dcm", (512, 512), (0.478516, 0.478516), "CT"),
        ("JPGExtended.dcm", (1024, 256), (2.26, 2.26), "NM"),
    ],
)
def test_real_pydicom_files(name: str, shape, spacing, modality: str) -> None:
    cxr = read_cxr(pydicom_file(name))
    assert_cxr(cxr, shape)
    assert cxr.spacing == pytest.approx(spacing)
    assert cxr.meta["modality"] == modality
    assert cxr.meta["spacing_source"] == "PixelSpacing"
    assert float(cxr.image.std()) > 0.01  # real content, not a constant


@pytest.mark.parametrize(
    "name",
    ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_bigendian.dcm"],
)
def test_real_compressed_files_match_the_uncompressed_original(name: str) -> None:
    reference = read_cxr(pydicom_file("MR_small.dcm"))
    cxr = read_cxr(pydicom_file(name))
    np.testing.assert_allclose(cxr.image, reference.image, atol=1e-6)
    assert cxr.meta["voi"] == "window" and cxr.meta["window_center"] == reference.meta["window_center"]


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("SC_rgb_small_odd.dcm", r"colour DICOM \(PhotometricInterpretation RGB"),
        ("examples_palette.dcm", r"colour DICOM \(PhotometricInterpretation PALETTE COLOR"),
        ("rtdose.dcm", r"multi-frame DICOM \(15 frames\)"),
        ("MR_truncated.dcm", r"cannot decode pixel data .*Explicit VR Little Endian"),
        ("rtplan.dcm", r"has no pixel data \(SOP class RT Plan Storage\)"),
        ("ExplVR_LitEndNoMeta.dcm", r"has no pixel data"),  # no preamble: still recognised as DICOM
    ],
)
def test_real_pydicom_files_refused(name: str, match: str) -> None:
    raises_for(pydicom_file(name), match)


# --------------------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------------------


def png_bytes() -> bytes:
    return imagecodecs.png_encode(quantise(phantom(), 16))


def test_missing_empty_and_directory(tmp_path: Path) -> None:
    raises_for(tmp_path / "nope.png", "no such file")
    (tmp_path / "empty.png").write_bytes(b"")
    raises_for(tmp_path / "empty.png", r"file is empty \(0 bytes\)")
    (tmp_path / "dir.dcm").mkdir()
    raises_for(tmp_path / "dir.dcm", "is a directory")


def test_truncated_and_corrupt_png(tmp_path: Path) -> None:
    data = png_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    raises_for(tmp_path / "half.png", "PNG is truncated")
    (tmp_path / "no_end.png").write_bytes(data[:-12])
    raises_for(tmp_path / "no_end.png", "IEND chunk is missing")
    corrupt = bytearray(data)
    corrupt[60] ^= 0xFF  # inside the first IDAT
    (tmp_path / "crc.png").write_bytes(bytes(corrupt))
    raises_for(tmp_path / "crc.png", "CRC mismatch in chunk 'IDAT'")


def test_random_bytes_named_png(tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    raises_for(path, r"content is not PNG, JPEG, TIFF or DICOM .*although the name claims PNG \(\.png\)")


@pytest.mark.parametrize(("name", "claims"), [("x.dcm", "DICOM"), ("x.jpg", "JPEG"), ("x.TIF", "TIFF")])
def test_png_named_as_another_format(tmp_path: Path, name: str, claims: str) -> None:
    path = tmp_path / name
    path.write_bytes(png_bytes())
    raises_for(path, rf"content is PNG but the name claims {claims}")


def test_dicom_named_png(tmp_path: Path) -> None:
    dcm = dicom_file(tmp_path / "a.dcm", quantise(phantom(), 12))
    target = tmp_path / "a.png"
    os.replace(dcm, target)
    raises_for(target, "content is DICOM but the name claims PNG")


def test_truncated_jpeg_tiff_and_dicom(tmp_path: Path) -> None:
    img = quantise(phantom(), 8)
    Image.fromarray(img).save(tmp_path / "ok.jpg", quality=90)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) * 2 // 3])
    raises_for(tmp_path / "cut.jpg", "JPEG is truncated")
    tifffile.imwrite(tmp_path / "ok.tif", quantise(phantom(), 16))
    data = (tmp_path / "ok.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    raises_for(tmp_path / "cut.tif", "TIFF")
    data = dicom_file(tmp_path / "ok.dcm", quantise(phantom(), 12)).read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 4000])
    raises_for(tmp_path / "cut.dcm", "DICOM|pixel data")


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    path = dicom_file(tmp_path / "px.dcm", quantise(phantom(), 12))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    raises_for(path, "DICOM file has no pixel data")


def test_colour_and_multiframe_dicom_written_here(tmp_path: Path) -> None:
    rgb = dicom_file(tmp_path / "rgb.dcm", np.zeros((8, 8), np.uint16), bits=8)
    ds = pydicom.dcmread(rgb)
    ds.PhotometricInterpretation = "RGB"
    ds.SamplesPerPixel, ds.PlanarConfiguration, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 3, 0, 8, 8, 7
    ds.PixelData = bytes(8 * 8 * 3)
    ds.save_as(rgb, enforce_file_format=True)
    raises_for(rgb, "colour DICOM")
    frames = dicom_file(tmp_path / "mf.dcm", np.zeros((3 * 8, 8), np.uint16), NumberOfFrames=3)
    ds = pydicom.dcmread(frames)
    ds.Rows = 8
    ds.save_as(frames, enforce_file_format=True)
    raises_for(frames, r"multi-frame DICOM \(3 frames\)")


def test_multipage_and_pyramidal_tiff_refused(tmp_path: Path) -> None:
    stack = np.stack([quantise(phantom(), 8)] * 3)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    raises_for(tmp_path / "stack.tif", r"multi-page TIFF \(3 pages\)")
    with tifffile.TiffWriter(tmp_path / "pyr.tif") as tw:
        base = quantise(phantom(), 8)
        tw.write(base, subifds=1, photometric="minisblack")
        tw.write(base[::2, ::2], subfiletype=1, photometric="minisblack")
    raises_for(tmp_path / "pyr.tif", "pyramidal TIFF")


def test_jpeg_with_trailing_bytes_reads_and_animated_png_is_refused(tmp_path: Path) -> None:
    img = quantise(phantom(), 8)
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=90)
    (tmp_path / "b.jpg").write_bytes((tmp_path / "a.jpg").read_bytes() + b"vendor trailer")
    np.testing.assert_array_equal(read_cxr(tmp_path / "b.jpg").image, read_cxr(tmp_path / "a.jpg").image)
    frames = [Image.fromarray(img), Image.fromarray(255 - img)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    raises_for(tmp_path / "anim.png", r"animated PNG \(2 frames\)")
