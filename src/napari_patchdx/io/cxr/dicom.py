"""DICOM X-rays through the display pipeline of PS3.3 / PS3.4, with pydicom.

Stored values -> Modality LUT (rescale slope/intercept or LUT sequence) -> VOI LUT (LUT sequence, else window
centre/width, else the image's own min..max) -> the VOI output range (for a LUT sequence its nominal
0 .. 2**bits - 1) mapped to [0, 1] -> one inversion for MONOCHROME1 or a Presentation LUT Shape of INVERSE.
Spacing follows PixelSpacing, else ImagerPixelSpacing (divided by the estimated radiographic magnification).
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputFileError
from .pixels import positive_spacing

__all__ = ["read_dicom"]


def _ds_float(value: Any) -> float | None:
    """A DS/IS/FD value (or the first of a multi-valued one) as float; None if absent or not a number."""
    if value is None:
        return None
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        out = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return out if math.isfinite(out) else None


def _ds_pair(value: Any) -> tuple[float, float] | None:
    """A two-valued spacing attribute as (row, col) floats; None if absent, malformed, zero or negative."""
    if value is None:
        return None
    try:
        vals = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    if len(vals) != 2:
        return None
    return positive_spacing(vals[0], vals[1])


def _dicom_spacing(ds: Any) -> tuple[tuple[float, float] | None, str | None, float | None]:
    """(spacing, source, magnification factor) by the PixelSpacing > ImagerPixelSpacing(/ERMF) rule."""
    pixel = _ds_pair(ds.get("PixelSpacing"))
    if pixel is not None:
        return pixel, "PixelSpacing", None
    imager = _ds_pair(ds.get("ImagerPixelSpacing"))
    if imager is None:
        return None, None, None
    ermf = _ds_float(ds.get("EstimatedRadiographicMagnificationFactor"))
    if ermf is not None and ermf > 0:
        return (imager[0] / ermf, imager[1] / ermf), "ImagerPixelSpacing/ERMF", ermf
    return imager, "ImagerPixelSpacing", None


def _windowing_output_range(ds: Any) -> tuple[float, float]:
    """The (y_min, y_max) that ``pydicom.pixels.apply_windowing`` maps a window onto (same rules)."""
    bits = int(ds.BitsStored)
    if ds.get("ModalityLUTSequence"):
        y_min, y_max = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        y_min, y_max = 0.0, float(2**bits - 1)
    else:
        y_min, y_max = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        s, i = float(slope), float(intercept)
        y_min, y_max = y_min * s + i, y_max * s + i
    return min(y_min, y_max), max(y_min, y_max)


def read_dicom(path: Path, data: bytes) -> tuple[np.ndarray, tuple[float, float] | None, dict[str, Any]]:
    """(image in [0, 1], (row, col) spacing in mm or None, meta) of DICOM bytes ``data`` from ``path``."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing
    from pydicom.uid import UID

    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=not preamble)
    except Exception as exc:
        raise InputFileError(path, f"cannot parse DICOM: {type(exc).__name__}: {exc}") from exc

    sop_class = str(ds.get("SOPClassUID", ""))
    if "PixelData" not in ds:
        what = f" (SOP class {UID(sop_class).name})" if sop_class else ""
        raise InputFileError(path, f"DICOM file has no pixel data{what}")
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if tsyntax is None:
        # No transfer syntax: the encoding pydicom detected while parsing names the (native) one.
        implicit, little = getattr(ds, "original_encoding", (True, True))
        if implicit:
            tsyntax = pydicom.uid.ImplicitVRLittleEndian
        else:
            tsyntax = pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
        if file_meta is None:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = tsyntax
    tsyntax = UID(str(tsyntax))
    ts_text = f"{tsyntax.name} ({tsyntax})" if tsyntax.name != str(tsyntax) else str(tsyntax)
    if not tsyntax.is_transfer_syntax:
        raise InputFileError(path, f"unknown transfer syntax {ts_text}; no decoder exists for it")

    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        frames = 1
    if frames > 1:
        raise InputFileError(path, f"multi-frame DICOM ({frames} frames); expected a single 2-D radiograph")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    if not photometric:
        raise InputFileError(path, "DICOM image lacks the required attribute PhotometricInterpretation")
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputFileError(
            path,
            f"colour DICOM (PhotometricInterpretation {photometric}, {samples} samples per pixel) "
            "is not supported; expected MONOCHROME1 or MONOCHROME2",
        )
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored"):
        if ds.get(keyword) is None:
            raise InputFileError(path, f"DICOM image lacks the required attribute {keyword}")

    if tsyntax.is_compressed:
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError as exc:
            raise InputFileError(path, f"no decoder exists for transfer syntax {ts_text}") from exc
        if not decoder.is_available:
            missing = "; ".join(f"{k}: {', '.join(v)}" for k, v in decoder.missing_dependencies.items())
            raise InputFileError(
                path, f"no installed decoder plugin for transfer syntax {ts_text} (missing: {missing})"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = ds.pixel_array
    except NotImplementedError as exc:
        raise InputFileError(path, f"no decoder exists for transfer syntax {ts_text}: {exc}") from exc
    except Exception as exc:
        raise InputFileError(
            path, f"cannot decode pixel data (transfer syntax {ts_text}): {type(exc).__name__}: {exc}"
        ) from exc
    if stored.ndim != 2:
        raise InputFileError(path, f"DICOM pixel data has shape {stored.shape}; expected a single 2-D image")

    # 1. Modality LUT: rescale slope / intercept or a Modality LUT Sequence.
    modality = apply_modality_lut(stored, ds)

    # 2. VOI: a VOI LUT Sequence on integer input, else window centre / width, else the full value range.
    voi_info: dict[str, Any] = {}
    voi_seq = ds.get("VOILUTSequence")
    has_lut = bool(voi_seq) and all(voi_seq[0].get(k) is not None for k in ("LUTDescriptor", "LUTData"))
    has_window = ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None
    out: np.ndarray | None = None
    if has_lut:
        ints = modality
        if not np.issubdtype(modality.dtype, np.integer):
            ints = np.rint(modality).astype(np.int64)  # a LUT indexes integers; never feed it floats
        try:
            descriptor = [int(v) for v in voi_seq[0].LUTDescriptor]
            entries = descriptor[0] or 2**16
            # PS3.3 C.11.2.1.1: LUT entries range over 0 .. 2**n - 1 (n = third LUT Descriptor value), and that
            # nominal range, not the part a given table happens to use, is what becomes P-values (black .. white).
            # Entries beyond it (a non-conformant table) widen it rather than saturate.
            table = apply_voi(np.arange(descriptor[1], descriptor[1] + entries, dtype=np.int64), ds, 0)
            lo, hi = 0.0, max(float(2 ** descriptor[2] - 1), float(np.max(table)))
            out = apply_voi(ints, ds, 0).astype(np.float64)
            voi_info = {"voi": "VOI LUT sequence", "voi_lut_entries": entries, "voi_output_range": (lo, hi)}
        except Exception as exc:
            voi_info = {"voi_error": f"VOI LUT sequence unusable ({type(exc).__name__}: {exc})"}
            out = None
    if out is None and has_window:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = apply_windowing(np.asarray(modality, dtype=np.float64), ds, 0)
            lo, hi = _windowing_output_range(ds)
            voi_info.update(
                {
                    "voi": "window",
                    "window_center": _ds_float(ds.WindowCenter),
                    "window_width": _ds_float(ds.WindowWidth),
                    "voi_lut_function": str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper(),
                    "voi_output_range": (lo, hi),
                }
            )
        except Exception as exc:
            voi_info["voi_error"] = f"window unusable ({type(exc).__name__}: {exc})"
            out = None
    if out is None:
        out = np.asarray(modality, dtype=np.float64)
        lo, hi = float(out.min()), float(out.max())
        voi_info["voi"] = "full range"
        voi_info["voi_output_range"] = (lo, hi)

    # 3. Map the VOI output range to [0, 1]; a constant image becomes all zeros.
    image = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)

    # 4. One inversion for MONOCHROME1 and/or a Presentation LUT Shape of INVERSE (they describe the same one).
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    inverted = photometric == "MONOCHROME1" or shape == "INVERSE"
    if inverted:
        image = 1.0 - image

    spacing, source, ermf = _dicom_spacing(ds)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    meta: dict[str, Any] = {
        "modality": str(ds.get("Modality", "")) or None,
        "sop_class_uid": sop_class or None,
        "sop_class": UID(sop_class).name if sop_class else None,
        "photometric_interpretation": photometric,
        "presentation_lut_shape": shape or None,
        "inverted": inverted,
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.BitsStored),
        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
        "original_dtype": str(stored.dtype),
        "rescale_slope": _ds_float(slope),
        "rescale_intercept": _ds_float(intercept),
        "modality_lut_sequence": bool(ds.get("ModalityLUTSequence")),
        "manufacturer": str(ds.get("Manufacturer", "")) or None,
        "model": str(ds.get("ManufacturerModelName", "")) or None,
        "view_position": str(ds.get("ViewPosition", "")) or None,
        "body_part": str(ds.get("BodyPartExamined", "")) or None,
        "transfer_syntax": str(tsyntax),
        "transfer_syntax_name": tsyntax.name,
        "dicom_preamble": preamble,
        "spacing_source": source,
        "pixel_spacing": _ds_pair(ds.get("PixelSpacing")),
        "imager_pixel_spacing": _ds_pair(ds.get("ImagerPixelSpacing")),
        "estimated_magnification": ermf,
        **voi_info,
    }
    return image, spacing, meta
