"""Test helper: a JPEG-tiled pyramidal TIFF rewritten as a DICOM whole-slide image series, with pydicom alone.

One instance (one ``.dcm`` file) per pyramid level, TILED_FULL, JPEG Baseline transfer syntax. The compressed
tiles are copied byte for byte from the TIFF into the frames (the TIFF tiles of the synthetic slides and of
``write_pyramid`` are complete JFIF streams, YCbCr 4:2:0), so the DICOM holds exactly the pixels of the TIFF.
Pixel spacing (mm) comes from the TIFF's resolution tags, per level.

No conversion package is needed (wsidicom / wsidicomizer would bring libturbojpeg and opentile for the same
byte copy); what OpenSlide's DICOM reader checks is written: SOP class, Series Instance UID, ImageType, transfer
syntax, pixel format tags, Total Pixel Matrix size, tile size and Shared Functional Groups pixel spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pydicom
import tifffile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


def _level_mpp(page: tifffile.TiffPage) -> tuple[float, float] | None:
    """(row, col) microns per pixel of a page from its resolution tags (centimetre unit), or None."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags or page.resolutionunit != 3:
        return None
    xn, xd = tags["XResolution"].value
    yn, yd = tags["YResolution"].value
    return (1e4 * yd / yn, 1e4 * xd / xn)


def _frames(tif: tifffile.TiffFile, page: tifffile.TiffPage) -> list[bytes]:
    if page.jpegtables is not None:
        raise ValueError(f"{tif.filename}: tiles share JPEGTables; this helper copies only complete JPEG tiles")
    fh = tif.filehandle
    out = []
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
        fh.seek(offset)
        out.append(fh.read(count))
    return out


def write_dicom_wsi(
    tiff: Path,
    out_dir: Path,
    *,
    prefix: str = "level",
    seed: str | None = None,
    levels: Sequence[int] | None = None,
) -> list[Path]:
    """Write the levels of ``tiff`` as one DICOM-WSI series in ``out_dir`` (``<prefix>-<level>.dcm``).

    Args:
        tiff: a tiled TIFF pyramid whose pages are JPEG-compressed YCbCr (one page per level, level 0 first).
        out_dir: the folder (created); every instance of the series goes there, as OpenSlide expects.
        prefix: start of the file names.
        seed: makes the UIDs deterministic (default: the TIFF's name); two series need different seeds.
        levels: which levels to write (default all) - to make a series with instances missing.

    Returns:
        The files written, level order.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    entropy = ["napari-patchdx test dicom-wsi", seed or tiff.name]
    study = generate_uid(entropy_srcs=[*entropy, "study"])
    series = generate_uid(entropy_srcs=[*entropy, "series"])
    frame_of_reference = generate_uid(entropy_srcs=[*entropy, "frame"])
    written: list[Path] = []
    with tifffile.TiffFile(tiff) as tif:
        pages = [p for p in tif.pages if p.is_tiled and p.compression == 7]
        h0, w0 = pages[0].shape[:2]
        mpp0 = _level_mpp(pages[0])
        for k, page in enumerate(pages):
            if levels is not None and k not in levels:
                continue
            if page.photometric != 6 or page.samplesperpixel != 3:
                raise ValueError(f"{tiff}: level {k} is not YCbCr JPEG (photometric {page.photometric})")
            h, w = page.shape[:2]
            th, tw = page.tilelength, page.tilewidth
            instance = generate_uid(entropy_srcs=[*entropy, f"level {k}"])
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = WSI_SOP_CLASS
            meta.MediaStorageSOPInstanceUID = instance
            meta.TransferSyntaxUID = JPEGBaseline8Bit
            ds = Dataset()
            ds.file_meta = meta
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.ImageType = (
                ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"] if k == 0 else ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
            )
            ds.SOPClassUID = WSI_SOP_CLASS
            ds.SOPInstanceUID = instance
            ds.StudyInstanceUID = study
            ds.SeriesInstanceUID = series
            ds.FrameOfReferenceUID = frame_of_reference
            ds.Modality = "SM"
            ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime = "20240101", "120000", "20240101", "120000"
            ds.AcquisitionDateTime = "20240101120000"
            ds.PatientName, ds.PatientID, ds.StudyID, ds.AccessionNumber = "SYNTHETIC", "synthetic", "1", ""
            ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
            ds.Manufacturer = "napari-patchdx tests"
            ds.ContainerIdentifier = seed or tiff.stem
            ds.VolumetricProperties = "VOLUME"
            ds.SpecimenLabelInImage = "NO"
            ds.BurnedInAnnotation = "NO"
            ds.FocusMethod = "AUTO"
            ds.ExtendedDepthOfField = "NO"
            ds.DimensionOrganizationType = "TILED_FULL"
            ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = h, w
            ds.TotalPixelMatrixFocalPlanes = 1
            ds.NumberOfOpticalPaths = 1
            ds.Rows, ds.Columns = th, tw
            ds.NumberOfFrames = len(page.dataoffsets)
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "YBR_FULL_422"
            ds.PlanarConfiguration = 0
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.LossyImageCompression = "01"
            ds.LossyImageCompressionMethod = "ISO_10918_1"
            ds.ImagedVolumeWidth = ds.ImagedVolumeHeight = ds.ImagedVolumeDepth = 1.0
            if mpp0 is not None:
                ds.ImagedVolumeHeight = h0 * mpp0[0] / 1000.0
                ds.ImagedVolumeWidth = w0 * mpp0[1] / 1000.0
                measures = Dataset()
                # DICOM Pixel Spacing: (row spacing, column spacing) in mm, i.e. (y, x)
                measures.PixelSpacing = [mpp0[0] * h0 / h / 1000.0, mpp0[1] * w0 / w / 1000.0]
                measures.SliceThickness = 0.001
                shared = Dataset()
                shared.PixelMeasuresSequence = [measures]
                ds.SharedFunctionalGroupsSequence = [shared]
            path_item = Dataset()
            path_item.OpticalPathIdentifier = "1"
            illumination = Dataset()
            illumination.CodeValue, illumination.CodingSchemeDesignator = "111744", "DCM"
            illumination.CodeMeaning = "Brightfield illumination"
            path_item.IlluminationTypeCodeSequence = [illumination]
            ds.OpticalPathSequence = [path_item]
            ds.PixelData = encapsulate(_frames(tif, page), has_bot=True)
            ds["PixelData"].VR = "OB"
            path = out_dir / f"{prefix}-{k}.dcm"
            pydicom.dcmwrite(path, ds, enforce_file_format=True)
            written.append(path)
    return written
