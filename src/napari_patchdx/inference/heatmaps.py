"""Slide heatmaps: :func:`slide_heatmap_job`, its grid and patch geometry, and the :class:`HeatmapResult`.

The job detects tissue, plans the grid cells, streams their patches (:mod:`.patch_stream`) through the models
(:mod:`.ensemble`) and writes finished bands to a resumable partial store, then the heatmap files
(:mod:`.heatmap_files`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._fsutil import atomic_path, atomic_write_text
from ..errors import ConfigError
from ..geometry import Grid
from ..io.names import HEATMAP_FORMAT, file_name, heatmap_paths
from ..io.slides.base import Slide
from ..io.slides.open import open_slide
from ..progress import Job, Progress
from ..sampling.grid import grid_table
from ..sampling.patches import PatchGeometry
from ..sampling.sources import SlideMpp, SlideSource, check_slide_mpp, require_slide_mpp, slide_mpp
from ..sampling.tissue import detect_tissue
from ..sampling.tissue_config import TissueConfig
from ..sampling.tissue_mask import TissueMask
from .band_plan import default_band_rows
from .ensemble import (
    ModelSpec,
    fingerprint,
    load_models,
    mean_probs,
    predict_sum,
    resolve_channels_last,
    resolve_precision,
)
from .heatmap_files import HEATMAP_VERSION, read_heatmap, read_json, write_heatmap
from .patch_stream import open_stream


@dataclass(frozen=True)
class HeatmapRows:
    """A slide job's partial result: heatmap rows ``row0 .. row0 + len(block)`` on ``grid``, just computed.

    Enough to show a heatmap filling in live: the first rows of a slide carry the grid its layer is placed on.
    """

    slide: Path
    grid: Grid
    row0: int
    block: np.ndarray


@dataclass(frozen=True)
class HeatmapResult:
    """A finished slide heatmap.

    Attributes:
        heatmap: float32 (rows, cols) tumour probability per cell; NaN where no prediction was made (no tissue,
            or the patch touches an unreadable tile).
        grid: where the cells lie: ``Grid(shape, (stride0, stride0), (0, 0), slide mpp)``.
        path: the written ``<slide>.heatmap.ome.tif``.
        slide: the slide file.
        unreadable: level regions ``(level, y, x, h, w)`` (level pixels) of tiles that could not be decoded.
        stats: how the run went (empty when a finished heatmap was loaded): ``patches`` evaluated, ``blocks``
            read, ``tiles_read`` (tiles requested from the slide; each at most once) and ``tiles_reused`` (taken
            from memory instead), ``max_block_bytes`` (the largest block buffer), ``max_frontier_bytes`` (the
            most bytes of decoded tiles kept for later blocks), ``wait_s`` (seconds the model waited for
            patches), ``seconds`` (the whole run) and the ``precision`` used.
    """

    heatmap: np.ndarray
    grid: Grid
    path: Path
    slide: Path
    unreadable: tuple[tuple[int, int, int, int, int], ...] = ()
    stats: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _feeding(device: torch.device, channels_last: bool) -> tuple[bool, bool, int]:
    """How batches reach the model on ``device``: ``(nhwc, pinned, in_flight)``. Channels-last input is cut as
    NHWC batches (NCHW otherwise). CUDA gets them in pinned memory, copied without blocking, with up to 2
    batches in flight before a result is collected; elsewhere ordinary memory, each result collected at once."""
    cuda = device.type == "cuda"
    return channels_last, cuda, 2 if cuda else 0


def _default_read_threads(device: str | torch.device) -> int:
    """1 (the background thread alone) on CPU, where the model needs the cores; more to feed a GPU."""
    if torch.device(device).type != "cuda":
        return 1
    return max(1, min(8, (os.cpu_count() or 2) - 2))


@dataclass(frozen=True)
class _Options:
    tta: bool
    stride: int | None
    batch_size: int
    tissue: TissueMask | TissueConfig | None
    min_tissue: float
    device: torch.device
    resume: bool
    band_rows: int | None
    class_index: int
    precision: str
    block_width: int | None
    prefetch: int
    read_threads: int
    channels_last: bool


def patch_geometry(
    meta: dict[str, Any],
    *,
    patch_size: int | None = None,
    center_size: int | None = None,
    patch_mpp: float | None = None,
) -> PatchGeometry:
    """The patch geometry a checkpoint's ``meta`` reads (``input_size``, ``center_size``, ``mpp`` in um per patch
    pixel; None = level 0), each overridable."""
    psize = int(patch_size or meta.get("input_size") or 0)
    if psize < 1:
        raise ConfigError("patch size unknown: the checkpoint meta has no input_size; pass patch_size=")
    csize = int(center_size or meta.get("center_size") or psize)
    return PatchGeometry(psize, csize, patch_mpp if patch_mpp is not None else meta.get("mpp"))


def heatmap_grid(slide: Slide, geometry: PatchGeometry, stride: int | None = None) -> Grid:
    """The grid of ``slide``'s heatmap: square cells of ``stride`` patch pixels (default the central region) at the
    patch magnification, from the level-0 origin; ``ceil(level-0 size / cell side)`` cells along (rows, cols)."""
    _, _, scale = geometry.plan(slide)
    step = int(stride or geometry.center_size) * scale
    h0, w0 = slide.shape
    return Grid((math.ceil(h0 / step), math.ceil(w0 / step)), (step, step), (0.0, 0.0), slide.mpp)


def slide_heatmap_job(
    slide_path: str | os.PathLike[str] | Slide,
    models: Any,
    out_dir: str | os.PathLike[str],
    *,
    tta: bool = True,
    stride: int | None = None,
    batch_size: int = 32,
    tissue: TissueMask | TissueConfig | None = None,
    min_tissue: float = 0.0,
    device: str | torch.device = "cpu",
    resume: bool = True,
    mpp: SlideMpp = None,
    patch_size: int | None = None,
    center_size: int | None = None,
    patch_mpp: float | None = None,
    band_rows: int | None = None,
    class_index: int = 0,
    precision: str | None = None,
    block_width: int | None = None,
    prefetch: int | None = None,
    read_threads: int | None = None,
    channels_last: bool | None = None,
) -> Job[HeatmapResult]:
    """Tumour-probability heatmap of one slide, yielding progress once per band of cell rows.

    Args:
        slide_path: the slide file, or an opened :class:`Slide`.
        models: ``(model, meta)``, a checkpoint path, or a list of either (an ensemble: probabilities are averaged).
            ``meta`` gives ``input_size`` (patch side), ``center_size`` and ``mpp`` (um per patch pixel; None =
            level 0) unless ``patch_size`` / ``center_size`` / ``patch_mpp`` override them.
        out_dir: where the heatmap (and, while running, its partial store) is written.
        tta: average each patch over the 8 orientations.
        stride: cell side in patch pixels (default: the central region, as in Liu et al.).
        batch_size: patches per model call.
        tissue: a tissue mask, or the settings to detect one (default settings when None).
        min_tissue: cells whose tissue fraction is at least this are evaluated; 0 = any tissue at all.
        device: torch device for the models.
        resume: continue an interrupted run / reuse a finished heatmap of the same configuration; False
            recomputes from scratch.
        mpp: the slide's level-0 microns per pixel, overriding the file's (needed when it says nothing): one value,
            or a mapping slide name -> value (:data:`~napari_patchdx.sampling.sources.SlideMpp`, so that one mapping
            serves many slides). Applies to a slide file; an opened ``Slide`` keeps the mpp it was opened with.
        band_rows: cell rows per band (default: about two tiles of the read level).
        class_index: which logit is "tumour" (0 for the usual one-class model).
        precision: ``"bf16"`` (bfloat16 autocast) or ``"fp32"``; None = bf16 on CUDA, fp32 elsewhere. Part of
            the heatmap's configuration (a heatmap of another precision is recomputed).
        block_width: column-block width in level pixels, rounded up to whole tiles (default 16 tiles); bounds
            the read buffer whatever the slide's width.
        prefetch: batches of patches read ahead of the model (default 4, or ``read_threads + 2`` when more, so
            that every reading thread has a batch to cut).
        read_threads: threads decoding tiles and cutting patches (default 1 on CPU, up to 8 on CUDA).
        channels_last: cut patches as NHWC and feed the models channels-last input (default on; False gives NCHW
            input, slower, with probabilities that differ by float rounding, ~1e-10).

    Yields :class:`Progress` (cell rows done / all rows); its ``partial`` is a :class:`HeatmapRows`: the heatmap rows
    ``row0 .. row0 + len(block)`` just computed. Returns a :class:`HeatmapResult`. A tile that cannot be decoded
    leaves the cells whose patches touch it NaN and warns with the level region; the run continues.
    """
    specs = load_models(models, device)
    meta = specs[0][1]
    geometry = patch_geometry(meta, patch_size=patch_size, center_size=center_size, patch_mpp=patch_mpp)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    threads = _default_read_threads(device) if read_threads is None else int(read_threads)
    if threads < 1:
        raise ConfigError(f"read_threads must be >= 1, got {read_threads}")
    prefetch = max(4, threads + 2) if prefetch is None else int(prefetch)
    if prefetch < 1:
        raise ConfigError(f"prefetch must be >= 1 batch, got {prefetch}")
    if block_width is not None and block_width < 1:
        raise ConfigError(f"block_width must be >= 1 level pixel, got {block_width}")
    options = _Options(
        tta, stride, batch_size, tissue, min_tissue, torch.device(device), resume, band_rows, class_index,
        resolve_precision(precision, device), block_width, int(prefetch), threads,
        resolve_channels_last(channels_last, device),
    )  # fmt: skip

    own = not isinstance(slide_path, Slide)
    slide = open_slide(slide_path, mpp=slide_mpp(check_slide_mpp(mpp), slide_path)) if own else slide_path
    try:
        if not isinstance(tissue, TissueMask):
            require_slide_mpp(slide, "tissue detection")
        result = yield from _heatmap(slide, specs, Path(out_dir), geometry, options)
    finally:
        if own:
            slide.close()
    return result


def _heatmap(
    slide: Slide, specs: list[ModelSpec], out_dir: Path, geometry: PatchGeometry, opt: _Options
) -> Job[HeatmapResult]:
    started = time.perf_counter()
    name = Path(slide.path).name
    paths = heatmap_paths(out_dir, file_name(slide.path))
    out_dir.mkdir(parents=True, exist_ok=True)

    yield Progress(0, 0, f"{name}: tissue detection")
    tissue = opt.tissue
    if not isinstance(tissue, TissueMask):
        tissue = detect_tissue(slide, tissue or TissueConfig())
    stride = int(opt.stride or geometry.center_size)
    level, read_size, scale = geometry.plan(slide)
    table = grid_table(
        SlideSource(Path(slide.path), slide, tissue),
        geometry,
        stride=stride,
        min_tissue=max(float(opt.min_tissue), 1e-9),
        labels=False,
    )
    grid = heatmap_grid(slide, geometry, stride)
    shape, step = grid.shape, grid.spacing[0]
    h0, w0 = slide.shape
    rows = table["row"].to_numpy(np.int64)
    cols = table["col"].to_numpy(np.int64)
    ds = slide.level_downsamples[level]
    ly = np.floor(table["y"].to_numpy(np.float64) / ds).astype(np.int64)  # as Slide.read_region rounds
    lx = np.floor(table["x"].to_numpy(np.float64) / ds).astype(np.int64)
    del table

    st = os.stat(slide.path)
    cells = hashlib.sha256(rows.tobytes() + cols.tobytes()).hexdigest()
    key = {
        "format": HEATMAP_FORMAT,
        "version": HEATMAP_VERSION,
        "slide": {"name": name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "shape": [h0, w0], "mpp": slide.mpp},
        "patch": {"size": geometry.patch_size, "center": geometry.center_size, "mpp": geometry.mpp},
        "read": {"level": level, "size": read_size, "scale": scale},
        "stride": stride,
        "tta": bool(opt.tta),
        "class_index": int(opt.class_index),
        "precision": opt.precision,
        "models": [fingerprint(m, meta) for m, meta in specs],
        "cells": cells,
    }
    key = json.loads(json.dumps(key))  # as it reads back from JSON

    # a finished heatmap of this configuration?
    if opt.resume and paths["final"].is_file():
        side = read_json(paths["sidecar"])
        if side is not None and side.get("key") == key:
            heatmap, saved_grid, _ = read_heatmap(paths["final"])
            yield Progress(shape[0], shape[0], f"{name}: heatmap already computed")
            return HeatmapResult(
                heatmap, saved_grid, paths["final"], Path(slide.path), tuple(map(tuple, side.get("unreadable", [])))
            )

    # the partial store: resume it or start afresh
    record = read_json(paths["record"]) if opt.resume else None
    store = None
    if record is not None and record.get("key") == key:
        try:
            store = np.load(paths["partial"], mmap_mode="r+")
            if store.shape != shape or store.dtype != np.float32:
                store = None
        except (OSError, ValueError):
            store = None
    if store is None:
        record = None
        with atomic_path(paths["partial"]) as tmp:
            fresh = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
            fresh[:] = np.nan
            fresh.flush()
            del fresh
        store = np.load(paths["partial"], mmap_mode="r+")
    done = int(record["rows_done"]) if record else 0
    unreadable: list[list[int]] = [list(v) for v in record.get("unreadable", [])] if record else []

    def save_record(store: np.memmap, rows_done: int, bad: list[list[int]]) -> None:
        store.flush()
        payload = {"key": key, "rows_done": rows_done, "unreadable": bad}
        atomic_write_text(paths["record"], json.dumps(payload, indent=1))

    def write_band(store: np.memmap, row0: int, row1: int, block: np.ndarray, bad: list[list[int]]) -> None:
        store[row0:row1] = block
        save_record(store, row1, bad)

    if record is None:
        save_record(store, 0, unreadable)

    per_band = int(opt.band_rows or default_band_rows(slide, level, step / ds))
    if per_band < 1:
        raise ConfigError(f"band_rows must be >= 1, got {opt.band_rows}")
    nhwc, pinned, lag = _feeding(opt.device, opt.channels_last)
    stream = open_stream(
        slide, level, read_size, geometry.patch_size, rows, ly, lx, shape[0], done, per_band,
        batch_size=opt.batch_size, block_width=opt.block_width, prefetch=opt.prefetch,
        read_threads=opt.read_threads, nhwc=nhwc, pinned=pinned,
    )  # fmt: skip
    bands = stream.bands

    # the model consumes batches as the reader delivers them; on CUDA up to `lag` batches stay in flight
    # (results are collected later), so the GPU never waits for the host to look at a result
    pending: deque[tuple[torch.Tensor, int, np.ndarray, torch.Tensor]] = deque()
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patchdx-write")
    writes: list[Future] = []
    current, block = -1, np.empty((0, shape[1]), np.float32)

    def resolve(row0: int) -> None:
        total, terms, idx, buf = pending.popleft()
        with torch.inference_mode():
            block[rows[idx] - row0, cols[idx]] = mean_probs(total, terms)
        stream.release(buf)

    try:
        yield Progress(done, shape[0], f"{name}: {len(rows)} tissue cells, {len(bands)} bands to go")
        for msg in stream:
            band = bands[msg[1]]
            if msg[1] != current:
                current = msg[1]
                block = np.full((band.row1 - band.row0, shape[1]), np.nan, dtype=np.float32)
            if msg[0] == "batch":
                _, _, idx, batch, buf = msg
                with torch.inference_mode():
                    total, terms = predict_sum(
                        specs, batch, tta=opt.tta, device=opt.device, class_index=opt.class_index,
                        precision=opt.precision, channels_last=opt.channels_last,
                    )  # fmt: skip
                pending.append((total, terms, idx, buf))
                while len(pending) > lag:
                    resolve(band.row0)
                continue
            while pending:
                resolve(band.row0)
            for exc in msg[2]:
                unreadable.append([exc.level, *exc.region])
                warnings.warn(f"{exc}; the cells whose patches touch it are left NaN", UserWarning, stacklevel=2)
            for f in [f for f in writes if f.done()]:
                f.result()  # a failed write ends the run here
                writes.remove(f)
            writes.append(writer.submit(write_band, store, band.row0, band.row1, block, [list(v) for v in unreadable]))
            yield Progress(
                band.row1,
                shape[0],
                f"{name}: rows {band.row1} of {shape[0]}",
                partial=HeatmapRows(Path(slide.path), grid, band.row0, block),
            )
    finally:
        stream.close()
        writer.shutdown(wait=True)  # the record on disk matches the store, even when the job is closed early
    for f in writes:
        f.result()

    heatmap = np.array(store, dtype=np.float32)
    del store
    write_heatmap(paths["final"], heatmap, grid)
    sidecar = {
        "format": HEATMAP_FORMAT,
        "version": HEATMAP_VERSION,
        "slide": str(slide.path),
        "grid": grid.to_dict(),
        "values": "tumour probability (sigmoid, mean over orientations and models); NaN = not evaluated",
        "unreadable": unreadable,
        "key": key,
    }
    atomic_write_text(paths["sidecar"], json.dumps(sidecar, indent=1))
    for p in (paths["partial"], paths["record"]):
        p.unlink(missing_ok=True)
    stats = {
        **stream.reader.stats,
        "patches": stream.patches,
        "wait_s": round(stream.wait_s, 4),
        "seconds": round(time.perf_counter() - started, 4),
        "precision": opt.precision,
        "channels_last": opt.channels_last,
        "read_threads": opt.read_threads,
    }
    return HeatmapResult(
        heatmap, grid, paths["final"], Path(slide.path), tuple(tuple(v) for v in unreadable), stats=stats
    )
