"""Writing a radiograph as a DICOM Part-10 CR or DX file with varied, standard-conforming encodings."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..._fsutil import atomic_write_bytes
from ...errors import ConfigError


def _ds(value: float) -> str:
    """A Decimal String (VR DS, at most 16 characters) as precise as it fits."""
    for digits in range(15, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"{value} does not fit a DICOM decimal string")  # pragma: no cover


VENDORS = (
    ("Synthetic Radiography Co.", "SynthDR 3000"),
    ("Phantom Imaging", "PX-CR 12"),
    ("Imaginary Medical Systems", "Imagina DX"),
)
"""Fictitious (Manufacturer, ManufacturerModelName) pairs that :func:`write_cxr_dicom`'s ``vendor`` indexes."""


def write_cxr_dicom(
    path: str | os.PathLike[str],
    image: np.ndarray,
    *,
    spacing_mm: float,
    uid_entropy: Sequence[str],
    modality: str = "DX",
    bits_stored: int = 12,
    monochrome1: bool = False,
    rescale: tuple[float, float] | None = None,
    spacing_tag: str = "PixelSpacing",
    magnification: float = 1.1,
    window: str = "LINEAR",
    vendor: int = 0,
    instance: int = 1,
    patient_id: str = "SYNTH",
) -> Path:
    """Write a float image (rows, cols) in [0, 1], bright = dense, as a DICOM Part-10 CR or DX radiograph.

    The window centre/width written covers the whole modality output range, so
    :func:`napari_patchdx.io.cxr.read_cxr` returns ``image`` back within one quantisation step of
    ``bits_stored``.

    Args:
        path: the target file (written atomically).
        image: float (rows, cols) in [0, 1].
        spacing_mm: the true (isotropic) pixel spacing in millimetres at the patient.
        uid_entropy: strings that seed the deterministic UIDs (study, series, instance).
        modality: "CR" (Computed Radiography Image Storage) or "DX" (Digital X-Ray Image Storage - For
            Presentation).
        bits_stored: 12 to 16; stored values are unsigned 16-bit words.
        monochrome1: store inverted (high values dark) as MONOCHROME1 (DX adds Presentation LUT Shape INVERSE).
        rescale: (slope, intercept) of the Modality LUT, or None to leave it out.
        spacing_tag: "PixelSpacing" (plus ImagerPixelSpacing at the detector for DX), "ImagerPixelSpacing/ERMF"
            (detector spacing and the magnification factor ``magnification``) or "ImagerPixelSpacing".
        window: "LINEAR", "LINEAR_EXACT" or "MULTI" (two LINEAR windows, the first exact).
        vendor: index into a small list of fictitious manufacturers.
        instance: Instance Number.
        patient_id: Patient ID (and the patient name's family part).

    Returns:
        The path written.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path = Path(path)
    if not 12 <= bits_stored <= 16:
        raise ConfigError(f"bits_stored must be 12 to 16, got {bits_stored}")
    if modality not in ("CR", "DX"):
        raise ConfigError(f"modality must be 'CR' or 'DX', got {modality!r}")
    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if img.ndim != 2:
        raise ConfigError(f"image must be 2-D, got shape {img.shape}")
    top = 2**bits_stored - 1
    values = 1.0 - img if monochrome1 else img
    stored = np.rint(values * top).astype("<u2")

    sop_class = "1.2.840.10008.5.1.4.1.1.1" if modality == "CR" else "1.2.840.10008.5.1.4.1.1.1.1"
    entropy = ["napari-patchdx synth_cxr", *map(str, uid_entropy)]
    study = generate_uid(entropy_srcs=[*entropy, "study"])
    series = generate_uid(entropy_srcs=[*entropy, "series"])
    instance_uid = generate_uid(entropy_srcs=[*entropy, "instance"])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = instance_uid
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer, ds.ManufacturerModelName = VENDORS[vendor % len(VENDORS)]
    ds.ReferringPhysicianName = ""
    ds.PatientName = f"{patient_id}^SYNTHETIC"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = int(instance)
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
        ds.DetectorType = "SCINTILLATOR"

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = int(stored.shape[0]), int(stored.shape[1])
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0

    sp = _ds(spacing_mm)
    if spacing_tag == "PixelSpacing":
        ds.PixelSpacing = [sp, sp]
        if modality == "DX":
            ds.ImagerPixelSpacing = [_ds(spacing_mm * magnification)] * 2
    elif spacing_tag == "ImagerPixelSpacing/ERMF":
        ds.ImagerPixelSpacing = [_ds(spacing_mm * magnification)] * 2
        ds.EstimatedRadiographicMagnificationFactor = _ds(magnification)
    elif spacing_tag == "ImagerPixelSpacing":
        ds.ImagerPixelSpacing = [sp, sp]
    else:
        raise ConfigError(f"unknown spacing_tag {spacing_tag!r}")

    slope, intercept = rescale if rescale is not None else (1.0, 0.0)
    if rescale is not None:
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleType = "US"
    m_lo, m_hi = sorted((intercept, top * slope + intercept))
    if window == "LINEAR_EXACT":
        ds.WindowCenter = _ds((m_lo + m_hi) / 2)
        ds.WindowWidth = _ds(m_hi - m_lo)
        ds.VOILUTFunction = "LINEAR_EXACT"
    elif window in ("LINEAR", "MULTI"):
        centre, width = (m_lo + m_hi) / 2 + 0.5, m_hi - m_lo + 1
        if window == "MULTI":
            ds.WindowCenter = [_ds(centre), _ds(centre)]
            ds.WindowWidth = [_ds(width), _ds(width / 2)]
            ds.WindowCenterWidthExplanation = ["FULL", "NARROW"]
        else:
            ds.WindowCenter = _ds(centre)
            ds.WindowWidth = _ds(width)
    else:
        raise ConfigError(f"unknown window {window!r}")
    ds.PixelData = stored.tobytes()

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    atomic_write_bytes(path, buf.getvalue(), mkdir=True)
    return path
