"""The pyramidal TIFF: level sizes, tile-by-tile JPEG encoding, and the description that identifies a slide."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..._fsutil import atomic_path
from .data_model import SlideSpec
from .frame import make_frame
from .render import frame_is_glass, label_frame, render_frame

_GENERATOR_VERSION = 1  # bump whenever the pixels or the layout for given arguments change
_MIN_PYRAMID_SIDE = 512


def level_shapes(height: int, width: int) -> list[tuple[int, int]]:
    """(rows, cols) of every pyramid level: halved (rounding up) until the smaller side is <= 512."""
    shapes = [(int(height), int(width))]
    while min(shapes[-1]) > _MIN_PYRAMID_SIDE:
        k = len(shapes)
        shapes.append((-(-height // 2**k), -(-width // 2**k)))
    return shapes


def _encode(tile: np.ndarray, quality: int) -> bytes:
    import imagecodecs

    return imagecodecs.jpeg8_encode(tile, level=quality, colorspace="RGB", outcolorspace="YCBCR", subsampling=(2, 2))


def _level_tiles(spec: SlideSpec, level: int, shape: tuple[int, int], quality: int, bg: bytes) -> Iterator[bytes]:
    t = spec.tile
    ds = 2**level
    for ty in range(-(-shape[0] // t)):
        for tx in range(-(-shape[1] // t)):
            y0, x0 = ty * t * ds, tx * t * ds
            if not spec.intersects_content(y0, x0, y0 + t * ds, x0 + t * ds):
                yield bg
                continue
            frame = make_frame(spec, y0, x0, t, t, ds)
            labels, capsule = label_frame(spec, frame)
            if frame_is_glass(spec, frame, labels):
                yield bg
                continue
            yield _encode(render_frame(spec, frame, (labels, capsule)), quality)


def slide_description(spec: SlideSpec, tumor: bool, tissue_fraction: float, pen_marks: bool, quality: int) -> str:
    """ImageDescription of a synthetic slide: every argument that determines its bytes (the profile and centre
    only for a non-default profile, so default slides keep their bytes)."""
    text = (
        f"napari-patchdx synthetic slide v{_GENERATOR_VERSION}; seed={spec.seed}; height={spec.height}; "
        f"width={spec.width}; mpp={spec.mpp!r}; tumor={bool(tumor)}; tissue_fraction={float(tissue_fraction)!r}; "
        f"pen_marks={bool(pen_marks)}; tile={spec.tile}; quality={int(quality)}"
    )
    if spec.profile != "default":
        text += f"; profile={spec.profile}; centre={spec.centre}"
    return text


def read_description(path: Path) -> str | None:
    """The ImageDescription of the TIFF at ``path``'s first page, or None when it is not a readable TIFF."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            return tf.pages[0].description
    except Exception:  # not a TIFF, truncated, unreadable: not ours
        return None


def write_tiff(spec: SlideSpec, path: Path, quality: int, description: str) -> list[tuple[int, int]]:
    """Write the slide's pyramidal JPEG TIFF atomically to ``path``; returns the level shapes."""
    import tifffile

    shapes = level_shapes(spec.height, spec.width)
    bg = _encode(render_frame(spec, make_frame(spec, 0, 0, spec.tile, spec.tile, 1), None), quality)
    raw = sum(h * w * 3 for h, w in shapes)
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=raw > 2**31) as tw:
        for level, shape in enumerate(shapes):
            ds_y, ds_x = spec.height / shape[0], spec.width / shape[1]
            tw.write(
                _level_tiles(spec, level, shape, quality, bg),
                shape=(*shape, 3),
                dtype=np.uint8,
                tile=(spec.tile, spec.tile),
                compression="jpeg",
                photometric="rgb",
                subsampling=(2, 2),
                resolution=(1e4 / (spec.mpp * ds_x), 1e4 / (spec.mpp * ds_y)),
                resolutionunit="CENTIMETER",
                subfiletype=1 if level else 0,
                description=description if level == 0 else None,
                metadata=None,
                software="napari-patchdx",
            )
    return shapes
