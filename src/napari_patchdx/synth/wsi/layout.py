"""Slide layout: where tissue sections, tumours, the exclusion region and pen strokes go (no pixels).

:func:`make_slide_spec` draws a seeded :class:`~.data_model.SlideSpec`: tissue sections that fill the wanted
fraction of the glass, a tumour layout inside them (macro-metastasis with an exclusion region, a pair closer
than the merge distance, isolated-tumour-cell clusters, micro-metastases), pen strokes outside them, and the
per-slide stain. The ``"hard"`` profile draws its tumours, mimics, artefacts and centre stain with
:mod:`.layout_hard` from a stream of its own, so the default profile's slides do not change.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ...io.annotations.polygon import points_in_polygon, polygon_area
from .data_model import CENTRES, PEN_INKS, PROFILES, PenStroke, SlideSpec, StainParams
from .layout_hard import artefact_layout, centre_stain, hard_tumour_layout, mimic_layout
from .noise import MASK64
from .placement import LayoutError, TumourPlacer
from .polygons import blob, dist_to_boundary, gap_at_least, ring

_CAPSULE_UM = 30.0  # capsule thickness, micrometres

# Reference stain vectors (optical density per unit concentration, R, G, B), after Macenko et al. 2009.
_H_REF = np.array([0.5626, 0.7201, 0.4062])
_E_REF = np.array([0.2159, 0.8012, 0.5581])


def _random_stain(rng: np.random.Generator) -> StainParams:
    def jitter(v: np.ndarray, s: float) -> np.ndarray:
        w = np.clip(v + rng.normal(0.0, s, 3), 0.05, None)
        return w / np.linalg.norm(w)

    base = 240.0 + rng.normal(0.0, 2.0)
    background = np.clip(base + rng.normal(0.0, 1.5, 3), 234.0, 246.0)
    return StainParams(
        hematoxylin=jitter(_H_REF, 0.04),
        eosin=jitter(_E_REF, 0.04),
        h_scale=float(rng.uniform(0.85, 1.15)),
        e_scale=float(rng.uniform(0.8, 1.2)),
        background=background,
    )


def _place_tissue(
    rng: np.random.Generator, height: int, width: int, mpp: float, fraction: float
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    target = fraction * height * width
    margin = 0.04 * min(height, width)
    area_mm2 = target * mpp**2 * 1e-6
    n_max = int(rng.choice([1, 2, 2, 3]))
    n_max = min(n_max, 1 if area_mm2 < 2.0 else 2 if area_mm2 < 6.0 else 3)
    capsule = _CAPSULE_UM / mpp
    for n in range(n_max, 0, -1):
        shares = rng.uniform(0.4, 1.0, n)
        shares /= shares.sum()
        for _attempt in range(60):
            sections: list[np.ndarray] = []
            inners: list[np.ndarray] = []
            for share in sorted(shares, reverse=True):
                aspect = rng.uniform(1.1, 1.7) if fraction < 0.5 else rng.uniform(1.0, 1.25)
                th, r = blob(rng, 256, aspect=aspect, roughness=0.12, harmonics=7)
                area1 = 0.5 * float(np.sum(r**2)) * (2 * math.pi / len(r))
                r = r * math.sqrt(share * target / area1)
                ok = False
                for _try in range(80):
                    ry, rx = float(np.abs(r * np.sin(th)).max()), float(np.abs(r * np.cos(th)).max())
                    if 2 * (ry + margin) > height or 2 * (rx + margin) > width:
                        break
                    centre = (
                        rng.uniform(ry + margin, height - ry - margin),
                        rng.uniform(rx + margin, width - rx - margin),
                    )
                    poly = ring(centre, th, r)
                    gap = 0.08 * math.sqrt(target)
                    # separation checked on every 4th vertex (chord error << gap)
                    if all(gap_at_least(poly[::4], other[::4], 1.05 * gap) for other in sections):
                        sections.append(poly)
                        inners.append(ring(centre, th, np.maximum(r - capsule, 0.3 * r)))
                        ok = True
                        break
                if not ok:
                    break
            if len(sections) == n:
                return sections, inners
    raise LayoutError(f"cannot fit tissue covering {fraction:.3f} of a {height} x {width} slide")


def _tumour_layout(
    rng: np.random.Generator, sections: list[np.ndarray], mpp: float
) -> tuple[list[np.ndarray], list[str], list[np.ndarray]]:
    """Tumour polygons, their kinds, and the exclusion polygons (inside the first, the macro-metastasis).

    Sizes scale with the largest tissue section (a macro-metastasis of up to 2 mm on big slides) and shrink
    step by step until everything fits: the macro-metastasis holding an exclusion region, a pair 25-60 um
    apart, one or two isolated-tumour-cell clusters (55-140 um), and up to two micro-metastases.
    """
    areas = [polygon_area(sec) for sec in sections]
    main = sections[int(np.argmax(areas))]
    size_um = math.sqrt(max(areas)) * mpp
    for shrink in (1.0, 0.85, 0.7, 0.55, 0.45, 0.35):
        placer = TumourPlacer(rng, sections, mpp, sep_um=max(90.0, 150.0 * shrink))
        exclusion = placer.macro_and_pair(main, size_um, shrink)
        if exclusion is None:
            continue
        n_itc = 0
        for _ in range(2):
            for _try in range(40):
                poly = placer.place(placer.shape(rng.uniform(55.0, 140.0), 0.1, 48, 1.5), placer.section(), 20)
                if poly is not None:
                    placer.add(poly, "itc")
                    n_itc += 1
                    break
        if n_itc == 0:
            continue
        for _ in range(int(rng.integers(0, 3))):
            extent = rng.uniform(220.0, max(260.0, 0.25 * size_um * shrink))
            poly = placer.place(placer.shape(extent, 0.14, 128, 1.6), placer.section(), tries=30)
            if poly is not None:
                placer.add(poly, "micro")
        return placer.tumours, placer.kinds, [exclusion]
    raise LayoutError("the tissue is too small for the tumour layout (make the slide larger or mpp coarser)")


def _pen_layout(
    rng: np.random.Generator, height: int, width: int, mpp: float, sections: list[np.ndarray]
) -> list[PenStroke]:
    side = min(height, width)
    strokes: list[PenStroke] = []
    n_strokes = int(rng.integers(2, 4))
    colours = list(PEN_INKS)
    for s in range(n_strokes):
        width_px = float(np.clip(0.025 * side * rng.uniform(0.7, 1.3), 12.0, 1600.0))
        clearance = 0.5 * width_px + max(60.0 / mpp, 0.02 * side)
        for _attempt in range(200):
            p = rng.uniform([width_px, width_px], [height - width_px, width - width_px])
            if min(dist_to_boundary(p[None], sec)[0] for sec in sections) < clearance or any(
                points_in_polygon(p[None], sec)[0] for sec in sections
            ):
                continue
            heading = rng.uniform(0, 2 * math.pi)
            turn = rng.normal(0.0, 0.04)
            step = 0.4 * width_px
            length = rng.uniform(0.15, 0.35) * side
            path = [p]
            for _ in range(int(length / step)):
                turn = 0.8 * turn + rng.normal(0.0, 0.03)
                heading += float(np.clip(turn, -0.12, 0.12))
                q = path[-1] + step * np.array([math.sin(heading), math.cos(heading)])
                if not (width_px <= q[0] <= height - width_px and width_px <= q[1] <= width - width_px):
                    break
                if (
                    any(points_in_polygon(q[None], sec)[0] for sec in sections)
                    or min(dist_to_boundary(q[None], sec)[0] for sec in sections) < clearance
                ):
                    break
                path.append(q)
            if len(path) < 6:
                continue
            line = np.array(path)
            tangent = np.gradient(line, axis=0)
            tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
            normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
            hw = 0.5 * width_px
            left, right = line + hw * normal, line - hw * normal
            cap_t = np.linspace(0.0, math.pi, 9)[1:-1]
            end_cap = line[-1] + hw * (np.cos(cap_t)[:, None] * normal[-1] + np.sin(cap_t)[:, None] * tangent[-1])
            start_cap = line[0] + hw * (np.cos(cap_t)[:, None] * (-normal[0]) - np.sin(cap_t)[:, None] * tangent[0])
            polygon = np.concatenate([left, end_cap, right[::-1], start_cap])
            if min(dist_to_boundary(polygon, sec).min() for sec in sections) < 0.5 * clearance:
                continue
            strokes.append(PenStroke(polygon, line, width_px, colours[(s + int(rng.integers(0, 3))) % 3]))
            break
    if not strokes:
        raise LayoutError("no room on the glass for pen marks")
    return strokes


def make_slide_spec(
    *,
    height: int,
    width: int,
    mpp: float = 0.5,
    seed: int = 0,
    tumor: bool = True,
    tissue_fraction: float = 0.4,
    pen_marks: bool = False,
    tile: int = 256,
    profile: str = "default",
    centre: str | None = None,
) -> SlideSpec:
    """Lay out one synthetic slide (no pixels are drawn; see :func:`render_region`).

    Args:
        height, width: level-0 size in pixels (rows, cols).
        mpp: microns per level-0 pixel (nuclei and lesions are sized in micrometres, so they scale with it).
        seed: everything derives from it; the same arguments give the same spec.
        tumor: lay out metastases (a macro-metastasis holding an exclusion region, a pair of tumours closer
            than 75 um, isolated-tumour-cell clusters, sometimes micro-metastases), all inside tissue.
        tissue_fraction: fraction of the slide area covered by tissue, in (0, 0.6].
        pen_marks: add two or three marker strokes on the glass, outside the tissue.
        tile: tile side in pixels, a multiple of 16 (the period of the background noise).
        profile: ``"default"``, or ``"hard"``: more and smaller tumours, about half of them low-contrast, tumour
            mimics in the normal tissue, artefacts (fold, out-of-focus band, bubbles, ink over tissue) and the
            stain of a ``centre`` (see :mod:`.layout_hard`). A hard slide differs from the default slide of the
            same seed.
        centre: ``"A"`` or ``"B"``, the staining / scanning centre of a hard slide (default ``"A"``); must be
            None for the default profile.

    Raises:
        ValueError: an argument is out of range, or the slide is too small for the tumour layout.
    """
    if int(height) != height or int(width) != width or height < 256 or width < 256:
        raise ValueError(f"height and width must be integers >= 256, got {height} x {width}")
    if not (math.isfinite(mpp) and 0.05 <= mpp <= 16.0):
        raise ValueError(f"mpp must be within [0.05, 16] microns per pixel, got {mpp!r}")
    if not (0.0 < tissue_fraction <= 0.6):
        raise ValueError(f"tissue_fraction must be in (0, 0.6], got {tissue_fraction!r}")
    if int(tile) != tile or tile < 16 or tile % 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile!r}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if profile == "default" and centre is not None:
        raise ValueError(f"centre is a property of the hard profile only, got centre={centre!r}")
    if profile == "hard":
        centre = "A" if centre is None else centre
        if centre not in CENTRES:
            raise ValueError(f"centre must be one of {', '.join(CENTRES)}, got {centre!r}")
        return _hard_spec(
            int(height), int(width), float(mpp), int(seed), tumor, tissue_fraction, pen_marks, int(tile), centre
        )
    height, width, tile = int(height), int(width), int(tile)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed) & MASK64, 0x5EED]))
    stain = _random_stain(rng)

    def layout() -> dict[str, Any]:
        sections, inners = _place_tissue(rng, height, width, mpp, tissue_fraction)
        tumours, kinds, exclusions = _tumour_layout(rng, sections, mpp) if tumor else ([], [], [])
        pens = _pen_layout(rng, height, width, mpp, sections) if pen_marks else []
        return {
            "tissue": tuple(sections),
            "tissue_inner": tuple(inners),
            "tumors": tuple(tumours),
            "tumor_kinds": tuple(kinds),
            "exclusions": tuple(exclusions),
            "pens": tuple(pens),
        }

    parts = _attempts(layout, height, width, mpp)
    return SlideSpec(height=height, width=width, mpp=float(mpp), seed=int(seed), tile=tile, stain=stain, **parts)


def _attempts(layout: Callable[[], dict[str, Any]], height: int, width: int, mpp: float) -> dict[str, Any]:
    """``layout()`` up to four times: a placement that does not fit raises LayoutError and is drawn again from the
    same random stream. Raises ValueError naming the slide's size when no attempt fits."""
    for _attempt in range(4):
        try:
            return layout()
        except LayoutError as err:
            last = err
    raise ValueError(f"{height} x {width} px at {mpp} um/px: {last}")


def _hard_spec(
    height: int,
    width: int,
    mpp: float,
    seed: int,
    tumor: bool,
    tissue_fraction: float,
    pen_marks: bool,
    tile: int,
    centre: str,
) -> SlideSpec:
    """The ``"hard"`` profile's spec (arguments already checked); its own random stream."""
    rng = np.random.default_rng(np.random.SeedSequence([seed & MASK64, 0x5EED, 0x4A2D]))
    stain = centre_stain(rng, centre)

    def layout() -> dict[str, Any]:
        sections, inners = _place_tissue(rng, height, width, mpp, tissue_fraction)
        tumours, kinds, exclusions, contrast = hard_tumour_layout(rng, sections, mpp) if tumor else ([], [], [], [])
        mimics = mimic_layout(rng, sections, mpp, tumours)
        artefacts = artefact_layout(rng, height, width, mpp, sections)
        pens = _pen_layout(rng, height, width, mpp, sections) if pen_marks else []
        return {
            "tissue": tuple(sections),
            "tissue_inner": tuple(inners),
            "tumors": tuple(tumours),
            "tumor_kinds": tuple(kinds),
            "exclusions": tuple(exclusions),
            "pens": tuple(pens),
            "tumor_contrast": tuple(contrast),
            "mimics": tuple(mimics),
            "artefacts": artefacts,
        }

    parts = _attempts(layout, height, width, mpp)
    return SlideSpec(
        height=height, width=width, mpp=mpp, seed=seed, tile=tile, stain=stain, profile="hard", centre=centre, **parts
    )
