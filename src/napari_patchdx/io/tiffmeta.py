"""TIFF facts shared by the slide and the X-ray readers: magic bytes and physical pixel size."""

from __future__ import annotations

from typing import Any

#: First four bytes of classic and BigTIFF files, little and big endian.
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: Micrometres per ResolutionUnit (2 = inch, 3 = centimetre); unit 1 (none) says nothing physical.
_UM_PER_UNIT = {2: 25_400.0, 3: 10_000.0}

#: Pixels-per-inch values that writers put in by default (screen / print), which say nothing about the scan.
_DEFAULT_DPI = (72.0, 96.0, 300.0)


def _ratio(value: Any) -> float | None:
    try:
        r = value[0] / value[1] if isinstance(value, tuple) else float(value)
    except (ZeroDivisionError, TypeError, ValueError, IndexError):
        return None
    return r if r > 0 else None


def resolution_um(page: Any) -> tuple[float, float] | None:
    """(row, col) micrometres per pixel from a tifffile page's XResolution / YResolution / ResolutionUnit.

    None when the unit is not inch or centimetre, a value is missing or not positive, or the file carries a
    writer's default inch resolution (72, 96 or 300 dpi) rather than a measured one.
    """
    tags = page.tags
    try:
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        xr = _ratio(tags["XResolution"].value) if "XResolution" in tags else None
        yr = _ratio(tags["YResolution"].value) if "YResolution" in tags else None
    except (TypeError, ValueError):
        return None
    if unit not in _UM_PER_UNIT or xr is None:
        return None
    yr = yr or xr
    if unit == 2 and xr in _DEFAULT_DPI and yr in _DEFAULT_DPI:
        return None
    return _UM_PER_UNIT[unit] / yr, _UM_PER_UNIT[unit] / xr
