"""Inference: tumour-probability heatmaps of whole slides (Liu et al. 2017) and lesion CAMs of chest X-rays.

Slides
------
:func:`slide_heatmap_job` slides the patch window over the grid sampler's cells
(:func:`napari_patchdx.data.sampling.grid_table`: stride = the central region by default, cell ``(row, col)``
covers level-0 ``[row, row + 1) * stride0`` and its patch is centred on the cell) and writes one probability per
cell: the sigmoid of the logit, averaged over the 8 orientations (test-time augmentation) and over the ensemble of
models. Cells that were not evaluated (no tissue, or a patch touching an unreadable tile) are **NaN**, never 0:
"unknown" is not "normal".

Read each byte once: the grid is processed in bands of cell rows. For each band one tile-aligned block of the
plan's pyramid level is read (:meth:`Slide.read_level_region`) covering all the band's patches; the rows shared
with the previous band are copied from the previous block instead of being read again, and the overlapping
patches are cut from memory with numpy. The next band is read in a background thread while the model runs.
Memory holds one or two bands (one row of cells across the tissue's width) and the heatmap; it does not grow
with the slide's height.

Nothing lost: bands are written as they finish into ``<out_dir>/<slide>.heatmap.partial.npy`` (a ``.npy``
memmap) and ``<slide>.heatmap.partial.json`` records, atomically, how many cell rows are done and for which
configuration, so an interrupted job resumes from its last finished band. The finished heatmap is
``<out_dir>/<slide>.heatmap.ome.tif`` (float32, pyramidal when large) with its geometry in the sidecar
``<slide>.heatmap.json``; a finished heatmap with the same configuration is loaded, not recomputed, unless
``resume=False``.

Chest X-rays
------------
:func:`cxr_predict` resizes each image to the checkpoint's working size, standardises it like
:func:`napari_patchdx.data.augment.cxr_eval_transforms` and returns per-class probabilities and class activation
maps upsampled to the native image (CAM cell ``(r, c)`` covers native pixels ``[r, r + 1) * H / h`` x
``[c, c + 1) * W / w``).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._fsutil import atomic_path, atomic_write_text
from .data.augment import ORIENTATIONS, cxr_eval_transforms, orient_torch, transform_from_dict
from .data.dataset import resize_patch, resize_square, to_float
from .data.sampling import PatchGeometry, SlideSource, grid_table
from .data.tissue import TissueConfig, TissueMask, detect_tissue
from .errors import ConfigError, InputFileError
from .geometry import Grid
from .io.ometiff import read_float_image, write_float_image
from .io.slides import Slide, TileReadError, open_slide
from .progress import Job, Progress

__all__ = [
    "CxrPrediction",
    "HeatmapResult",
    "cam_paths",
    "cxr_predict",
    "heatmap_paths",
    "predict_patches",
    "read_cxr_prediction",
    "read_heatmap",
    "save_cxr_prediction",
    "slide_heatmap_job",
]

HEATMAP_FORMAT = "napari-patchdx-heatmap"
HEATMAP_VERSION = 1

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
    """

    heatmap: np.ndarray
    grid: Grid
    path: Path
    slide: Path
    unreadable: tuple[tuple[int, int, int, int, int], ...] = ()


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
    """

    classes: tuple[str, ...]
    probabilities: np.ndarray
    cams: np.ndarray = field(repr=False)
    shape: tuple[int, int]
    source: Path | None = None


# ---------------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------------


def _load_models(models: Any, device: str | torch.device) -> list[ModelSpec]:
    """``(model, meta)`` pairs from a pair, a checkpoint path, or a list of either; models in eval mode."""
    from .models import load_checkpoint

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


@torch.inference_mode()
def predict_patches(
    models: Sequence[ModelSpec],
    batch: torch.Tensor,
    *,
    tta: bool = True,
    device: str | torch.device = "cpu",
    class_index: int = 0,
) -> np.ndarray:
    """Tumour probability of uint8 NCHW RGB patches: sigmoid of logit ``class_index``, averaged over the 8
    orientations (when ``tta``) and over ``models``. Returns float32 (N,)."""
    total = torch.zeros(batch.shape[0], dtype=torch.float64)
    ks = range(ORIENTATIONS) if tta else (0,)
    for model, meta in models:
        x = _slide_input(batch, meta).to(device)
        for k in ks:
            logits = model(orient_torch(x, k) if k else x)
            total += torch.sigmoid(logits[:, class_index].float()).double().cpu()
    return (total / (len(models) * len(ks))).numpy().astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# reading bands
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _Band:
    """One band of cell rows: which cells, and the level block holding their patches."""

    row0: int
    row1: int
    index: np.ndarray  # positions into the cell arrays
    block: tuple[int, int, int, int]  # level rows [a, b), cols [c, d), tile-aligned


@dataclass
class _BandData:
    band: _Band
    patches: np.ndarray  # (n, P, P, 3) uint8 of the readable cells
    ok: np.ndarray  # bool (len(band.index),): the patch touches no unreadable tile
    errors: list[TileReadError]


class _BandReader:
    """Reads the bands' blocks in order, reusing the rows a band shares with the previous one.

    Only ever called from one thread at a time, band after band (the prefetch executor has one worker).
    """

    def __init__(self, slide: Slide, level: int, read_size: int, patch_size: int, ly: np.ndarray, lx: np.ndarray):
        self.slide = slide
        self.level = level
        self.read_size = read_size
        self.patch_size = patch_size
        self.ly, self.lx = ly, lx
        self.th, self.tw = (int(v) for v in (slide.tile_shapes[level] if slide.tile_shapes else (256, 256)))
        self.prev: tuple[tuple[int, int, int, int], np.ndarray] | None = None
        self.bad: list[tuple[int, int, int, int]] = []  # (y, x, h, w) level pixels

    def block_for(self, index: np.ndarray) -> tuple[int, int, int, int]:
        th, tw, rs = self.th, self.tw, self.read_size
        a = int(self.ly[index].min()) // th * th
        b = -(-(int(self.ly[index].max()) + rs) // th) * th
        c = int(self.lx[index].min()) // tw * tw
        d = -(-(int(self.lx[index].max()) + rs) // tw) * tw
        return a, b, c, d

    def _read_rect(self, out: np.ndarray, origin: tuple[int, int], r0: int, r1: int, c0: int, c1: int) -> list:
        """Fill ``out[r0 - oy : r1 - oy, c0 - ox : c1 - ox]`` from the level; unreadable tiles stay white."""
        if r1 <= r0 or c1 <= c0:
            return []
        oy, ox = origin
        try:
            out[r0 - oy : r1 - oy, c0 - ox : c1 - ox] = self.slide.read_level_region(
                self.level, r0, c0, r1 - r0, c1 - c0
            )
            return []
        except TileReadError:
            pass
        errors = []  # tile by tile: decoded tiles are in the slide's cache, only the bad ones fail again
        for y in range(r0, r1, self.th):
            for x in range(c0, c1, self.tw):
                h, w = min(self.th, r1 - y), min(self.tw, c1 - x)
                try:
                    out[y - oy : y - oy + h, x - ox : x - ox + w] = self.slide.read_level_region(self.level, y, x, h, w)
                except TileReadError as exc:
                    errors.append(exc)
                    self.bad.append((y, x, h, w))
        return errors

    def read(self, band: _Band) -> _BandData:
        a, b, c, d = band.block
        buf = np.full((b - a, d - c, 3), 255, dtype=np.uint8)
        errors: list[TileReadError] = []
        shared_end = a
        if self.prev is not None:
            (pa, pb, pc, pd), pbuf = self.prev
            shared_end = max(a, min(b, pb))
            if shared_end > a:  # rows [a, shared_end) were read for the previous band
                lo, hi = max(c, pc), min(d, pd)
                if hi > lo:
                    buf[: shared_end - a, lo - c : hi - c] = pbuf[a - pa : shared_end - pa, lo - pc : hi - pc]
                    errors += self._read_rect(buf, (a, c), a, shared_end, c, lo)
                    errors += self._read_rect(buf, (a, c), a, shared_end, hi, d)
                else:
                    errors += self._read_rect(buf, (a, c), a, shared_end, c, d)
        errors += self._read_rect(buf, (a, c), shared_end, b, c, d)
        self.prev = (band.block, buf)
        ys, xs, rs = self.ly[band.index] - a, self.lx[band.index] - c, self.read_size
        ok = np.ones(len(band.index), dtype=bool)
        for y, x, h, w in self.bad:
            hit = (ys + a < y + h) & (ys + a + rs > y) & (xs + c < x + w) & (xs + c + rs > x)
            ok &= ~hit
        patches = np.empty((int(ok.sum()), self.patch_size, self.patch_size, 3), dtype=np.uint8)
        for i, (y, x) in enumerate(zip(ys[ok], xs[ok], strict=True)):
            patch = buf[y : y + rs, x : x + rs]
            patches[i] = patch if rs == self.patch_size else resize_patch(np.ascontiguousarray(patch), self.patch_size)
        return _BandData(band, patches, ok, errors)


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
    """A written heatmap (``.heatmap.ome.tif``): float32 (rows, cols), its grid, and its sidecar dict."""
    path = Path(path)
    name = path.name[: -len(".ome.tif")] if path.name.endswith(".ome.tif") else path.stem
    sidecar = _read_json(path.with_name(f"{name}.json"))
    if sidecar is None or "grid" not in sidecar:
        raise ConfigError(f"{path}: heatmap sidecar {name}.json is missing or unreadable")
    heatmap = read_float_image(path)
    return heatmap, Grid.from_dict(sidecar["grid"]), sidecar


def _write_heatmap(path: Path, heatmap: np.ndarray, grid: Grid) -> None:
    """float32 OME-TIFF, pyramidal when large, with the cell size in micrometres when the slide's mpp is known."""
    size = (grid.spacing[0] * grid.mpp, grid.spacing[1] * grid.mpp) if grid.mpp is not None else None
    write_float_image(path, heatmap, pixel_size_um=size)


# ---------------------------------------------------------------------------------------------------------------
# the heatmap job
# ---------------------------------------------------------------------------------------------------------------


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

    Yields :class:`Progress` (cell rows done / all rows); its ``partial`` is ``(row0, block)``, the heatmap rows
    ``row0 .. row0 + len(block)`` just computed. Returns a :class:`HeatmapResult`. A tile that cannot be decoded
    leaves the cells whose patches touch it NaN and warns with the level region; the run continues.
    """
    specs = _load_models(models, device)
    meta = specs[0][1]
    psize = int(patch_size or meta.get("input_size") or 0)
    if psize < 1:
        raise ConfigError("patch size unknown: the checkpoint meta has no input_size; pass patch_size=")
    csize = int(center_size or meta.get("center_size") or psize)
    geometry = PatchGeometry(psize, csize, patch_mpp if patch_mpp is not None else meta.get("mpp"))
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")

    own = not isinstance(slide_path, Slide)
    slide = open_slide(slide_path, mpp=mpp) if own else slide_path
    try:
        result = yield from _heatmap(
            slide, specs, Path(out_dir), geometry, tta, stride, batch_size, tissue, min_tissue, device, resume,
            band_rows, class_index,
        )  # fmt: skip
    finally:
        if own:
            slide.close()
    return result


def _heatmap(
    slide: Slide,
    specs: list[ModelSpec],
    out_dir: Path,
    geometry: PatchGeometry,
    tta: bool,
    stride: int | None,
    batch_size: int,
    tissue: TissueMask | TissueConfig | None,
    min_tissue: float,
    device: str | torch.device,
    resume: bool,
    band_rows: int | None,
    class_index: int,
) -> Job[HeatmapResult]:
    name = Path(slide.path).name
    stem = name[: -len(".ome.tif")] if name.lower().endswith(".ome.tif") else Path(slide.path).stem
    paths = heatmap_paths(out_dir, stem)
    out_dir.mkdir(parents=True, exist_ok=True)

    yield Progress(0, 0, f"{name}: tissue detection")
    if not isinstance(tissue, TissueMask):
        tissue = detect_tissue(slide, tissue or TissueConfig())
    stride = int(stride or geometry.center_size)
    level, read_size, scale = geometry.plan(slide)
    table = grid_table(
        SlideSource(Path(slide.path), slide, tissue),
        geometry,
        stride=stride,
        min_tissue=max(float(min_tissue), 1e-9),
        labels=False,
    )
    step = stride * scale
    h0, w0 = slide.shape
    shape = (int(np.ceil(h0 / step)), int(np.ceil(w0 / step)))
    grid = Grid(shape, (step, step), (0.0, 0.0), slide.mpp)
    rows = table["row"].to_numpy(np.int64)
    cols = table["col"].to_numpy(np.int64)
    ds = slide.level_downsamples[level]
    ly = np.floor(table["y"].to_numpy(np.float64) / ds).astype(np.int64)  # as Slide.read_region rounds
    lx = np.floor(table["x"].to_numpy(np.float64) / ds).astype(np.int64)

    st = os.stat(slide.path)
    cells = hashlib.sha256(rows.tobytes() + cols.tobytes()).hexdigest()
    key = {
        "format": HEATMAP_FORMAT,
        "version": HEATMAP_VERSION,
        "slide": {"name": name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "shape": [h0, w0]},
        "patch": {"size": geometry.patch_size, "center": geometry.center_size, "mpp": geometry.mpp},
        "read": {"level": level, "size": read_size, "scale": scale},
        "stride": stride,
        "tta": bool(tta),
        "class_index": int(class_index),
        "models": [_fingerprint(m, meta) for m, meta in specs],
        "cells": cells,
    }
    key = json.loads(json.dumps(key))  # as it reads back from JSON

    # a finished heatmap of this configuration?
    if resume and paths["final"].is_file():
        side = _read_json(paths["sidecar"])
        if side is not None and side.get("key") == key:
            heatmap, saved_grid, _ = read_heatmap(paths["final"])
            yield Progress(shape[0], shape[0], f"{name}: heatmap already computed")
            return HeatmapResult(
                heatmap, saved_grid, paths["final"], Path(slide.path), tuple(map(tuple, side.get("unreadable", [])))
            )

    # the partial store: resume it or start afresh
    record = _read_json(paths["record"]) if resume else None
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

    def save_record(store: np.memmap, rows_done: int) -> None:
        store.flush()
        payload = {"key": key, "rows_done": rows_done, "unreadable": unreadable}
        atomic_write_text(paths["record"], json.dumps(payload, indent=1))

    if record is None:
        save_record(store, 0)

    # bands of cell rows still to do
    th = slide.tile_shapes[level][0] if slide.tile_shapes else 256
    per_band = int(band_rows or max(1, round(2 * th / (step / ds))))
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    reader = _BandReader(slide, level, read_size, geometry.patch_size, ly, lx)
    bands: list[_Band] = []
    for start in range(done, shape[0], per_band):
        end = min(start + per_band, shape[0])
        index = order[np.searchsorted(sorted_rows, start) : np.searchsorted(sorted_rows, end)]
        bands.append(_Band(start, end, index, reader.block_for(index) if index.size else (0, 0, 0, 0)))
    yield Progress(done, shape[0], f"{name}: {len(rows)} tissue cells, {len(bands)} bands to go")

    def load(band: _Band) -> _BandData | None:
        return reader.read(band) if band.index.size else None

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patchdx-read")
    try:
        pending: Future | None = pool.submit(load, bands[0]) if bands else None
        for i, band in enumerate(bands):
            data = pending.result() if pending is not None else None
            pending = pool.submit(load, bands[i + 1]) if i + 1 < len(bands) else None
            block = np.full((band.row1 - band.row0, shape[1]), np.nan, dtype=np.float32)
            if data is not None:
                for exc in data.errors:
                    unreadable.append([exc.level, *exc.region])
                    warnings.warn(f"{exc}; the cells whose patches touch it are left NaN", UserWarning, stacklevel=2)
                probs = np.empty(len(data.patches), dtype=np.float32)
                for s in range(0, len(data.patches), batch_size):
                    batch = torch.from_numpy(
                        np.ascontiguousarray(data.patches[s : s + batch_size].transpose(0, 3, 1, 2))
                    )
                    probs[s : s + len(batch)] = predict_patches(
                        specs, batch, tta=tta, device=device, class_index=class_index
                    )
                index = band.index[data.ok]
                block[rows[index] - band.row0, cols[index]] = probs
            store[band.row0 : band.row1] = block
            save_record(store, band.row1)
            yield Progress(band.row1, shape[0], f"{name}: rows {band.row1} of {shape[0]}", partial=(band.row0, block))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

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
    return HeatmapResult(heatmap, grid, paths["final"], Path(slide.path), tuple(tuple(v) for v in unreadable))


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
) -> list[CxrPrediction]:
    """Per-class probabilities and native-size CAMs of chest X-rays (paths, or float grey arrays in [0, 1]).

    Each image is resized bilinearly to ``meta["input_size"]`` square and standardised as the checkpoint's
    ``normalization`` says (default: :func:`cxr_eval_transforms`). The CAMs (``model.cam``, logit units) are
    upsampled bilinearly with pixel-centre alignment, so CAM cell ``(r, c)`` covers native pixels
    ``[r, r + 1) * H / h`` x ``[c, c + 1) * W / w``.
    """
    from .io.cxr import read_cxr

    size = int(meta["input_size"])
    classes = tuple(meta.get("classes") or [str(k) for k in range(getattr(model, "num_classes", 1))])
    transform = _cxr_transform(meta)
    model = model.to(device).eval()
    out = []
    for item in images:
        source = None
        if isinstance(item, np.ndarray):
            image = np.asarray(item, dtype=np.float32)
        else:
            source = Path(item)
            image = read_cxr(source).image.astype(np.float32, copy=False)
        if image.ndim != 2:
            raise ConfigError(f"chest X-rays are 2-D grey images, got shape {image.shape}")
        x = torch.from_numpy(np.ascontiguousarray(transform(resize_square(image, size))))[None, None].to(device)
        cam = model.cam(x).float()
        probs = torch.sigmoid(cam.mean(dim=(2, 3)))[0]
        native = F.interpolate(cam, size=image.shape, mode="bilinear", align_corners=False)[0]
        out.append(
            CxrPrediction(
                classes,
                probs.cpu().numpy().astype(np.float32),
                native.cpu().numpy().astype(np.float32),
                (int(image.shape[0]), int(image.shape[1])),
                source,
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
    write_float_image(paths["final"], prediction.cams, channel_names=prediction.classes)
    sidecar = {
        "format": CAM_FORMAT,
        "version": 1,
        "classes": list(prediction.classes),
        "probabilities": [float(p) for p in prediction.probabilities],
        "shape": list(prediction.shape),
        "source": str(prediction.source) if prediction.source is not None else None,
        "values": "class activation maps in logit units, upsampled bilinearly to the native image (row, col)",
    }
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
    return CxrPrediction(classes, np.asarray(side["probabilities"], np.float32), cams, tuple(side["shape"]), source)
