"""Map-style training data and their order: :class:`WholeImageDataset` (whole chest X-rays) and
:class:`EpochOrder` (the indices one rank reads in one epoch, resumable mid-epoch).
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..sampling.datasets import resize_square


class WholeImageDataset(Dataset):
    """Whole chest X-rays: item ``i`` is ``(image (1, size, size) float32, target (C,) float32)``.

    Each image is read with :func:`napari_patchdx.io.cxr.read_cxr` (float32 in [0, 1]), resized bilinearly to
    ``size`` square, then transformed (training: sharpen / blur and per-image standardisation; evaluation:
    standardisation) with generator ``[seed, epoch, i]``. Resized images are kept in a per-process cache of at
    most ``cache_mb`` megabytes.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        targets: np.ndarray,
        size: int,
        transforms: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None,
        seed: int = 0,
        cache_mb: float = 512.0,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.targets = np.asarray(targets, dtype=np.float32).reshape(len(self.paths), -1)
        self.size = int(size)
        self.transforms = transforms
        self.seed = int(seed)
        self.epoch = 0
        self.cache_items = max(1, int(cache_mb * 2**20 // (4 * self.size * self.size)))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        return state

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation randomness (once per epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> np.ndarray:
        """The resized image ``index`` before augmentation (float32 in [0, 1])."""
        from ..io.cxr.read import read_cxr

        if self._pid != os.getpid():
            self._cache, self._pid = OrderedDict(), os.getpid()
        cached = self._cache.get(index)
        if cached is None:
            cached = resize_square(read_cxr(self.paths[index]).image, self.size)
            self._cache[index] = cached
            while len(self._cache) > self.cache_items:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return cached

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.image(int(index))
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        out = self.transforms(image.copy(), rng) if self.transforms is not None else image.copy()
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)[None]), torch.from_numpy(
            self.targets[int(index)].copy()
        )


class EpochOrder(Sampler[int]):
    """The indices one rank reads in one epoch, from batch ``start_batch`` on (a resumable ``DistributedSampler``).

    ``shuffle``: a permutation from ``numpy.random.default_rng(key)``; with several ranks it is padded by
    wrapping to a multiple of ``world`` (``pad``) and rank ``r`` takes positions ``r, r + world, ...``.
    """

    def __init__(
        self,
        n: int,
        key: Sequence[int],
        *,
        shuffle: bool,
        rank: int = 0,
        world: int = 1,
        pad: bool = True,
        batch_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        order = np.random.default_rng(list(key)).permutation(n) if shuffle else np.arange(n)
        if pad and world > 1 and n % world:
            order = np.concatenate([order, order[: world - n % world]])
        self.indices = order[rank::world].astype(np.int64)
        self.start = int(start_batch) * int(batch_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices[self.start :].tolist())

    def __len__(self) -> int:
        return max(0, len(self.indices) - self.start)


def batches_per_epoch(n: int, batch_size: int, world: int) -> int:
    """Batches per epoch of ``n`` map-style items on each of ``world`` ranks (padded shards)."""
    return math.ceil(math.ceil(n / world) / batch_size) if n else 0
