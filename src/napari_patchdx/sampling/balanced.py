"""Liu et al. 2017's balanced patch sampler (:class:`BalancedSampler`) over prepared slides.

Positions are drawn on the tissue mask's low-resolution grid (about 8 um/px) and labelled exactly by the
central-region rule. Draw ``i`` of a sampler is a pure function of ``(seed, i)``, so a stream can be resumed at any
index and reproduced from its seed alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .patches import PatchGeometry
from .sources import SlideSource
from .tables import patch_frame

__all__ = ["BalancedSampler"]


class BalancedSampler:
    """Liu et al. 2017: tumour or normal with probability ``p_tumor`` / 1 - ``p_tumor``, then a slide holding that
    class uniformly, then a patch position of that class uniformly on it.

    Positions are drawn uniformly inside the grid cells of the class (tumour cells, or tissue cells that are not
    tumour), optionally shifted by a uniform positional jitter of up to ``jitter`` patch pixels, then labelled
    exactly by the central-region rule; a draw whose exact label differs from the chosen class is redrawn (up to
    ``max_tries`` times). Draw ``i`` depends only on ``(seed, i)``.
    """

    def __init__(
        self,
        sources: Sequence[SlideSource],
        geometry: PatchGeometry | None = None,
        *,
        seed: int = 0,
        jitter: float = 8.0,
        p_tumor: float = 0.5,
        max_tries: int = 32,
    ) -> None:
        self.geometry = geometry or PatchGeometry()
        self.seed = int(seed)
        self.jitter = float(jitter)
        self.p_tumor = float(p_tumor)
        self.max_tries = int(max_tries)
        if not 0.0 <= self.p_tumor <= 1.0:
            raise ConfigError(f"p_tumor must be in [0, 1], got {p_tumor}")
        self.sources = [s for s in sources if s.tissue.mask.any() or s.tumor.any()]
        if not self.sources:
            names = ", ".join(s.name for s in sources) or "(none given)"
            raise ConfigError(f"no slide has tissue to sample from: {names}")
        self._plans = [self.geometry.plan(s.slide) for s in self.sources]
        self._cells: dict[int, list[tuple[int, np.ndarray]]] = {1: [], 0: []}
        for k, s in enumerate(self.sources):
            tumor_cells = np.flatnonzero(s.tumor)
            normal_cells = np.flatnonzero(s.tissue.mask & ~s.tumor)
            if tumor_cells.size:
                self._cells[1].append((k, tumor_cells))
            if normal_cells.size:
                self._cells[0].append((k, normal_cells))
        if self.p_tumor > 0 and not self._cells[1]:
            names = ", ".join(s.name for s in self.sources)
            raise ConfigError(
                "balanced sampling needs at least one slide with tumour annotations inside it; "
                f"none of these has any: {names} (give each tumour slide its .xml / .geojson ground truth)"
            )
        if self.p_tumor < 1 and not self._cells[0]:
            raise ConfigError("balanced sampling needs normal tissue on at least one slide; none was found")
        self.mismatches = 0

    def draw(self, index: int) -> dict[str, Any]:
        """Patch number ``index`` of the stream: a dict with the patch-table columns."""
        rng = np.random.default_rng([self.seed, int(index)])
        label = int(rng.random() < self.p_tumor)
        k, cells = self._cells[label][int(rng.integers(len(self._cells[label])))]
        return self.draw_in_cells(rng, k, cells, label)

    def draw_in_cells(self, rng: np.random.Generator, k: int, cells: np.ndarray, label: int | None) -> dict[str, Any]:
        """A patch of source ``k`` centred uniformly in one of its tissue-grid ``cells`` (flat indices), jittered,
        labelled by the exact central-region rule; redrawn (up to ``max_tries``) while the label is not ``label``
        (None: the first position is kept, whatever its label). Returns a patch-table row."""
        source = self.sources[k]
        level, read_size, scale = self._plans[k]
        spacing = source.tissue.grid.spacing
        cols = source.tissue.mask.shape[1]
        foot = self.geometry.patch_size * scale
        h0, w0 = source.slide.shape
        y = x = 0.0
        got = -1
        for _ in range(self.max_tries):
            cell = int(cells[int(rng.integers(cells.size))])
            r, c = divmod(cell, cols)
            cy = (r + rng.random()) * spacing[0]
            cx = (c + rng.random()) * spacing[1]
            if self.jitter > 0:
                cy += rng.uniform(-self.jitter, self.jitter) * scale
                cx += rng.uniform(-self.jitter, self.jitter) * scale
            y = float(np.clip(np.floor(cy - foot / 2 + 0.5), 0, max(0.0, np.floor(h0 - foot))))
            x = float(np.clip(np.floor(cx - foot / 2 + 0.5), 0, max(0.0, np.floor(w0 - foot))))
            got = int(source.center_labels(np.array([y]), np.array([x]), self.geometry, scale)[0])
            if label is None or got == label:
                break
        else:
            self.mismatches += 1
        return {
            "slide": str(source.path),
            "x": int(x),
            "y": int(y),
            "level": level,
            "size": read_size,
            "label": got,
            "split": source.split,
        }

    def stream(self, start: int = 0, step: int = 1) -> Iterator[dict[str, Any]]:
        """Endless draws ``start, start + step, ...`` (``step`` > 1 shards the stream across loader workers)."""
        i = int(start)
        while True:
            yield self.draw(i)
            i += step

    def table(self, n: int, start: int = 0) -> pd.DataFrame:
        """A fixed table of draws ``start .. start + n - 1`` (for inspection and export)."""
        rows = [self.draw(i) for i in range(start, start + int(n))]
        return patch_frame(rows)
