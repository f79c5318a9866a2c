"""Chest X-ray reading: PNG, JPEG, TIFF and DICOM into one bright-is-dense float image.

Every reader returns a :class:`CxrImage` whose ``image`` is float32 in [0, 1], shaped (rows, cols) exactly as
stored in the file (never resized), with bright meaning dense (bone white, air black), and whose ``spacing`` is
the (row, col) pixel spacing in millimetres, or None when the file does not say.

The format is detected from the file's content (magic bytes), never from its name. A name whose extension
claims another format than the content is refused, so a PNG saved as ``.dcm`` does not slip through.

DICOM follows the display pipeline of PS3.3 / PS3.4: stored values -> Modality LUT (rescale slope/intercept or
LUT sequence) -> VOI LUT (LUT sequence, else window centre/width, else the image's own min..max) -> the VOI
output range (for a LUT sequence its nominal 0 .. 2**bits - 1) mapped to [0, 1] -> one inversion for MONOCHROME1
or a Presentation LUT Shape of INVERSE.
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputFileError
from .tiffmeta import TIFF_MAGIC, resolution_um

__all__ = ["CxrImage", "detect_format", "read_cxr"]

#: File name extensions and the format each one claims. Other extensions (or none, common for DICOM) claim
#: nothing, and the content alone decides.
_SUFFIX_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".dcm": "DICOM",
    ".dicom": "DICOM",
    ".dic": "DICOM",
}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# ITU-R BT.601 luma weights, the ones Pillow's "L" conversion uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)
_PNG_COLOUR_TYPES = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}


@dataclass(eq=False)
class CxrImage:
    """One chest radiograph, ready for display and analysis.

    Attributes:
        image: float32 array (rows, cols) in [0, 1] at the file's native shape; bright = dense (bone white,
            air black) whatever the file's photometric convention.
        spacing: (row, col) pixel spacing in millimetres, or None when the file carries none (or zero).
        meta: key header fields: always ``format`` ("PNG", "JPEG", "TIFF", "DICOM"), ``bits_stored``,
            ``original_dtype``, ``spacing_source`` ("PixelSpacing", "ImagerPixelSpacing/ERMF",
            "ImagerPixelSpacing", "TIFF resolution", "PNG pHYs" or None) and ``inverted`` (whether the reader
            inverted the stored values); DICOM adds modality, photometric interpretation, manufacturer, view
            position, transfer syntax, rescale, the VOI step used and more. No patient-identifying field is
            copied.
        path: the file read, or None.
    """

    image: np.ndarray
    spacing: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of ``image``."""
        return (int(self.image.shape[0]), int(self.image.shape[1]))


# --------------------------------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------------------------------


def _looks_like_raw_dicom(head: bytes) -> bool:
    """True for a DICOM data set written without the 128-byte preamble and "DICM" (pre-Part-10 files).

    Such files start with a group 0x0002 or 0x0008 element: little-endian followed by a two-letter explicit
    VR or by a small implicit-VR length, or big-endian followed by a two-letter VR.
    """
    if len(head) < 8:
        return False
    explicit = head[4:6].isalpha() and head[4:6].isupper()
    if head[:2] in (b"\x00\x02", b"\x00\x08"):
        return explicit
    if head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    return explicit or struct.unpack("<I", head[4:8])[0] < 1024


def detect_format(head: bytes) -> str | None:
    """Return "DICOM", "PNG", "JPEG" or "TIFF" from a file's first bytes (at least 132 of them), else None."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "DICOM"
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:4] in TIFF_MAGIC:
        return "TIFF"
    if _looks_like_raw_dicom(head):
        return "DICOM"
    return None


def read_cxr(path: str | os.PathLike[str]) -> CxrImage:
    """Read a chest X-ray from a PNG, JPEG, TIFF or DICOM file.

    Args:
        path: the file. Its format is taken from its content; an extension claiming another format is an error.

    Returns:
        A :class:`CxrImage`: float32 (rows, cols) image in [0, 1], bright = dense, native shape; (row, col)
        spacing in millimetres or None; header fields in ``meta``.

    Raises:
        InputFileError: the file is missing, empty, truncated, corrupt, of an unrecognised or unsupported kind
            (multi-frame, colour DICOM, multi-page or pyramidal TIFF, ...), named as another format than its
            content, or needs a decoder that is not installed. The message starts with the path.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such file")
    if p.is_dir():
        raise InputFileError(p, "is a directory, not an image file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputFileError(p, f"cannot read the file: {exc.strerror or exc}") from exc
    if not data:
        raise InputFileError(p, "file is empty (0 bytes)")

    fmt = detect_format(data[:132])
    claimed = _SUFFIX_FORMATS.get(p.suffix.lower())
    if fmt is None:
        start = data[:8].hex(" ")
        problem = f"content is not PNG, JPEG, TIFF or DICOM (first bytes: {start}; {len(data)} bytes in all)"
        if claimed is not None:
            problem += f", although the name claims {claimed} ({p.suffix})"
        raise InputFileError(p, problem)
    if claimed is not None and claimed != fmt:
        raise InputFileError(
            p, f"content is {fmt} but the name claims {claimed} ({p.suffix}); rename the file to match"
        )

    reader = {"PNG": _read_png, "JPEG": _read_jpeg, "TIFF": _read_tiff, "DICOM": _read_dicom}[fmt]
    image, spacing, meta = reader(p, data)
    image = np.ascontiguousarray(np.clip(image, 0.0, 1.0), dtype=np.float32)
    if image.ndim != 2 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputFileError(p, f"decoded pixel array has shape {image.shape}; expected a 2-D image")
    if not np.isfinite(image).all():
        raise InputFileError(p, "decoded pixel values are not all finite")
    meta = {"format": fmt, **meta}
    meta.setdefault("inverted", False)
    meta.setdefault("spacing_source", None)
    return CxrImage(image=image, spacing=spacing, meta=meta, path=p)


# --------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------


def _to_gray(arr: np.ndarray, path: Path, what: str) -> tuple[np.ndarray, str]:
    """Reduce (rows, cols[, channels]) to (rows, cols): alpha dropped, RGB converted to BT.601 luminance."""
    if arr.ndim == 2:
        return arr, "grayscale"
    if arr.ndim == 3 and arr.shape[2] in (1, 2):
        return arr[..., 0], "grayscale" if arr.shape[2] == 1 else "grayscale (alpha dropped)"
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        gray = arr[..., :3].astype(np.float64) @ _LUMA
        note = "RGB -> luminance" if arr.shape[2] == 3 else "RGBA -> luminance (alpha dropped)"
        return gray, note
    raise InputFileError(path, f"{what} decodes to shape {arr.shape}; expected a single 2-D image")


def _scale_unsigned(arr: np.ndarray, bits: int, path: Path, what: str) -> np.ndarray:
    """Map unsigned integers of ``bits`` significant bits (8 -> /255, 16 -> /65535) to float [0, 1]."""
    if not 1 <= bits <= 16:
        raise InputFileError(path, f"{what} has {bits} bits per sample; expected 1 to 16")
    return arr.astype(np.float64) / float(2**bits - 1)


def _positive_spacing(row: float, col: float) -> tuple[float, float] | None:
    """Return (row, col) when both are finite and > 0, else None."""
    if all(math.isfinite(v) and v > 0 for v in (row, col)):
        return (float(row), float(col))
    return None


# --------------------------------------------------------------------------------------------------------------
# PNG
# --------------------------------------------------------------------------------------------------------------


def _png_chunks(path: Path, data: bytes) -> dict[str, bytes]:
    """Walk the chunk list, checking lengths and CRCs; return the first payload of each chunk type."""
    chunks: dict[str, bytes] = {}
    pos = len(_PNG_SIGNATURE)
    seen_end = False
    while pos < len(data):
        if pos + 8 > len(data):
            raise InputFileError(path, f"PNG is truncated: a chunk header is cut off at byte {pos}")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            name = ctype.decode("latin-1")
            raise InputFileError(
                path, f"PNG is truncated: chunk {name!r} needs {length} bytes but the file ends at {len(data)}"
            )
        payload = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : end])
        name = ctype.decode("latin-1")
        if zlib.crc32(ctype + payload) & 0xFFFFFFFF != crc:
            raise InputFileError(path, f"PNG is corrupt: CRC mismatch in chunk {name!r} at byte {pos}")
        chunks.setdefault(name, payload)
        pos = end
        if name == "IEND":
            seen_end = True
            break
    if "IHDR" not in chunks:
        raise InputFileError(path, "PNG has no IHDR header chunk")
    if not seen_end:
        raise InputFileError(path, "PNG is truncated: the IEND chunk is missing")
    if "IDAT" not in chunks:
        raise InputFileError(path, "PNG has no image data (no IDAT chunk)")
    return chunks


def _read_png(path: Path, data: bytes) -> tuple[np.ndarray, tuple[float, float] | None, dict[str, Any]]:
    import imagecodecs

    chunks = _png_chunks(path, data)
    if "acTL" in chunks and len(chunks["acTL"]) >= 4:
        frames = struct.unpack(">I", chunks["acTL"][:4])[0]
        raise InputFileError(path, f"animated PNG ({frames} frames); expected a single image")
    ihdr = chunks["IHDR"]
    if len(ihdr) != 13:
        raise InputFileError(path, f"PNG IHDR chunk has {len(ihdr)} bytes; expected 13")
    width, height, bit_depth, colour_type = struct.unpack(">IIBB", ihdr[:10])
    try:
        arr = imagecodecs.png_decode(data)
    except Exception as exc:
        raise InputFileError(path, f"cannot decode PNG: {exc}") from exc
    if arr.shape[:2] != (height, width):
        raise InputFileError(path, f"PNG decodes to {arr.shape[:2]} but its header says {(height, width)}")
    gray, colour = _to_gray(arr, path, "PNG")
    # Bit depths below 8 are expanded to the full 8-bit range by the decoder; palettes expand to 8-bit RGB.
    bits = 16 if arr.dtype == np.uint16 else 8
    image = _scale_unsigned(gray, bits, path, "PNG")

    spacing = None
    source = None
    phys = chunks.get("pHYs")
    if phys is not None and len(phys) == 9:
        ppu_x, ppu_y, unit = struct.unpack(">IIB", phys)
        if unit == 1 and ppu_x > 0 and ppu_y > 0:  # pixels per metre
            spacing = _positive_spacing(1000.0 / ppu_y, 1000.0 / ppu_x)
            source = "PNG pHYs" if spacing is not None else None
    meta = {
        "bits_stored": bit_depth,
        "original_dtype": str(arr.dtype),
        "png_colour_type": _PNG_COLOUR_TYPES.get(colour_type, str(colour_type)),
        "colour_conversion": colour,
        "scale": f"/{2**bits - 1}",
        "spacing_source": source,
    }
    return image, spacing, meta


# --------------------------------------------------------------------------------------------------------------
# JPEG
# --------------------------------------------------------------------------------------------------------------

_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_PROCESS = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive", 0xC3: "lossless"}


def _jpeg_frame(path: Path, data: bytes) -> tuple[int, int, int, int, int, int]:
    """Walk the marker segments up to the first scan.

    Returns (SOF marker, precision, rows, cols, components, offset of the first start-of-scan marker).
    Segment lengths are followed, so the bytes of an embedded thumbnail (APP1) are never mistaken for markers.
    """
    pos = 2
    frame: tuple[int, int, int, int, int] | None = None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise InputFileError(path, f"JPEG is corrupt: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if pos + 2 + length > len(data):
            break
        if marker in _SOF_MARKERS and length >= 8:
            precision, rows, cols, comps = struct.unpack(">BHHB", data[pos + 4 : pos + 10])
            frame = (marker, precision, rows, cols, comps)
        if marker == 0xDA:
            if frame is None:
                break
            return (*frame, pos)
        pos += 2 + length
    if frame is None:
        raise InputFileError(path, "JPEG is truncated or corrupt: no start-of-frame header found")
    raise InputFileError(path, "JPEG is truncated: the file ends before the first scan")


def _read_jpeg(path: Path, data: bytes) -> tuple[np.ndarray, tuple[float, float] | None, dict[str, Any]]:
    import imagecodecs

    marker, precision, rows, cols, comps, scan = _jpeg_frame(path, data)
    if data.rfind(b"\xff\xd9") < scan:
        raise InputFileError(path, "JPEG is truncated: the end-of-image marker (FF D9) is missing")
    if comps == 4:
        raise InputFileError(path, "CMYK / 4-component JPEG is not supported; expected grayscale or RGB")
    if rows == 0 or cols == 0:
        raise InputFileError(path, f"JPEG header gives an empty image ({rows} x {cols})")
    arr: np.ndarray | None = None
    errors = []
    for decode in (imagecodecs.jpeg8_decode, imagecodecs.ljpeg_decode):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                arr = np.asarray(decode(data))
            break
        except Exception as exc:
            errors.append(f"{decode.__name__}: {exc}")
    if arr is None:
        raise InputFileError(path, f"cannot decode JPEG ({precision}-bit, {comps} components): {errors}")
    if arr.shape[:2] != (rows, cols):
        raise InputFileError(path, f"JPEG decodes to {arr.shape[:2]} but its header says {(rows, cols)}")
    gray, colour = _to_gray(arr, path, "JPEG")
    image = _scale_unsigned(gray, precision, path, "JPEG")
    meta = {
        "bits_stored": precision,
        "original_dtype": str(arr.dtype),
        "jpeg_process": _JPEG_PROCESS.get(marker, f"SOF{marker - 0xC0}"),
        "colour_conversion": colour,
        "scale": f"/{2**precision - 1}",
        "spacing_source": None,
    }
    return image, None, meta


# --------------------------------------------------------------------------------------------------------------
# TIFF
# --------------------------------------------------------------------------------------------------------------


def _read_tiff(path: Path, data: bytes) -> tuple[np.ndarray, tuple[float, float] | None, dict[str, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            n_pages = len(tif.pages)
            series = tif.series
            levels = len(series[0].levels) if series else 1
            page = tif.pages.first
            if levels > 1 or page.subifds:
                raise InputFileError(
                    path,
                    f"pyramidal TIFF ({max(levels, 2)} levels) is not supported here; open whole-slide images "
                    "with open_slide",
                )
            if n_pages > 1:
                raise InputFileError(path, f"multi-page TIFF ({n_pages} pages); expected a single image")
            photometric = page.photometric.name if page.photometric is not None else "UNKNOWN"
            axes = page.axes
            bits = int(page.bitspersample)
            resolution = resolution_um(page)
            compression = page.compression.name if page.compression is not None else "NONE"
            tiled = page.is_tiled
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                arr = page.asarray()
    except InputFileError:
        raise
    except Exception as exc:
        raise InputFileError(path, f"cannot read TIFF: {type(exc).__name__}: {exc}") from exc

    # YCbCr is accepted JPEG-compressed with interleaved samples, which the JPEG decoder hands back as RGB;
    # tifffile returns any other YCbCr data unconverted.
    ycbcr_jpeg = photometric == "YCBCR" and compression == "JPEG" and not axes.startswith("S")
    if photometric not in ("MINISBLACK", "MINISWHITE", "RGB") and not ycbcr_jpeg:
        raise InputFileError(
            path,
            f"TIFF photometric interpretation {photometric} (compression {compression}) is not supported; "
            "expected grayscale, RGB or JPEG-compressed YCbCr",
        )
    # Bring samples last: (rows, cols) or (rows, cols, samples).
    arr = np.asarray(arr)
    if axes.startswith("S") and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.dtype == np.bool_:
        arr, bits = arr.astype(np.uint8), 1
    if arr.dtype not in (np.uint8, np.uint16):
        raise InputFileError(path, f"TIFF samples are {arr.dtype}; expected 8- or 16-bit unsigned integers")
    gray, colour = _to_gray(arr, path, "TIFF")
    if ycbcr_jpeg:
        colour = f"YCbCr (JPEG-decoded to RGB), {colour}"
    bits = bits if 1 <= bits <= arr.dtype.itemsize * 8 else arr.dtype.itemsize * 8
    image = _scale_unsigned(gray, bits, path, "TIFF")
    inverted = photometric == "MINISWHITE"
    if inverted:
        image = 1.0 - image

    # Inch or centimetre resolution only; a writer's default 72 / 96 / 300 dpi says nothing about the detector.
    spacing = _positive_spacing(resolution[0] / 1000.0, resolution[1] / 1000.0) if resolution else None
    meta = {
        "bits_stored": bits,
        "original_dtype": str(arr.dtype),
        "photometric_interpretation": photometric,
        "compression": compression,
        "tiled": bool(tiled),
        "colour_conversion": colour,
        "scale": f"/{2**bits - 1}",
        "inverted": inverted,
        "spacing_source": "TIFF resolution" if spacing is not None else None,
    }
    return image, spacing, meta


# --------------------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------------------


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
    return _positive_spacing(vals[0], vals[1])


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


def _read_dicom(path: Path, data: bytes) -> tuple[np.ndarray, tuple[float, float] | None, dict[str, Any]]:
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
