"""Torch datasets that read patches lazily and augment them.

* :class:`PatchTableDataset` — map-style over a patch table (slides or X-rays).
* :class:`PatchStream` — an endless iterable over a sampler's draws (Liu's balanced sampler or the X-ray lesion
  sampler) that shards them across DDP ranks and DataLoader workers and can start at any draw index (resume).

Files are opened lazily, once per process: a dataset pickles as its table and settings, and every DataLoader
worker (fork or spawn) opens its own slide handles. Augmentation randomness for item ``i`` in epoch ``e`` comes
from ``numpy.random.default_rng([seed, e, i])``, so results do not depend on worker count or scheduling.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .._fsutil import atomic_path
from ..io.names import file_name
from ..io.slides.base import Slide
from ..io.slides.open import open_slide

Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]

__all__ = [
    "BalancedPatchStream",
    "PatchReader",
    "PatchStream",
    "PatchTableDataset",
    "export_patch_images",
    "resize_patch",
    "resize_square",
    "to_float",
]


class PatchReader:
    """Reads patch-table rows as uint8 images, keeping a few files open per process.

    Slides give (patch_size, patch_size, 3) RGB; chest X-rays (any file ``read_cxr`` reads) give
    (patch_size, patch_size) float32 in [0, 1]. A read window whose size differs from ``patch_size`` is resized
    (area averaging when shrinking, bilinear when enlarging).
    """

    def __init__(self, patch_size: int, mpp: dict[str, float] | None = None, max_open: int = 16) -> None:
        self.patch_size = int(patch_size)
        self.mpp = dict(mpp or {})
        self.max_open = int(max_open)
        self._pid = -1
        self._open: OrderedDict[str, Any] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"patch_size": self.patch_size, "mpp": self.mpp, "max_open": self.max_open}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def _handle(self, path: str) -> Any:
        if self._pid != os.getpid():  # a new worker process: nothing inherited is used
            self._open = OrderedDict()
            self._pid = os.getpid()
        handle = self._open.get(path)
        if handle is None:
            handle = _open_image(path, self.mpp.get(path))
            self._open[path] = handle
            while len(self._open) > self.max_open:
                _, old = self._open.popitem(last=False)
                if isinstance(old, Slide):
                    old.close()
        else:
            self._open.move_to_end(path)
        return handle

    def read(self, slide: str, x: int, y: int, level: int, size: int) -> np.ndarray:
        """The patch of a table row (``slide, x, y, level, size``)."""
        handle = self._handle(str(slide))
        if isinstance(handle, Slide):
            patch = handle.read_region(int(y), int(x), int(size), int(size), int(level))
        else:
            patch = _crop(handle, int(y), int(x), int(size))
        if patch.shape[0] != self.patch_size:
            patch = resize_patch(patch, self.patch_size)
        return patch


def _open_image(path: str, mpp: float | None) -> Any:
    from ..io.detect import detect_kind

    if detect_kind(path) == "slide":
        return open_slide(path, mpp=mpp)
    from ..io.cxr.read import read_cxr

    return read_cxr(path).image


def _crop(image: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """A size x size crop, zero-padded where it leaves the image."""
    out = np.zeros((size, size), dtype=image.dtype)
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + size, image.shape[0]), min(x + size, image.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = image[y0:y1, x0:x1]
    return out


def resize_patch(patch: np.ndarray, size: int) -> np.ndarray:
    """A square read window resized to ``size`` x ``size``: area averaging when shrinking, bilinear when enlarging."""
    if patch.dtype == np.uint8:
        img = Image.fromarray(patch)
        method = Image.Resampling.BOX if patch.shape[0] > size else Image.Resampling.BILINEAR
        return np.asarray(img.resize((size, size), method))
    img = Image.fromarray(patch.astype(np.float32), mode="F")
    method = Image.Resampling.BOX if patch.shape[0] > size else Image.Resampling.BILINEAR
    return np.asarray(img.resize((size, size), method), dtype=np.float32)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """A whole float grey image (e.g. a chest X-ray) resized bilinearly (PIL) to ``size`` x ``size``, float32."""
    if image.shape == (size, size):
        return image.astype(np.float32, copy=False)
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def _prepare(patch: np.ndarray, transforms: Transform | None, rng: np.random.Generator) -> torch.Tensor:
    """A read patch -> CHW tensor.

    Slide (RGB uint8) patches stay uint8 — a quarter of the bytes through the DataLoader's worker pipes; the model
    side divides by 255 (:func:`to_float`). Augmentation runs in float and is quantised back to uint8. X-ray
    patches are float32 (they may be standardised to negative values).
    """
    if patch.dtype == np.uint8:
        if transforms is not None:
            out = transforms(patch.astype(np.float32) / 255.0, rng)
            patch = (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))
    image = patch.astype(np.float32)
    if transforms is not None:
        image = transforms(image, rng).astype(np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """A batch from these datasets as float32: uint8 RGB scaled to [0, 1]; float batches unchanged."""
    return batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch.float()


def _targets(table: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    multi = [c for c in table.columns if c.startswith("label_")]
    if multi:
        return table[multi].to_numpy(np.float32), tuple(c[len("label_") :] for c in multi)
    return table[["label"]].to_numpy(np.float32), ("tumor",)


class PatchTableDataset(Dataset):
    """Map-style dataset over a patch table: item ``i`` is ``(image CHW, target float32 (C,))``.

    Slide patches are uint8 RGB (use :func:`to_float` on the batch), X-ray patches float32 gray.

    Args:
        table: a patch table (see :mod:`napari_patchdx.sampling.tables`).
        patch_size: side of the patches the model sees.
        transforms: augmentation ``f(image float32 HWC / HW in [0, 1], rng) -> image`` or None.
        seed: base seed of the augmentation randomness.
        mpp: per-slide microns-per-pixel overrides (path -> mpp) for files that lack them.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        patch_size: int = 299,
        transforms: Transform | None = None,
        seed: int = 0,
        mpp: dict[str, float] | None = None,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.reader = PatchReader(patch_size, mpp)
        self.transforms = transforms
        self.seed = int(seed)
        self.epoch = 0
        self._targets, self.classes = _targets(self.table)
        self._rows = self.table[["slide", "x", "y", "level", "size"]].to_numpy(object)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation randomness (call once per epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        slide, x, y, level, size = self._rows[index]
        patch = self.reader.read(slide, x, y, level, size)
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        return _prepare(patch, self.transforms, rng), torch.from_numpy(self._targets[index].copy())


class PatchStream(IterableDataset):
    """Endless patches from a sampler's ``draw(i)`` (Liu's balanced sampler or the X-ray lesion sampler).

    Draws are handed out in blocks of ``batch_size`` (give the DataLoader the same batch size). DDP rank ``r`` of
    ``world`` reads global blocks ``r, r + world, ...``, and DataLoader worker ``w`` of ``W`` yields every ``W``-th of
    the rank's blocks; since the DataLoader takes batches from its workers in turn, the rank's batch ``k`` holds
    exactly draws ``start + (k * world + r) * batch_size ...``, whatever ``W`` is. ``start`` resumes a stream after
    ``start`` draws were consumed. Augmentation of draw ``i`` uses generator ``[sampler.seed, 1, i]``.

    Items are ``(image, target)`` as in :class:`PatchTableDataset`; targets are the ``label_<class>`` columns of
    ``classes`` when given (multi-label X-ray patches), else ``[label]``.
    """

    def __init__(
        self,
        sampler: Any,
        transforms: Transform | None = None,
        *,
        start: int = 0,
        batch_size: int = 1,
        patch_size: int | None = None,
        rank: int = 0,
        world: int = 1,
        classes: Sequence[str] | None = None,
        mpp: dict[str, float] | None = None,
    ) -> None:
        self.sampler = sampler
        size = patch_size if patch_size is not None else sampler.geometry.patch_size
        self.reader = PatchReader(size, dict(mpp or {}))
        self.transforms = transforms
        self.start = int(start)
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world = int(world)
        self.label_columns = None if classes is None else [f"label_{c}" for c in classes]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        block = worker
        while True:
            first = self.start + (block * self.world + self.rank) * self.batch_size
            for index in range(first, first + self.batch_size):
                yield self.item(index)
            block += workers

    def item(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``index`` of the sampler as ``(image CHW, target (C,))``."""
        row = self.sampler.draw(index)
        patch = self.reader.read(row["slide"], row["x"], row["y"], row["level"], row["size"])
        rng = np.random.default_rng([self.sampler.seed, 1, index])
        if self.label_columns is None:
            target = torch.tensor([float(row["label"])])
        else:
            target = torch.tensor([float(row[c]) for c in self.label_columns])
        return _prepare(patch, self.transforms, rng), target


#: The stream over Liu et al.'s balanced sampler (one rank, binary targets) is the general stream.
BalancedPatchStream = PatchStream


def export_patch_images(
    table: pd.DataFrame,
    out_dir: str | os.PathLike[str],
    patch_size: int = 299,
    limit: int | None = None,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Write patches as PNG files ``<slide>_y<y>_x<x>_l<label>.png`` for inspection; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reader = PatchReader(patch_size)
    rows = table if limit is None else table.head(int(limit))
    written = []
    for k, row in enumerate(rows.itertuples(index=False)):
        patch = reader.read(row.slide, row.x, row.y, row.level, row.size)
        if patch.dtype != np.uint8:
            patch = (np.clip(patch, 0, 1) * 255 + 0.5).astype(np.uint8)
        stem = names[k] if names is not None else f"{file_name(row.slide)}_y{row.y}_x{row.x}_l{row.label}"
        path = out / f"{stem}.png"
        with atomic_path(path) as tmp:
            Image.fromarray(patch).save(tmp, format="PNG")
        written.append(path)
    return written
