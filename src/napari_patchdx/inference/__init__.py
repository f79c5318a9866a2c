"""Inference: tumour-probability heatmaps of whole slides (Liu et al. 2017) and lesion CAMs of chest X-rays.

Slides
------
:func:`slide_heatmap_job` slides the patch window over the grid sampler's cells
(:func:`napari_patchdx.sampling.balanced.grid_table`: stride = the central region by default, cell ``(row, col)``
covers level-0 ``[row, row + 1) * stride0`` and its patch is centred on the cell) and writes one probability per
cell: the sigmoid of the logit, averaged over the 8 orientations (test-time augmentation) and over the ensemble of
models. Cells that were not evaluated (no tissue, or a patch touching an unreadable tile) are **NaN**, never 0:
"unknown" is not "normal".

Read each byte once, in bounded memory: the grid is processed in bands of cell rows, and each band in column
blocks of at most ``block_width`` level pixels (default 16 tiles). A block is one tile-aligned buffer of the plan's
pyramid level holding all its patches' read windows; only the tiles some patch touches are filled. Every level
tile is decoded at most once per run: a tile that a later block (the next column block, or the next band) needs
again is kept, as its own small array, until its last use, so memory holds one block buffer, the tiles on the
current band boundary and the batches in flight — it grows with neither the slide's height nor, beyond that
one row of boundary tiles, its width. Patches are cut from the block buffer one model batch at a time, never a
whole band at once. Reading and cutting run in a background thread (``read_threads`` > 1 adds a pool that decodes
tile runs and cuts batches in parallel, for GPUs) and stay ``prefetch`` batches ahead of the model; the partial
store is written by a third thread, so neither decoding nor disk writes stall the model. On CUDA the model runs
under bf16 autocast (``precision``), in channels-last layout, fed from pinned host memory with non-blocking
copies.

Nothing lost: bands are written as they finish into ``<out_dir>/<slide>.heatmap.partial.npy`` (a ``.npy``
memmap) and ``<slide>.heatmap.partial.json`` records, atomically, how many cell rows are done and for which
configuration, so an interrupted job resumes from its last finished band. The finished heatmap is
``<out_dir>/<slide>.heatmap.ome.tif`` (float32, pyramidal when large) with its geometry in the sidecar
``<slide>.heatmap.json``; a finished heatmap with the same configuration is loaded, not recomputed, unless
``resume=False``.

Chest X-rays
------------
:func:`cxr_predict` resizes each image to the checkpoint's working size, standardises it like
:func:`napari_patchdx.transforms.cxr_eval_transforms` and returns per-class probabilities and class activation
maps upsampled to the native image (CAM cell ``(r, c)`` covers native pixels ``[r, r + 1) * H / h`` x
``[c, c + 1) * W / w``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import queue
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._fsutil import atomic_path, atomic_write_text
from ..errors import ConfigError, InputFileError
from ..geometry import Grid
from ..io.float_maps import read_float_image, write_float_image
from ..io.slides import Slide, TiffSlide, TileReadError, open_slide
from ..progress import Job, Progress
from ..sampling.balanced import PatchGeometry, SlideSource, grid_table
from ..sampling.datasets import resize_patch, resize_square, to_float
from ..sampling.tissue import TissueConfig, TissueMask, detect_tissue
from ..transforms import ORIENTATIONS, cxr_eval_transforms, orient_torch, transform_from_dict

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PRECISIONS",
    "CxrPrediction",
    "HeatmapResult",
    "cam_paths",
    "cxr_predict",
    "heatmap_grid",
    "heatmap_paths",
    "iter_slide_patches",
    "patch_geometry",
    "predict_patches",
    "read_cxr_prediction",
    "read_heatmap",
    "save_cxr_prediction",
    "slide_heatmap_job",
]

HEATMAP_FORMAT = "napari-patchdx-heatmap"
HEATMAP_VERSION = 1

#: Model precisions: ``"bf16"`` (autocast to bfloat16) or ``"fp32"``; ``None`` means bf16 on CUDA, fp32 elsewhere.
PRECISIONS = ("bf16", "fp32")

#: Default column-block width, in tiles of the read level.
BLOCK_WIDTH_TILES = 16

ModelSpec = tuple[nn.Module, dict[str, Any]]


# ---------------------------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class CxrPrediction:
    """Predictions for one chest X-ray.

    Attributes:
        classes: class names (the checkpoint's).
        probabilities: float32 (K,) sigmoid of each class logit.
        cams: float32 (K, H, W) class activation maps in logit units, upsampled bilinearly to the native image
            (their mean over the working-size CAM grid is the logit).
        shape: native (H, W).
        source: the image path, or None for an array.
        spacing: the image's (row, col) pixel spacing in millimetres, when its file gives one.
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray
    cams: np.ndarray = field(repr=False)
    shape: tuple[int, int]
    source: Path | None = None
    spacing: tuple[float, float] | None = None


# ---------------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------------


def _load_models(models: Any, device: str | torch.device) -> list[ModelSpec]:
    """``(model, meta)`` pairs from a pair, a checkpoint path, or a list of either; models in eval mode."""
    from ..models import load_checkpoint

    single = isinstance(models, tuple) and len(models) == 2 and isinstance(models[0], nn.Module)
    if single or isinstance(models, str | os.PathLike):
        models = [models]
    out: list[ModelSpec] = []
    for item in models:
        if isinstance(item, str | os.PathLike):
            model, meta = load_checkpoint(item, device=device)
        else:
            model, meta = item
            model = model.to(device)
        if torch.device(device).type == "cuda":
            model = model.to(memory_format=torch.channels_last)  # the layout cuDNN's fast kernels want
        model.eval()
        out.append((model, dict(meta)))
    if not out:
        raise ConfigError("no model given for inference")
    first = out[0][1]
    for _, meta in out[1:]:
        for key in ("input_size", "center_size", "mpp"):
            if meta.get(key) != first.get(key):
                raise ConfigError(
                    f"ensemble models disagree on {key}: {first.get(key)!r} vs {meta.get(key)!r}; "
                    "they must read the same patches"
                )
    return out


def _fingerprint(model: nn.Module, meta: dict[str, Any]) -> str:
    """A checkpoint's weights sha256, or a hash of the model's tensors (for in-memory models)."""
    sha = meta.get("weights_sha256")
    if isinstance(sha, str) and sha:
        return sha
    h = hashlib.sha256(type(model).__name__.encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _slide_input(batch: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """uint8 NCHW RGB patches -> the float input the checkpoint expects (its ``normalization``)."""
    norm = meta.get("normalization") or {"mode": "unit"}
    mode = norm.get("mode", "unit") if isinstance(norm, dict) else "unit"
    if mode != "unit":
        raise ConfigError(f"slide inference supports normalization mode 'unit' (RGB / 255), not {mode!r}")
    return to_float(batch)


def _resolve_precision(precision: str | None, device: str | torch.device) -> str:
    """``precision`` checked, or the default for ``device``: bf16 on CUDA, fp32 elsewhere."""
    if precision is None:
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise ConfigError(
            f"precision must be one of {PRECISIONS} (or None: bf16 on CUDA, fp32 elsewhere), got {precision!r}"
        )
    return precision


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on ``device`` (CUDA, or CPU when asked for), or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _resolve_channels_last(channels_last: bool | None, device: str | torch.device) -> bool:
    """``channels_last``, or its default: on (cuDNN's fast layout on CUDA; 1.6-2x faster convolutions of the small
    network on CPU too, benchmarks/inference.py; probabilities differ from NCHW input by ~1e-10)."""
    return True if channels_last is None else bool(channels_last)


def _predict_sum(
    models: Sequence[ModelSpec],
    batch: torch.Tensor,
    *,
    tta: bool,
    device: str | torch.device,
    class_index: int,
    precision: str,
    channels_last: bool,
) -> tuple[torch.Tensor, int]:
    """Sum of the sigmoid probabilities over orientations and models, float64 (N,) on ``device``, and how many
    terms it holds. Launches the work without waiting for it on CUDA (the copy of a pinned ``batch`` is
    non-blocking); call under ``torch.inference_mode()``."""
    dev = torch.device(device)
    ks = range(ORIENTATIONS) if tta else (0,)
    xb = batch if batch.device == dev else batch.to(dev, non_blocking=True)
    total = torch.zeros(batch.shape[0], dtype=torch.float64, device=dev)
    with _autocast(dev, precision):
        for model, meta in models:
            x = _slide_input(xb, meta)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            for k in ks:
                logits = model(orient_torch(x, k) if k else x)
                total += torch.sigmoid(logits[:, class_index].float()).double()
    return total, len(models) * len(ks)


def _mean_probs(total: torch.Tensor, terms: int) -> np.ndarray:
    """float32 numpy mean of a :func:`_predict_sum` (waits for the device)."""
    return (total / terms).cpu().numpy().astype(np.float32)


@torch.inference_mode()
def predict_patches(
    models: Sequence[ModelSpec],
    batch: torch.Tensor,
    *,
    tta: bool = True,
    device: str | torch.device = "cpu",
    class_index: int = 0,
    precision: str | None = None,
    channels_last: bool | None = None,
) -> np.ndarray:
    """Tumour probability of uint8 NCHW RGB patches: sigmoid of logit ``class_index``, averaged over the 8
    orientations (when ``tta``) and over ``models``. Returns float32 (N,).

    ``precision``: ``"bf16"`` runs the models under bfloat16 autocast, ``"fp32"`` in float32; None (default) is
    bf16 on CUDA and fp32 elsewhere. ``channels_last``: feed the models channels-last (NHWC-strided) input;
    None (default) is on (faster on CUDA and on CPU). On CUDA the batch is copied without blocking (fastest from
    pinned memory).
    """
    total, terms = _predict_sum(
        models,
        batch,
        tta=tta,
        device=device,
        class_index=class_index,
        precision=_resolve_precision(precision, device),
        channels_last=_resolve_channels_last(channels_last, device),
    )
    return _mean_probs(total, terms)


# ---------------------------------------------------------------------------------------------------------------
# reading: bands of cell rows, column blocks, each tile decoded once, patches cut per batch
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Block:
    """One column block of a band: its cells and the tile-aligned level rectangle holding their read windows."""

    ordinal: int  # position in reading order, over all bands
    index: np.ndarray  # cell positions (into the cell arrays), in processing order
    rect: tuple[int, int, int, int]  # level rows [a, b), cols [c, d), tile-aligned (may extend past the level)


@dataclass
class _Band:
    """One band of cell rows ``[row0, row1)``: its cells in processing order (block by block, row-major within a
    block) and its column blocks, left to right."""

    row0: int
    row1: int
    index: np.ndarray
    blocks: list[_Block]


def _touched_tiles(
    ly: np.ndarray, lx: np.ndarray, size: int, tile: tuple[int, int], level_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ``(patch i, tile row, tile col)`` such that read window ``i`` (top-left ``(ly[i], lx[i])``, ``size``
    level pixels square) overlaps that level tile inside the image. Windows entirely outside touch nothing."""
    th, tw = tile
    h, w = level_shape
    y0, y1 = np.maximum(ly, 0), np.minimum(ly + size, h)
    x0, x1 = np.maximum(lx, 0), np.minimum(lx + size, w)
    i = np.flatnonzero((y1 > y0) & (x1 > x0))
    ty0, tx0 = y0[i] // th, x0[i] // tw
    ny, nx = (y1[i] - 1) // th - ty0 + 1, (x1[i] - 1) // tw - tx0 + 1
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for dy in range(int(ny.max(initial=0))):
        for dx in range(int(nx.max(initial=0))):
            sel = (dy < ny) & (dx < nx)
            parts.append((i[sel], ty0[sel] + dy, tx0[sel] + dx))
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(p).astype(np.int64) for p in zip(*parts, strict=True))  # type: ignore[return-value]


def _plan(
    rows: np.ndarray,
    ly: np.ndarray,
    lx: np.ndarray,
    n_rows: int,
    first_row: int,
    per_band: int,
    read_size: int,
    tile: tuple[int, int],
    level_shape: tuple[int, int],
    block_width: int,
) -> tuple[list[_Band], np.ndarray]:
    """Bands of ``per_band`` cell rows from ``first_row`` on, split into column blocks of ``block_width`` level
    pixels (a cell belongs to the block holding its window's left edge), and for every level tile the ordinal of
    the last block that needs it (-1: none), so that each tile can be kept exactly as long as it is needed."""
    th, tw = tile
    order = np.argsort(rows, kind="stable")  # tables are row-major: cells stay row-major within a row band
    sorted_rows = rows[order]
    ordinal = np.full(len(rows), -1, np.int64)
    bands: list[_Band] = []
    n = 0
    for start in range(first_row, n_rows, per_band):
        end = min(start + per_band, n_rows)
        index = order[np.searchsorted(sorted_rows, start) : np.searchsorted(sorted_rows, end)]
        blocks: list[_Block] = []
        if index.size:
            key = np.maximum(lx[index], 0) // block_width  # windows sticking out on the left join block 0
            perm = np.argsort(key, kind="stable")
            index, key = index[perm], key[perm]
            for part in np.split(index, np.flatnonzero(np.diff(key)) + 1):
                y, x = ly[part], lx[part]
                rect = (
                    int(y.min()) // th * th,
                    -(-(int(y.max()) + read_size) // th) * th,
                    int(x.min()) // tw * tw,
                    -(-(int(x.max()) + read_size) // tw) * tw,
                )
                blocks.append(_Block(n, part, rect))
                ordinal[part] = n
                n += 1
        bands.append(_Band(start, end, index, blocks))
    h, w = level_shape
    last_use = np.full((-(-h // th), -(-w // tw)), -1, np.int64)
    planned = np.flatnonzero(ordinal >= 0)
    i, ty, tx = _touched_tiles(ly[planned], lx[planned], read_size, tile, level_shape)
    np.maximum.at(last_use, (ty, tx), ordinal[planned][i])
    return bands, last_use


class _Stopped(Exception):
    """The stream was closed while a reader thread waited."""


class _PatchReader:
    """Fills block buffers in reading order and cuts patches from them.

    Buffers are in the layout of the batches: planar ``(3, rows, cols)`` for NCHW batches (each pixel is then
    transposed once, as its tile is placed, rather than once per overlapping patch), ``(rows, cols, 3)`` for NHWC.
    Only what patches read is filled: the needed tiles, and white outside the image. A needed tile comes from the
    ``frontier`` when an earlier block decoded it, else from the slide (:meth:`TiffSlide.tile` straight from its
    decoder; other backends one ``read_level_region`` per horizontal run of tiles, tile by tile again only when a
    run fails); it stays in the frontier until the last block that needs it. A tile that cannot be decoded is
    remembered as bad and never read again; the patches touching it are skipped.
    """

    def __init__(
        self,
        slide: Slide,
        level: int,
        read_size: int,
        patch_size: int,
        ly: np.ndarray,
        lx: np.ndarray,
        last_use: np.ndarray,
        pool: ThreadPoolExecutor | None,
        chw: bool,
    ) -> None:
        self.slide = slide
        self.level = level
        self.read_size = read_size
        self.patch_size = patch_size
        self.ly, self.lx = ly, lx
        self.tile = _tile_shape(slide, level)
        self.level_shape = slide.level_shapes[level]
        self.last_use = last_use
        self.pool = pool
        self.chw = chw
        self.tiff = isinstance(slide, TiffSlide) and tuple(slide.tile_shapes[level]) == self.tile
        self.frontier: dict[tuple[int, int], np.ndarray] = {}
        self.frontier_bytes = 0
        self.bad: dict[tuple[int, int], TileReadError] = {}
        self.stats = {"blocks": 0, "tiles_read": 0, "tiles_reused": 0, "max_block_bytes": 0, "max_frontier_bytes": 0}

    def _tiles(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _touched_tiles(self.ly[index], self.lx[index], self.read_size, self.tile, self.level_shape)

    def _view(self, buf: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Buffer pixels ``[y0, y1) x [x0, x1)`` (buffer coordinates) in either layout."""
        return buf[:, y0:y1, x0:x1] if self.chw else buf[y0:y1, x0:x1]

    def _put(self, buf: np.ndarray, y0: int, x0: int, rgb: np.ndarray) -> None:
        """Place an (h, w, 3) RGB array at buffer pixel ``(y0, x0)``."""
        h, w = rgb.shape[:2]
        self._view(buf, y0, y0 + h, x0, x0 + w)[...] = rgb.transpose(2, 0, 1) if self.chw else rgb

    def _tile_rect(self, y: int, x: int) -> tuple[int, int, int, int]:
        """Level pixels ``[y0, y1) x [x0, x1)`` of tile ``(y, x)`` inside the image."""
        th, tw = self.tile
        h, w = self.level_shape
        return y * th, min((y + 1) * th, h), x * tw, min((x + 1) * tw, w)

    def fill(self, block: _Block) -> tuple[np.ndarray, list[TileReadError]]:
        """The block's buffer and the tiles that failed to decode in it."""
        a, b, c, d = block.rect
        th, tw = self.tile
        h, w = self.level_shape
        buf = np.empty((3, b - a, d - c) if self.chw else (b - a, d - c, 3), dtype=np.uint8)
        # outside the image is white (the rest a patch reads is all in needed tiles)
        for y0, y1, x0, x1 in (
            (a, min(b, 0), c, d), (max(a, h), b, c, d), (a, b, c, min(d, 0)), (a, b, max(c, w), d),
        ):  # fmt: skip
            if y1 > y0 and x1 > x0:
                self._view(buf, y0 - a, y1 - a, x0 - c, x1 - c)[...] = 255
        _, ty, tx = self._tiles(block.index)
        gx = self.last_use.shape[1]
        keys = np.unique(ty * gx + tx)
        needed = list(zip((keys // gx).tolist(), (keys % gx).tolist(), strict=True))
        to_read = np.zeros(((b - a) // th, (d - c) // tw), dtype=bool)
        for y, x in needed:
            if (y, x) in self.bad:
                continue
            kept = self.frontier.get((y, x))
            if kept is not None:
                y0, y1, x0, x1 = self._tile_rect(y, x)
                self._view(buf, y0 - a, y1 - a, x0 - c, x1 - c)[...] = kept
                self.stats["tiles_reused"] += 1
            else:
                to_read[y - a // th, x - c // tw] = True
        self.stats["tiles_read"] += int(to_read.sum())
        errors = self._read_runs(buf, a, c, to_read)
        for y, x in needed:  # keep what later blocks need, forget what they do not
            if self.last_use[y, x] > block.ordinal:
                if (y, x) not in self.frontier and (y, x) not in self.bad:
                    y0, y1, x0, x1 = self._tile_rect(y, x)
                    kept = self._view(buf, y0 - a, y1 - a, x0 - c, x1 - c).copy()
                    self.frontier[(y, x)] = kept
                    self.frontier_bytes += kept.nbytes
            else:
                kept = self.frontier.pop((y, x), None)
                if kept is not None:
                    self.frontier_bytes -= kept.nbytes
        self.stats["blocks"] += 1
        self.stats["max_block_bytes"] = max(self.stats["max_block_bytes"], buf.nbytes)
        self.stats["max_frontier_bytes"] = max(self.stats["max_frontier_bytes"], self.frontier_bytes)
        return buf, errors

    def _read_runs(self, buf: np.ndarray, a: int, c: int, to_read: np.ndarray) -> list[TileReadError]:
        runs = []
        for r in range(to_read.shape[0]):
            if not to_read[r].any():
                continue
            edges = np.flatnonzero(np.diff(np.concatenate(([0], to_read[r].astype(np.int8), [0]))))
            runs += [(r, int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]
        if self.pool is not None and len(runs) > 1:
            results = list(self.pool.map(lambda run: self._read_run(buf, a, c, *run), runs))
        else:
            results = [self._read_run(buf, a, c, *run) for run in runs]
        return [exc for errors in results for exc in errors]

    def _read_run(self, buf: np.ndarray, a: int, c: int, r: int, s: int, e: int) -> list[TileReadError]:
        """Tiles ``s .. e - 1`` of buffer tile row ``r`` (their parts inside the image)."""
        th, tw = self.tile
        ty = a // th + r
        errors = []
        if self.tiff:  # straight from the decoder, tile by tile
            for k in range(s, e):
                tx = c // tw + k
                y0, y1, x0, x1 = self._tile_rect(ty, tx)
                try:
                    tile = self.slide.tile(self.level, ty, tx)  # type: ignore[attr-defined]
                except TileReadError as exc:
                    errors.append(exc)
                    self.bad[(ty, tx)] = exc
                    continue
                self._put(buf, y0 - a, x0 - c, tile[: y1 - y0, : x1 - x0])
            return errors
        y0, y1, _, _ = self._tile_rect(ty, c // tw + s)
        x0, x1 = c + s * tw, min(c + e * tw, self.level_shape[1])
        try:
            self._put(buf, y0 - a, x0 - c, self.slide.read_level_region(self.level, y0, x0, y1 - y0, x1 - x0))
            return []
        except TileReadError:
            pass
        for k in range(s, e):  # decoded tiles are in the backend's cache: only the bad ones fail again
            ya, yb, xa, xb = self._tile_rect(ty, c // tw + k)
            try:
                self._put(buf, ya - a, xa - c, self.slide.read_level_region(self.level, ya, xa, yb - ya, xb - xa))
            except TileReadError as exc:
                errors.append(exc)
                self.bad[(ty, c // tw + k)] = exc
        return errors

    def ok(self, block: _Block) -> np.ndarray:
        """bool per cell of the block: its window touches no bad tile."""
        ok = np.ones(len(block.index), dtype=bool)
        if self.bad:
            i, ty, tx = self._tiles(block.index)
            hit = np.fromiter(
                ((y, x) in self.bad for y, x in zip(ty.tolist(), tx.tolist(), strict=True)), bool, len(ty)
            )
            ok[i[hit]] = False
        return ok

    def cut(self, segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]], out: np.ndarray) -> None:
        """Cut the windows ``(buffer, ys, xs)`` (buffer pixels) into ``out`` (the buffers' layout) in order,
        resized to the patch size."""
        rs, ps = self.read_size, self.patch_size
        k = 0
        for buf, ys, xs in segments:
            for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
                patch = self._view(buf, y, y + rs, x, x + rs)
                if rs != ps:
                    rgb = np.ascontiguousarray(patch.transpose(1, 2, 0) if self.chw else patch)
                    patch = resize_patch(rgb, ps)
                    patch = patch.transpose(2, 0, 1) if self.chw else patch
                out[k] = patch
                k += 1


def _tile_shape(slide: Slide, level: int) -> tuple[int, int]:
    th, tw = slide.tile_shapes[level] if slide.tile_shapes else (256, 256)
    return int(th), int(tw)


def _default_band_rows(slide: Slide, level: int, step_level: float) -> int:
    """Cell rows per band: about two tiles of the read level."""
    return max(1, round(2 * _tile_shape(slide, level)[0] / step_level))


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


class _PatchStream:
    """Band after band, block after block, batches of cut patches from a background thread.

    Iterating yields ``("batch", band, cell positions, uint8 batch, buffer)`` — release the buffer with
    :meth:`release` once the batch is used — and ``("band", band, errors)`` after a band's last batch. Batches
    hold up to ``batch_size`` consecutive cells of a band (never two bands): NCHW contiguous on CPU (as models
    expect), or an NCHW view of an NHWC buffer in pinned memory for CUDA (channels-last, copied without
    blocking). At most ``prefetch`` batches wait ready; batch buffers are recycled unless ``recycle`` is off
    (then every batch gets a fresh buffer the consumer may keep).
    """

    def __init__(
        self,
        reader: _PatchReader,
        bands: list[_Band],
        *,
        batch_size: int,
        prefetch: int,
        pinned: bool,
        pool: ThreadPoolExecutor | None,
        recycle: bool,
    ) -> None:
        self.reader = reader
        self.bands = bands
        self.batch_size = batch_size
        self.nchw = reader.chw
        self.pinned = pinned
        self.pool = pool
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._free: queue.Queue = queue.Queue()
        self._buffers = 0
        # in the queue, being cut, held by the consumer; without recycling every batch gets a new buffer
        self._max_buffers = max(1, prefetch) + 5 if recycle else None
        self._lock = threading.Lock()
        self.wait_s = 0.0
        self.patches = 0
        self._thread = threading.Thread(target=self._run, name="patchdx-read", daemon=True)
        self._thread.start()

    # -- reader side -------------------------------------------------------------------------------------------
    def _put(self, item: tuple) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _buffer(self) -> torch.Tensor:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._max_buffers is None or self._buffers < self._max_buffers:
                self._buffers += 1
                ps = self.reader.patch_size
                shape = (self.batch_size, 3, ps, ps) if self.nchw else (self.batch_size, ps, ps, 3)
                return torch.empty(shape, dtype=torch.uint8, pin_memory=self.pinned)
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stopped

    def _cut(self, segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n: int) -> torch.Tensor:
        buf = self._buffer()
        self.reader.cut(segments, buf.numpy()[:n])
        return buf

    def _emit(self, band: int, segments: list, parts: list[np.ndarray], n: int) -> None:
        job = functools.partial(self._cut, segments, n)
        item: Future | torch.Tensor = self.pool.submit(job) if self.pool is not None else job()
        self._put(("batch", band, np.concatenate(parts), item))

    def _run(self) -> None:
        try:
            for bi, band in enumerate(self.bands):
                errors: list[TileReadError] = []
                segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
                parts: list[np.ndarray] = []
                count = 0
                for block in band.blocks:
                    if self._stop.is_set():
                        return
                    buf, errs = self.reader.fill(block)
                    errors += errs
                    a, _, c, _ = block.rect
                    pos = block.index[self.reader.ok(block)]
                    ys, xs = self.reader.ly[pos] - a, self.reader.lx[pos] - c
                    s = 0
                    while s < len(pos):
                        take = min(self.batch_size - count, len(pos) - s)
                        segments.append((buf, ys[s : s + take], xs[s : s + take]))
                        parts.append(pos[s : s + take])
                        count += take
                        s += take
                        if count == self.batch_size:
                            self._emit(bi, segments, parts, count)
                            segments, parts, count = [], [], 0
                    del buf
                if count:
                    self._emit(bi, segments, parts, count)
                    segments, parts = [], []
                self._put(("band", bi, errors))
            self._put(("end",))
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consumer, which raises it
            with contextlib.suppress(_Stopped):
                self._put(("error", exc))

    # -- consumer side -----------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple]:
        while True:
            t0 = time.perf_counter()
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the patch reader thread stopped without finishing") from None
                self.wait_s += time.perf_counter() - t0
                continue
            kind = item[0]
            if kind == "batch":
                _, band, cells, result = item
                buf = result.result() if isinstance(result, Future) else result
                self.wait_s += time.perf_counter() - t0
                self.patches += len(cells)
                view = buf[: len(cells)]
                yield ("batch", band, cells, view if self.nchw else view.permute(0, 3, 1, 2), buf)
            elif kind == "band":
                self.wait_s += time.perf_counter() - t0
                yield item
            elif kind == "error":
                raise item[1]
            else:
                return

    def release(self, buf: torch.Tensor) -> None:
        """Give a batch buffer back for reuse (after the model has consumed it)."""
        if self._max_buffers is not None:
            self._free.put(buf)

    def close(self) -> None:
        """Stop the reader and wait for its threads."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
            self._thread.join(timeout=0.05)
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def _open_stream(
    slide: Slide,
    level: int,
    read_size: int,
    patch_size: int,
    rows: np.ndarray,
    ly: np.ndarray,
    lx: np.ndarray,
    n_rows: int,
    first_row: int,
    per_band: int,
    *,
    batch_size: int,
    block_width: int | None,
    prefetch: int,
    read_threads: int,
    nhwc: bool,
    pinned: bool,
    recycle: bool = True,
) -> _PatchStream:
    """Plan the bands and blocks and start reading them."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if prefetch < 1:
        raise ConfigError(f"prefetch must be >= 1 batch, got {prefetch}")
    if read_threads < 1:
        raise ConfigError(f"read_threads must be >= 1, got {read_threads}")
    tile = _tile_shape(slide, level)
    tw = tile[1]
    width = int(block_width) if block_width is not None else BLOCK_WIDTH_TILES * tw
    if width < 1:
        raise ConfigError(f"block_width must be >= 1 level pixel, got {block_width}")
    width = -(-width // tw) * tw  # whole tiles
    bands, last_use = _plan(
        rows, ly, lx, n_rows, first_row, per_band, read_size, tile, slide.level_shapes[level], width
    )
    pool = ThreadPoolExecutor(max_workers=read_threads, thread_name_prefix="patchdx-cut") if read_threads > 1 else None
    reader = _PatchReader(slide, level, read_size, patch_size, ly, lx, last_use, pool, chw=not nhwc)
    return _PatchStream(
        reader, bands, batch_size=batch_size, prefetch=prefetch, pinned=pinned, pool=pool, recycle=recycle
    )


def iter_slide_patches(
    slide: Slide,
    table: pd.DataFrame,
    *,
    patch_size: int | None = None,
    batch_size: int = 32,
    band_rows: int | None = None,
    block_width: int | None = None,
    prefetch: int = 4,
    read_threads: int = 1,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """The patches of a grid table in batches, read as inference reads them (each tile decoded once).

    Args:
        slide: the opened slide the table was made for.
        table: a patch table from :func:`napari_patchdx.sampling.balanced.grid_table` (columns ``row``, ``col``,
            ``y``, ``x`` in level-0 pixels, and ``level`` / ``size``: the read level and window side, the same
            for every row).
        patch_size: side of the delivered patches (windows are resized to it); default the window side.
        batch_size: patches per batch (batches never mix bands, so the last of a band may be smaller).
        band_rows: cell rows per band (default about two tiles of the read level).
        block_width: column-block width in level pixels (default 16 tiles).
        prefetch: batches read ahead in the background.
        read_threads: threads decoding and cutting in parallel (1 = the background thread alone).

    Yields ``(positions, batch)``: positions into ``table`` (row order) and uint8 (n, 3, P, P) RGB patches.
    Patches touching an undecodable tile are skipped with a warning naming the tile.
    """
    if len(table) == 0:
        return
    levels, sizes = table["level"].unique(), table["size"].unique()
    if len(levels) != 1 or len(sizes) != 1:
        raise ConfigError("iter_slide_patches needs one read level and one window size for the whole table")
    level, read_size = int(levels[0]), int(sizes[0])
    rows = table["row"].to_numpy(np.int64)
    ds = slide.level_downsamples[level]
    ly = np.floor(table["y"].to_numpy(np.float64) / ds).astype(np.int64)
    lx = np.floor(table["x"].to_numpy(np.float64) / ds).astype(np.int64)
    if band_rows is None:
        span = int(rows.max() - rows.min())
        step = (ly.max() - ly.min()) / span if span else float(_tile_shape(slide, level)[0])
        band_rows = _default_band_rows(slide, level, max(float(step), 1.0))
    stream = _open_stream(
        slide, level, read_size, int(patch_size or read_size), rows, ly, lx, int(rows.max()) + 1,
        int(rows.min()), int(band_rows), batch_size=batch_size, block_width=block_width, prefetch=prefetch,
        read_threads=read_threads, nhwc=False, pinned=False, recycle=False,
    )  # fmt: skip
    try:
        for msg in stream:
            if msg[0] == "batch":
                yield msg[2], msg[3]  # a fresh buffer per batch: the caller may keep it
            else:
                for exc in msg[2]:
                    warnings.warn(f"{exc}; the patches touching it are skipped", UserWarning, stacklevel=2)
    finally:
        stream.close()


# ---------------------------------------------------------------------------------------------------------------
# heatmap files
# ---------------------------------------------------------------------------------------------------------------


def heatmap_paths(out_dir: str | os.PathLike[str], slide_name: str) -> dict[str, Path]:
    """Where a slide's heatmap files live: ``final`` (.ome.tif), ``sidecar`` (.json), ``partial`` (.npy) and
    ``record`` (.partial.json)."""
    out = Path(out_dir)
    stem = f"{slide_name}.heatmap"
    return {
        "final": out / f"{stem}.ome.tif",
        "sidecar": out / f"{stem}.json",
        "partial": out / f"{stem}.partial.npy",
        "record": out / f"{stem}.partial.json",
    }


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def read_heatmap(path: str | os.PathLike[str]) -> tuple[np.ndarray, Grid, dict[str, Any]]:
    """A written heatmap (``.heatmap.ome.tif`` / ``.ome.tiff``): float32 (rows, cols), its grid, and its sidecar."""
    from ..io.detect import float_map_sidecar

    path = Path(path)
    side_path = float_map_sidecar(path) or path.with_suffix(".json")
    sidecar = _read_json(side_path)
    if sidecar is None or "grid" not in sidecar:
        raise InputFileError(path, f"its heatmap sidecar {side_path.name} is missing or unreadable")
    heatmap = read_float_image(path)
    return heatmap, Grid.from_dict(sidecar["grid"]), sidecar


def _write_heatmap(path: Path, heatmap: np.ndarray, grid: Grid) -> None:
    """float32 OME-TIFF, pyramidal when large, with the cell size in micrometres when the slide's mpp is known."""
    size = (grid.spacing[0] * grid.mpp, grid.spacing[1] * grid.mpp) if grid.mpp is not None else None
    write_float_image(path, heatmap, pixel_size_um=size)


# ---------------------------------------------------------------------------------------------------------------
# the heatmap job
# ---------------------------------------------------------------------------------------------------------------


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
    mpp: float | None = None,
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
        mpp: the slide's level-0 microns per pixel when the file lacks it.
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

    Yields :class:`Progress` (cell rows done / all rows); its ``partial`` is ``(row0, block)``, the heatmap rows
    ``row0 .. row0 + len(block)`` just computed. Returns a :class:`HeatmapResult`. A tile that cannot be decoded
    leaves the cells whose patches touch it NaN and warns with the level region; the run continues.
    """
    specs = _load_models(models, device)
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
        _resolve_precision(precision, device), block_width, int(prefetch), threads,
        _resolve_channels_last(channels_last, device),
    )  # fmt: skip

    own = not isinstance(slide_path, Slide)
    slide = open_slide(slide_path, mpp=mpp) if own else slide_path
    try:
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
    stem = name[: -len(".ome.tif")] if name.lower().endswith(".ome.tif") else Path(slide.path).stem
    paths = heatmap_paths(out_dir, stem)
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
        "slide": {"name": name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "shape": [h0, w0]},
        "patch": {"size": geometry.patch_size, "center": geometry.center_size, "mpp": geometry.mpp},
        "read": {"level": level, "size": read_size, "scale": scale},
        "stride": stride,
        "tta": bool(opt.tta),
        "class_index": int(opt.class_index),
        "precision": opt.precision,
        "models": [_fingerprint(m, meta) for m, meta in specs],
        "cells": cells,
    }
    key = json.loads(json.dumps(key))  # as it reads back from JSON

    # a finished heatmap of this configuration?
    if opt.resume and paths["final"].is_file():
        side = _read_json(paths["sidecar"])
        if side is not None and side.get("key") == key:
            heatmap, saved_grid, _ = read_heatmap(paths["final"])
            yield Progress(shape[0], shape[0], f"{name}: heatmap already computed")
            return HeatmapResult(
                heatmap, saved_grid, paths["final"], Path(slide.path), tuple(map(tuple, side.get("unreadable", [])))
            )

    # the partial store: resume it or start afresh
    record = _read_json(paths["record"]) if opt.resume else None
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

    per_band = int(opt.band_rows or _default_band_rows(slide, level, step / ds))
    if per_band < 1:
        raise ConfigError(f"band_rows must be >= 1, got {opt.band_rows}")
    nhwc, pinned, lag = _feeding(opt.device, opt.channels_last)
    stream = _open_stream(
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
            block[rows[idx] - row0, cols[idx]] = _mean_probs(total, terms)
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
                    total, terms = _predict_sum(
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
            yield Progress(band.row1, shape[0], f"{name}: rows {band.row1} of {shape[0]}", partial=(band.row0, block))
    finally:
        stream.close()
        writer.shutdown(wait=True)  # the record on disk matches the store, even when the job is closed early
    for f in writes:
        f.result()

    heatmap = np.array(store, dtype=np.float32)
    del store
    _write_heatmap(paths["final"], heatmap, grid)
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


# ---------------------------------------------------------------------------------------------------------------
# chest X-rays
# ---------------------------------------------------------------------------------------------------------------


def _cxr_transform(meta: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    norm = meta.get("normalization") or {"mode": "standardize"}
    mode = norm.get("mode")
    if mode == "standardize":
        transform = transform_from_dict(norm["transform"]) if norm.get("transform") else cxr_eval_transforms()
        return lambda image: np.asarray(transform(image, np.random.default_rng(0)), dtype=np.float32)
    if mode == "unit":
        return lambda image: image
    raise ConfigError(f"chest X-ray inference supports normalization 'standardize' or 'unit', not {mode!r}")


@torch.inference_mode()
def cxr_predict(
    images: Sequence[str | os.PathLike[str] | np.ndarray],
    model: nn.Module,
    meta: dict[str, Any],
    *,
    device: str | torch.device = "cpu",
    precision: str | None = None,
) -> list[CxrPrediction]:
    """Per-class probabilities and native-size CAMs of chest X-rays (paths, or float grey arrays in [0, 1]).

    Each image is resized bilinearly to ``meta["input_size"]`` square and standardised as the checkpoint's
    ``normalization`` says (default: :func:`cxr_eval_transforms`). The CAMs (``model.cam``, logit units) are
    upsampled bilinearly with pixel-centre alignment, so CAM cell ``(r, c)`` covers native pixels
    ``[r, r + 1) * H / h`` x ``[c, c + 1) * W / w``.

    ``precision``: ``"bf16"`` (bfloat16 autocast) or ``"fp32"``; None = bf16 on CUDA, fp32 elsewhere. CAMs and
    probabilities are returned in float32 either way.
    """
    from ..io.cxr import read_cxr

    size = int(meta["input_size"])
    classes = tuple(meta.get("classes") or [str(k) for k in range(getattr(model, "num_classes", 1))])
    transform = _cxr_transform(meta)
    dev = torch.device(device)
    autocast = functools.partial(_autocast, dev, _resolve_precision(precision, dev))
    model = model.to(dev).eval()
    out = []
    for item in images:
        source, spacing = None, None
        if isinstance(item, np.ndarray):
            image = np.asarray(item, dtype=np.float32)
        else:
            source = Path(item)
            cxr = read_cxr(source)
            image, spacing = cxr.image.astype(np.float32, copy=False), cxr.spacing
        if image.ndim != 2:
            raise ConfigError(f"chest X-rays are 2-D grey images, got shape {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(transform(resize_square(image, size))))[None, None]
        if dev.type == "cuda":
            x = x.pin_memory().to(dev, non_blocking=True)
        with autocast():
            cam = model.cam(x.to(dev)).float()
        probs = torch.sigmoid(cam.mean(dim=(2, 3)))[0]
        native = F.interpolate(cam, size=image.shape, mode="bilinear", align_corners=False)[0]
        out.append(
            CxrPrediction(
                classes,
                probs.cpu().numpy().astype(np.float32),
                native.cpu().numpy().astype(np.float32),
                (int(image.shape[0]), int(image.shape[1])),
                source,
                None if spacing is None else (float(spacing[0]), float(spacing[1])),
            )
        )
    return out


CAM_FORMAT = "napari-patchdx-cam"


def cam_paths(out_dir: str | os.PathLike[str], image_name: str) -> dict[str, Path]:
    """Where an X-ray's prediction lives: ``final`` (``<name>.cam.ome.tif``, the CAMs) and ``sidecar``
    (``<name>.cam.json``: classes, probabilities, native shape, source)."""
    out = Path(out_dir)
    return {"final": out / f"{image_name}.cam.ome.tif", "sidecar": out / f"{image_name}.cam.json"}


def save_cxr_prediction(prediction: CxrPrediction, out_dir: str | os.PathLike[str], name: str | None = None) -> Path:
    """Write one X-ray's CAMs as a (class, Y, X) float32 OME-TIFF (channels named by class) and its probabilities
    in the ``.cam.json`` sidecar; returns the OME-TIFF path. ``name`` defaults to the source file's stem."""
    if name is None:
        if prediction.source is None:
            raise ConfigError("save_cxr_prediction: a prediction of an in-memory array needs name=")
        name = prediction.source.name.split(".")[0]
    paths = cam_paths(out_dir, name)
    paths["final"].parent.mkdir(parents=True, exist_ok=True)
    um = None if prediction.spacing is None else (1000.0 * prediction.spacing[0], 1000.0 * prediction.spacing[1])
    write_float_image(paths["final"], prediction.cams, pixel_size_um=um, channel_names=prediction.classes)
    sidecar = {
        "format": CAM_FORMAT,
        "version": 1,
        "classes": list(prediction.classes),
        "probabilities": [float(p) for p in prediction.probabilities],
        "shape": list(prediction.shape),
        "source": str(prediction.source) if prediction.source is not None else None,
        "values": "class activation maps in logit units, upsampled bilinearly to the native image (row, col)",
    }
    if prediction.spacing is not None:  # (row, col) mm; absent = unknown (readers may ask the source X-ray)
        sidecar["spacing"] = [float(v) for v in prediction.spacing]
    atomic_write_text(paths["sidecar"], json.dumps(sidecar, indent=1))
    return paths["final"]


def read_cxr_prediction(path: str | os.PathLike[str]) -> CxrPrediction:
    """A prediction written by :func:`save_cxr_prediction` (its ``.cam.ome.tif`` or ``.cam.json``)."""
    path = Path(path)
    base = path.name
    for suffix in (".cam.ome.tif", ".cam.json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    paths = cam_paths(path.parent, base)
    side = _read_json(paths["sidecar"])
    if side is None or side.get("format") != CAM_FORMAT:
        raise InputFileError(paths["sidecar"], "missing or not a napari-patchdx CAM sidecar")
    cams = read_float_image(paths["final"])
    classes = tuple(side["classes"])
    if cams.ndim == 2:
        cams = cams[None]
    if cams.shape[0] != len(classes) or list(cams.shape[1:]) != list(side["shape"]):
        raise InputFileError(
            paths["final"],
            f"CAM shape {cams.shape} does not match its sidecar ({len(classes)} classes, {side['shape']})",
        )
    source = Path(side["source"]) if side.get("source") else None
    spacing = tuple(float(v) for v in side["spacing"]) if side.get("spacing") else None
    probabilities = np.asarray(side["probabilities"], np.float32)
    return CxrPrediction(classes, probabilities, cams, tuple(side["shape"]), source, spacing)
