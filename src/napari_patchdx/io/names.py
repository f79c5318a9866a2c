"""The one rule that names things: a file's name, the outputs made from it, and our sidecars' format tags.

Every input (a slide, an X-ray) is known by its **name**: the file name without its suffix, where ``.ome.tif`` /
``.ome.tiff`` count as one suffix (``case_01.ome.tif`` and ``case_01.svs`` are both ``case_01``). Outputs are named
after it:

==========================  ===========================================================================
``<name>.xml``, ``.geojson``  the ground truth beside a slide (ASAP XML first)
``<name>.heatmap.ome.tif``    a slide's heatmap (float32 OME-TIFF), sidecar ``<name>.heatmap.json``; while
                              being written ``<name>.heatmap.partial.npy`` + ``.partial.json``
``<name>.cam.ome.tif``        an X-ray's class activation maps, sidecar ``<name>.cam.json``
``<name>.csv``, ``.geojson``  a slide's lesion points (CAMELYON16 CSV, QuPath GeoJSON), in an evaluation
                              folder's ``points/`` (:data:`POINTS_FOLDER`)
``<name>.png``                a thumbnail in an evaluation
==========================  ===========================================================================

A float map ``<stem>.ome.tif`` has its sidecar at ``<stem>.json``.

The rounds of "review, correct, retrain" are numbered folders of a run folder, ``<run>/rounds/<k>/`` (k = 1, 2,
...), laid out by :func:`round_paths`; a round's heatmap difference (after - before) of a slide is
``<name>.difference.ome.tif`` with its sidecar ``<name>.difference.json`` (:func:`difference_paths`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

__all__ = [
    "ANNOTATION_SUFFIXES",
    "CAM_FORMAT",
    "FLOAT_MAP_SUFFIXES",
    "HEATMAP_FORMAT",
    "POINTS_FOLDER",
    "ROUNDS_FOLDER",
    "annotation_candidates",
    "cam_paths",
    "difference_paths",
    "file_name",
    "float_map_name",
    "float_map_sidecar",
    "heatmap_paths",
    "points_paths",
    "round_numbers",
    "round_paths",
]

PathLike = str | os.PathLike[str]

#: suffixes that count as one (checked case-insensitively, longest first)
MULTI_SUFFIXES = (".ome.tiff", ".ome.tif")
#: float maps (heatmaps, CAMs) are ``<stem>.ome.tif`` (or ``.ome.tiff``) with their sidecar ``<stem>.json``
FLOAT_MAP_SUFFIXES = (".ome.tif", ".ome.tiff")
#: ground-truth files beside a slide, in the order they are looked for
ANNOTATION_SUFFIXES = (".xml", ".geojson")
#: the ``format`` of a heatmap sidecar
HEATMAP_FORMAT = "napari-patchdx-heatmap"
#: the ``format`` of a CAM sidecar
CAM_FORMAT = "napari-patchdx-cam"
#: the sub-folder of an evaluation folder that holds each slide's lesion points (:func:`points_paths`)
POINTS_FOLDER = "points"
#: the run-folder subfolder where training saves ground truth given as objects (e.g. layers drawn in napari) as
#: ``<slide name>.xml``, so the run records exactly what it trained on
TRUTH_FOLDER = "ground truth"


def file_name(path: PathLike) -> str:
    """The name outputs are named after: the file name without its suffix (``x.ome.tif`` -> ``x``, ``x.svs`` ->
    ``x``, ``x.png`` -> ``x``)."""
    text = Path(path).name
    lower = text.lower()
    for suffix in MULTI_SUFFIXES:
        if lower.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)]
    return Path(text).stem


def annotation_candidates(slide: PathLike) -> tuple[Path, ...]:
    """Where a slide's ground truth may sit beside it: ``<name>.xml`` then ``<name>.geojson``."""
    path = Path(slide)
    name = file_name(path)
    return tuple(path.with_name(name + suffix) for suffix in ANNOTATION_SUFFIXES)


def heatmap_paths(out_dir: PathLike, name: str) -> dict[str, Path]:
    """A slide's heatmap files in ``out_dir`` (``name`` from :func:`file_name`): ``final`` (``.heatmap.ome.tif``),
    ``sidecar`` (``.heatmap.json``), ``partial`` (``.heatmap.partial.npy``) and ``record`` (``.heatmap.partial.json``).
    """
    out = Path(out_dir)
    stem = f"{name}.heatmap"
    return {
        "final": out / f"{stem}.ome.tif",
        "sidecar": out / f"{stem}.json",
        "partial": out / f"{stem}.partial.npy",
        "record": out / f"{stem}.partial.json",
    }


def cam_paths(out_dir: PathLike, name: str) -> dict[str, Path]:
    """An X-ray's prediction files in ``out_dir``: ``final`` (``<name>.cam.ome.tif``, the CAMs) and ``sidecar``
    (``<name>.cam.json``: classes, probabilities, native shape, source)."""
    out = Path(out_dir)
    return {"final": out / f"{name}.cam.ome.tif", "sidecar": out / f"{name}.cam.json"}


def points_paths(out_dir: PathLike, name: str) -> dict[Literal["csv", "geojson"], Path]:
    """A slide's lesion points in ``out_dir``: ``csv`` (CAMELYON16: probability, X, Y) and ``geojson`` (QuPath
    detections), both in level-0 pixels. An evaluation writes them to its ``points/`` sub-folder
    (:data:`POINTS_FOLDER`)."""
    out = Path(out_dir)
    return {"csv": out / f"{name}.csv", "geojson": out / f"{name}.geojson"}


def float_map_name(path: PathLike) -> str | None:
    """``<stem>`` of a ``<stem>.ome.tif`` / ``<stem>.ome.tiff`` file (case-insensitive suffix), else None."""
    text = Path(path).name
    lower = text.lower()
    for suffix in FLOAT_MAP_SUFFIXES:
        if lower.endswith(suffix) and len(text) > len(suffix):
            return text[: -len(suffix)]
    return None


def float_map_sidecar(path: PathLike) -> Path | None:
    """The JSON sidecar ``<stem>.json`` beside a float map ``<stem>.ome.tif`` (whether it exists or not), or None
    when ``path`` is not named like a float map (``<slide>.heatmap.json``, ``<image>.cam.json``)."""
    name = float_map_name(path)
    return None if name is None else Path(path).with_name(f"{name}.json")


#: the run-folder subfolder holding the numbered rounds of "review, correct, retrain" (:func:`round_paths`)
ROUNDS_FOLDER = "rounds"


def round_paths(run_dir: PathLike, number: int) -> dict[str, Path]:
    """The folder of corrections round ``number`` (1, 2, ...) of a run and its parts:

    ``folder`` (``<run>/rounds/<number>``), ``corrections`` (``corrections/<slide name>.xml``: the corrected ground
    truth), ``train`` (the fine-tuning run), ``heatmaps_before`` / ``heatmaps_after`` (the corrected slides'
    heatmaps by the starting and the fine-tuned checkpoint), ``difference`` (their difference,
    :func:`difference_paths`) and ``record`` (``round.json``, the round's manifest).
    """
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"a round number is an integer >= 1, got {number!r}")
    folder = Path(run_dir) / ROUNDS_FOLDER / str(number)
    parts = ("corrections", "train", "heatmaps_before", "heatmaps_after", "difference")
    return {"folder": folder, **{part: folder / part for part in parts}, "record": folder / "round.json"}


def round_numbers(run_dir: PathLike) -> list[int]:
    """The numbers of the round folders in ``<run>/rounds/`` (any state), ascending; [] when there is none."""
    rounds = Path(run_dir) / ROUNDS_FOLDER
    if not rounds.is_dir():
        return []
    found = (p.name for p in rounds.iterdir() if p.is_dir())
    return sorted(int(n) for n in found if n.isdigit() and not n.startswith("0"))


def difference_paths(out_dir: PathLike, name: str) -> dict[str, Path]:
    """A slide's heatmap difference in ``out_dir``: ``final`` (``<name>.difference.ome.tif``, float32, after -
    before, NaN where either heatmap has no value) and ``sidecar`` (``<name>.difference.json``, with the heatmap
    format and grid, so the reader opens it aligned to its slide)."""
    out = Path(out_dir)
    return {"final": out / f"{name}.difference.ome.tif", "sidecar": out / f"{name}.difference.json"}
