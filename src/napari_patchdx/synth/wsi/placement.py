"""Placing shapes inside tissue sections: the tumour placer shared by the default and the hard layouts.

Polygons are (N, 2) float64 open rings of level-0 (y, x) pixels.
"""

from __future__ import annotations

import math

import numpy as np

from ...io.annotations.polygon import points_in_polygon, polygon_area
from .data_model import MERGE_DISTANCE_UM
from .polygons import blob, gap_at_least, inside_with_margin, polygon_extent, polygon_gap, ring


class LayoutError(RuntimeError):
    """A layout step found no room (the caller retries with a fresh draw or smaller shapes)."""


class TumourPlacer:
    """Places tumour polygons inside tissue sections, clear of each other (level-0 px throughout)."""

    def __init__(self, rng: np.random.Generator, sections: list[np.ndarray], mpp: float, sep_um: float) -> None:
        self.rng = rng
        self.sections = sections
        self.um = 1.0 / mpp  # level-0 px per micrometre
        self.margin = 20.0 * self.um  # from the tissue edge
        self.sep = sep_um * self.um  # between unrelated tumours
        areas = np.array([polygon_area(sec) for sec in sections])
        self.probs = areas / areas.sum()
        self.tumours: list[np.ndarray] = []
        self.kinds: list[str] = []

    def shape(self, extent_um: float, roughness: float, n: int, aspect_max: float) -> np.ndarray:
        """A blob centred on (0, 0) whose longest extent is ``extent_um``."""
        aspect = self.rng.uniform(1.0, aspect_max)
        th, r = blob(self.rng, n, aspect=aspect, roughness=roughness, harmonics=6)
        poly = ring((0.0, 0.0), th, r)
        return poly * (extent_um * self.um / polygon_extent(poly))

    def fits(self, poly: np.ndarray, section: np.ndarray) -> bool:
        if not inside_with_margin(poly, section, self.margin):
            return False
        return all(gap_at_least(poly, t, self.sep) for t in self.tumours)

    def section(self) -> np.ndarray:
        return self.sections[int(self.rng.choice(len(self.sections), p=self.probs))]

    def place(self, poly0: np.ndarray, section: np.ndarray, tries: int) -> np.ndarray | None:
        lo, hi = section.min(axis=0), section.max(axis=0)
        for _ in range(tries):
            c = self.rng.uniform(lo, hi)
            if points_in_polygon(c[None], section)[0] and self.fits(poly0 + c, section):
                return poly0 + c
        return None

    def add(self, poly: np.ndarray, kind: str) -> None:
        self.tumours.append(poly)
        self.kinds.append(kind)

    def pair(self, extent_um: float, gap_um: float, tries: int) -> bool:
        """Two tumours whose edges are ``gap_um`` apart (one lesion in the CAMELYON16 protocol)."""
        gap = gap_um * self.um
        for _ in range(tries):
            section = self.section()
            a = self.place(self.shape(extent_um, 0.12, 128, 1.4), section, tries=40)
            if a is None:
                continue
            b0 = self.shape(extent_um * self.rng.uniform(0.7, 1.0), 0.12, 128, 1.4) + a.mean(axis=0)
            phi = self.rng.uniform(0.0, 2 * math.pi)
            direction = np.array([math.sin(phi), math.cos(phi)])
            near, far = 0.0, 2.5 * extent_um * self.um + gap
            for _it in range(40):  # bisect the centre distance for the wanted edge gap
                mid = 0.5 * (near + far)
                if polygon_gap(a, b0 + mid * direction) < gap:
                    near = mid
                else:
                    far = mid
            b = b0 + far * direction
            if self.fits(b, section) and 0 < polygon_gap(a, b) < 0.9 * MERGE_DISTANCE_UM * self.um:
                self.add(a, "pair")
                self.add(b, "pair")
                return True
        return False

    def macro_and_pair(self, main: np.ndarray, size_um: float, shrink: float) -> np.ndarray | None:
        """Place the macro-metastasis (in section ``main``) holding an exclusion region, then a merging pair.

        Sizes follow the largest section's side ``size_um`` (micrometres) times ``shrink``. Returns the exclusion
        polygon, or None when something did not fit (the caller starts again smaller).
        """
        rng, um = self.rng, self.um
        macro_um = float(np.clip(0.42 * size_um * shrink, 150.0, 2000.0))
        macro = self.place(self.shape(macro_um, 0.16, 192, 1.5), main, tries=200)
        if macro is None:
            return None
        self.add(macro, "macro")
        exclusion = None
        for _ in range(100):
            ex = self.shape(0.28 * macro_um, 0.1, 64, 1.4) + macro.mean(axis=0)
            ex = ex + rng.normal(0.0, 0.08 * macro_um * um, 2)
            if inside_with_margin(ex, macro, 25.0 * um):
                exclusion = ex
                break
        pair_um = float(np.clip(0.2 * size_um * shrink, 110.0, 700.0))
        if exclusion is None or not self.pair(pair_um, rng.uniform(25.0, 60.0), tries=60):
            return None
        return exclusion
