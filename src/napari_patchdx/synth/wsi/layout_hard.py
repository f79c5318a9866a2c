"""The ``"hard"`` profile's layout: centre stains, small and low-contrast tumours, tumour mimics and artefacts.

Everything here is geometry and parameters (no pixels), drawn from the slide's random stream by
:func:`~.layout.make_slide_spec` when ``profile="hard"``; sizes are in micrometres and converted to level-0
pixels with the slide's mpp, so a slide at another resolution gets the same tissue.

* Centres (:func:`centre_stain`): A stains pale pink on neutral glass; B stains strong blue-purple hematoxylin
  and magenta eosin on warm glass (another lab and another scanner), each jittered per slide.
* Tumours (:func:`hard_tumour_layout`): the default macro-metastasis with its exclusion and the merging pair,
  then several micro-metastases (230 um up to 2 mm) and isolated-tumour-cell clusters (40-180 um); about half
  of the tumours (never the ITCs) are low-contrast, infiltrating carcinoma (:attr:`~.data_model.Lesion.contrast`).
* Mimics (:func:`mimic_layout`): follicles with germinal centres, histiocyte clusters and dense lymphocyte
  sheets, kept well clear of every tumour so a detection on them is a false positive.
* Artefacts (:func:`artefact_layout`): a fold, an out-of-focus band, air bubbles and a marker line across the
  tissue, each on about half of the slides.
"""

from __future__ import annotations

import math

import numpy as np

from ...io.annotations.polygon import points_in_polygon, polygon_area
from .data_model import PEN_INKS, Artefacts, BlurBand, Bubble, Fold, Mimic, PenStroke, StainParams
from .placement import LayoutError, TumourPlacer
from .polygons import band, inside_with_margin, polygon_extent

# Centre stains: hematoxylin / eosin optical-density directions (R, G, B), concentration scales (low, high) and
# the glass colour (the incident light, R, G, B).
_CENTRES = {
    "A": {
        "hematoxylin": (0.5626, 0.7201, 0.4062),
        "eosin": (0.2159, 0.8012, 0.5581),
        "h_scale": (0.72, 0.88),
        "e_scale": (1.05, 1.30),
        "background": (243.0, 241.0, 243.0),
    },
    "B": {
        "hematoxylin": (0.70, 0.66, 0.27),
        "eosin": (0.10, 0.93, 0.35),
        "h_scale": (1.25, 1.45),
        "e_scale": (0.70, 0.85),
        "background": (238.0, 233.0, 222.0),
    },
}
_TUMOUR_SEPARATION_UM = 100.0  # between unrelated tumours (beyond the 75 um merge distance)
_MIMIC_SEPARATION_UM = 75.0  # from any tumour and between mimics (the FROC protocol grows tumours by 37.5 um)


def centre_stain(rng: np.random.Generator, centre: str) -> StainParams:
    """The stain of one slide from ``centre`` (``"A"`` / ``"B"``): the centre's profile, jittered a little."""
    ref = _CENTRES[centre]

    def jitter(v: tuple[float, float, float], s: float) -> np.ndarray:
        w = np.clip(np.asarray(v) + rng.normal(0.0, s, 3), 0.05, None)
        return w / np.linalg.norm(w)

    background = np.clip(np.asarray(ref["background"]) + rng.normal(0.0, 1.5, 3), 215.0, 250.0)
    return StainParams(
        hematoxylin=jitter(ref["hematoxylin"], 0.025),
        eosin=jitter(ref["eosin"], 0.025),
        h_scale=float(rng.uniform(*ref["h_scale"])),
        e_scale=float(rng.uniform(*ref["e_scale"])),
        background=background,
    )


def _contrast(rng: np.random.Generator, p_low: float, low: tuple[float, float]) -> float:
    return float(rng.uniform(*low)) if rng.random() < p_low else 1.0


def hard_tumour_layout(
    rng: np.random.Generator, sections: list[np.ndarray], mpp: float
) -> tuple[list[np.ndarray], list[str], list[np.ndarray], list[float]]:
    """Tumour polygons, their kinds, the exclusion polygons and each tumour's contrast (1: cohesive).

    The default macro-metastasis with an exclusion region and the merging pair, then 2-8 micro-metastases
    (longest extent 230 um up to 2 mm, more on more tissue) and 2-6 isolated-tumour-cell clusters (40-180 um),
    everything 100 um apart (the pair excepted) and shrinking step by step until it fits. Contrast: the
    macro-metastasis is low-contrast with probability 0.3, the pair and each micro-metastasis with probability
    0.5 (fraction of tumour cells 0.3-0.6); ITCs stay cohesive.
    """
    areas = [polygon_area(sec) for sec in sections]
    main = sections[int(np.argmax(areas))]
    size_um = math.sqrt(max(areas)) * mpp
    area_mm2 = sum(areas) * mpp**2 * 1e-6
    n_micro = int(np.clip(round(2 + 1.5 * area_mm2), 2, 8))
    n_itc = int(np.clip(round(2 + area_mm2), 2, 6))
    for shrink in (1.0, 0.85, 0.7, 0.55, 0.45, 0.35):
        placer = TumourPlacer(rng, sections, mpp, sep_um=_TUMOUR_SEPARATION_UM)
        exclusion = placer.macro_and_pair(main, size_um, shrink)
        if exclusion is None:
            continue
        top = float(np.clip(0.3 * size_um * shrink, 260.0, 2000.0))
        for _ in range(n_micro):
            extent = rng.uniform(230.0, top)
            poly = placer.place(placer.shape(extent, 0.14, 128, 1.6), placer.section(), tries=30)
            if poly is not None:
                placer.add(poly, "micro")
        for _ in range(n_itc):
            poly = placer.place(placer.shape(rng.uniform(40.0, 180.0), 0.1, 48, 1.5), placer.section(), 30)
            if poly is not None:
                placer.add(poly, "itc")
        if placer.kinds.count("micro") < 1 or placer.kinds.count("itc") < 1:
            continue
        pair = _contrast(rng, 0.5, (0.3, 0.6))
        contrast = []
        for kind in placer.kinds:
            if kind == "macro":
                contrast.append(_contrast(rng, 0.3, (0.45, 0.65)))
            elif kind == "pair":
                contrast.append(pair)
            elif kind == "micro":
                contrast.append(_contrast(rng, 0.5, (0.3, 0.6)))
            else:
                contrast.append(1.0)
        return placer.tumours, placer.kinds, [exclusion], contrast
    raise LayoutError("the tissue is too small for the hard tumour layout (make the slide larger or mpp coarser)")


def mimic_layout(
    rng: np.random.Generator, sections: list[np.ndarray], mpp: float, tumours: list[np.ndarray]
) -> list[Mimic]:
    """Tumour mimics in the tissue, at least 75 um from every tumour and from each other.

    Per square millimetre of tissue about 2 follicles (15-35 % of the largest section's side across, within
    150-600 um; a germinal centre of 65-80 % of that), 5 histiocyte clusters (6-20 %, within 70-300 um) and 2
    lymphocyte sheets (10-30 %, within 120-450 um); at least 1, 3 and 2. Whatever does not fit is left out.
    """
    areas = [polygon_area(sec) for sec in sections]
    size_um = math.sqrt(max(areas)) * mpp
    area_mm2 = sum(areas) * mpp**2 * 1e-6
    counts = {
        "follicle": max(1, round(2.0 * area_mm2)),
        "sheet": max(2, round(2.0 * area_mm2)),
        "histiocytes": max(3, round(5.0 * area_mm2)),
    }
    # round robin, the large kinds first in each round, so every kind gets room on a crowded section
    plan = [kind for r in range(max(counts.values())) for kind, n in counts.items() if r < n]
    placer = TumourPlacer(rng, sections, mpp, sep_um=_MIMIC_SEPARATION_UM)
    placer.tumours = list(tumours)
    mimics: list[Mimic] = []
    for kind in plan:
        if kind == "follicle":
            extent = rng.uniform(*_span(size_um, 0.15, 0.35, 150.0, 600.0))
            poly0 = placer.shape(extent, 0.08, 96, 1.3)
        elif kind == "histiocytes":
            extent = rng.uniform(*_span(size_um, 0.06, 0.2, 70.0, 300.0))
            poly0 = placer.shape(extent, 0.16, 64, 1.8)
        else:
            extent = rng.uniform(*_span(size_um, 0.1, 0.3, 120.0, 450.0))
            poly0 = placer.shape(extent, 0.14, 96, 1.8)
        poly = placer.place(poly0, placer.section(), tries=80)
        if poly is None:
            continue
        core = None
        if kind == "follicle":
            for _ in range(40):
                c = placer.shape(extent * rng.uniform(0.65, 0.8), 0.08, 64, 1.3) + poly.mean(axis=0)
                c = c + rng.normal(0.0, 0.06 * extent * placer.um, 2)
                if inside_with_margin(c, poly, 12.0 * placer.um):
                    core = c
                    break
            if core is None:
                continue
        placer.tumours.append(poly)
        mimics.append(Mimic(kind, poly, core))
    return mimics


def _span(size_um: float, lo: float, hi: float, smallest: float, largest: float) -> tuple[float, float]:
    """Extent range (micrometres) ``lo``-``hi`` times the section side ``size_um``, kept in [smallest, largest]."""
    a = float(np.clip(lo * size_um, smallest, largest))
    return a, float(np.clip(hi * size_um, a, largest))


def _inside_point(rng: np.random.Generator, sections: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A random point inside a random section (area-weighted), and that section."""
    areas = np.array([polygon_area(sec) for sec in sections])
    sec = sections[int(rng.choice(len(sections), p=areas / areas.sum()))]
    lo, hi = sec.min(axis=0), sec.max(axis=0)
    for _ in range(1000):
        p = rng.uniform(lo, hi)
        if points_in_polygon(p[None], sec)[0]:
            return p, sec
    return sec.mean(axis=0), sec


def _fold(rng: np.random.Generator, sections: list[np.ndarray], um: float) -> Fold:
    """A gently curved band 40-110 um wide through a point of the tissue, about as long as the section."""
    p, sec = _inside_point(rng, sections)
    length = polygon_extent(sec[::4]) * rng.uniform(0.5, 0.9)
    heading = rng.uniform(0.0, math.pi)
    bend = rng.normal(0.0, 0.4)
    t = np.linspace(-0.5, 0.5, 24)
    angle = heading + bend * t
    direction = np.stack([np.sin(angle), np.cos(angle)], axis=1)
    line = p + np.cumsum(direction * (length / len(t)), axis=0)
    line -= line.mean(axis=0) - p
    return Fold(band(line, rng.uniform(40.0, 110.0) * um), float(rng.uniform(1.6, 2.0)))


def _ink(rng: np.random.Generator, height: int, width: int, sections: list[np.ndarray], um: float) -> PenStroke | None:
    """A marker line circling part of a section, partly over the tissue near its edge."""
    _, sec = _inside_point(rng, sections)
    n = len(sec)
    start, span = int(rng.integers(0, n)), int(n * rng.uniform(0.25, 0.45))
    arc = sec[(start + np.arange(span)) % n]
    centre = sec.mean(axis=0)
    line = centre + (arc - centre) * rng.uniform(0.88, 1.02)
    width_px = float(np.clip(rng.uniform(25.0, 60.0) * um, 4.0, None))
    line = np.clip(line, width_px, [height - width_px, width - width_px])
    if len(line) < 6:
        return None
    return PenStroke(band(line, width_px, caps=True), line, width_px, str(rng.choice(list(PEN_INKS))))


def artefact_layout(
    rng: np.random.Generator, height: int, width: int, mpp: float, sections: list[np.ndarray]
) -> Artefacts:
    """Folds (probability 0.5), an out-of-focus band (0.5), 0-2 air bubbles and a marker line across the tissue
    (0.5); sizes in micrometres (converted with ``mpp``)."""
    um = 1.0 / mpp
    folds = (_fold(rng, sections, um),) if rng.random() < 0.5 else ()
    blur: tuple[BlurBand, ...] = ()
    if rng.random() < 0.5:
        p, _ = _inside_point(rng, sections)
        phi = rng.uniform(0.0, math.pi)
        half = min(rng.uniform(80.0, 250.0) * um, 0.2 * min(height, width))
        blur = (
            BlurBand(
                point=(float(p[0]), float(p[1])),
                normal=(math.sin(phi), math.cos(phi)),
                half_width_px=float(half),
                ramp_px=float(min(40.0 * um, half)),
                sigma_um=float(rng.uniform(1.8, 3.0)),
            ),
        )
    bubbles = []
    for _ in range(int(rng.choice([0, 1, 1, 2]))):
        p, _ = _inside_point(rng, sections)
        radius = rng.uniform(40.0, 200.0) * um
        p = np.clip(p, radius + 8 * um, [height - radius - 8 * um, width - radius - 8 * um])
        bubbles.append(Bubble((float(p[0]), float(p[1])), float(radius), float(rng.uniform(3.0, 6.0) * um)))
    inks: tuple[PenStroke, ...] = ()
    if rng.random() < 0.5:
        stroke = _ink(rng, height, width, sections, um)
        inks = (stroke,) if stroke is not None else ()
    return Artefacts(folds=folds, blur_bands=blur, bubbles=tuple(bubbles), inks=inks)
