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

Modules: :mod:`.read` (:func:`read_cxr`, :class:`CxrImage`, :func:`detect_format`), one reader per format
(:mod:`.png`, :mod:`.jpeg`, :mod:`.tiff`, :mod:`.dicom`) and :mod:`.pixels` (the conversions they share).
"""

from __future__ import annotations

from .read import CxrImage, detect_format, read_cxr

__all__ = ["CxrImage", "detect_format", "read_cxr"]
