"""Nuclei: pre-drawn template banks, the jittered lattices they sit on, and the canvas that draws them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .frame import Box, Frame
from .noise import hash2, uniform

# Nucleus radii, micrometres (histiocytes and centroblasts: the "hard" profile's tumour mimics).
_NUCLEUS_RADIUS_UM = {"lymph": 3.5, "tumor": 7.0, "spindle": 2.5, "histio": 5.5, "blast": 5.0}
_LATTICE_ROWS_PER_CHUNK = 64


@dataclass(frozen=True)
class NucleusBank:
    """Pre-drawn nuclei (or cells) at one pixel size: concentration templates centred in an odd box."""

    templates: np.ndarray  # (n, S, S) float32 hematoxylin concentration (peak about 1)
    body: np.ndarray  # (n, S, S) float32 fraction of the pixel the nucleus covers (0..1)
    half: int  # S // 2


def _render_templates(kind: str, px_um: float, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng({"lymph": 11, "tumor": 12, "spindle": 13, "histio": 14, "blast": 15}[kind])
    max_r = {"lymph": 4.6, "tumor": 11.5, "spindle": 5.5, "histio": 8.5, "blast": 7.5}[kind]
    half = math.ceil(max_r / px_um) + 1
    size = 2 * half + 1
    ss = max(1, min(4, math.ceil(px_um / 0.2)))  # supersampling: drawing grid of <= 0.2 um (0.5 coarse)
    fine = (np.arange(size * ss) + 0.5) / ss - size / 2.0  # in pixels, centre at 0
    yy, xx = np.meshgrid(fine * px_um, fine * px_um, indexing="ij")  # micrometres
    out = np.zeros((n, size, size), dtype=np.float32)
    cover = np.zeros((n, size, size), dtype=np.float32)
    k_eff = 1.2  # transmission-preserving average: c = -log(mean(exp(-k c_fine))) / k
    for i in range(n):
        ang = rng.uniform(0, math.pi)
        u = xx * math.cos(ang) + yy * math.sin(ang)
        v = -xx * math.sin(ang) + yy * math.cos(ang)
        th = np.arctan2(v, u)
        if kind == "lymph":
            a = rng.uniform(3.0, 4.0)
            b = a * rng.uniform(0.85, 1.0)
            rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            body = 1.0 / (1.0 + np.exp((rho - 1.0) / 0.06))
            clumps = np.zeros_like(u)
            for _ in range(6):
                cy, cx = rng.uniform(-0.6, 0.6, 2) * a
                clumps += np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * 0.7**2))
            c = body * (0.78 + 0.18 * np.tanh(clumps) + 0.12 * np.clip(rho, 0, 1) ** 4)
        elif kind == "spindle":
            a = rng.uniform(4.0, 5.5)
            b = rng.uniform(1.1, 1.8)
            rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            body = 1.0 / (1.0 + np.exp((rho - 1.0) / 0.08))
            c = 0.85 * body
        elif kind in ("histio", "blast"):
            c, body = _mimic_nucleus(kind, rng, u, v, th)
        else:
            a = rng.uniform(5.0, 9.0)
            b = a * rng.uniform(0.6, 0.95)
            wob = np.ones_like(th)
            for k in range(2, 6):
                wob += rng.uniform(0.0, 0.07) * np.cos(k * th + rng.uniform(0, 2 * math.pi))
            rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wob
            body = 1.0 / (1.0 + np.exp((rho - 1.0) / 0.035))
            rim_w = rng.uniform(0.6, 1.0) / a
            rim = np.exp(-(((rho - 1.0 + rim_w) / rim_w) ** 2))
            inner = rng.uniform(0.26, 0.44)
            gran = np.zeros_like(u)
            for _ in range(int(rng.integers(10, 22))):
                cy, cx = rng.uniform(-0.75, 0.75, 2) * np.array([b, a])
                gran += np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * rng.uniform(0.35, 0.6) ** 2))
            nucleolus = np.zeros_like(u)
            for _ in range(int(rng.choice([1, 1, 1, 2]))):
                cy, cx = rng.uniform(-0.35, 0.35, 2) * np.array([b, a])
                rn = rng.uniform(0.7, 1.2)
                nucleolus += 1.0 / (1.0 + np.exp((np.sqrt((u - cx) ** 2 + (v - cy) ** 2) - rn) / 0.12))
            c = body * (inner + 0.32 * np.tanh(gran) + rng.uniform(0.4, 0.65) * rim + 0.85 * np.clip(nucleolus, 0, 1))
        t = np.exp(-k_eff * c).reshape(size, ss, size, ss).mean(axis=(1, 3))
        out[i] = (-np.log(t) / k_eff).astype(np.float32)
        cover[i] = body.reshape(size, ss, size, ss).mean(axis=(1, 3))
    return out, cover, half


def _mimic_nucleus(
    kind: str, rng: np.random.Generator, u: np.ndarray, v: np.ndarray, th: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Concentration and body of a histiocyte (oval, often indented, pale fine chromatin, thin rim, small
    nucleolus; 10-13 um long) or a centroblast (round, vesicular, 1-3 nucleoli on the membrane; 9-12 um)."""
    if kind == "histio":
        a = rng.uniform(5.0, 6.5)
        b = a * rng.uniform(0.55, 0.75)
        notch = rng.uniform(0.0, 0.22) * np.exp(-(((th - rng.choice([-1.0, 1.0]) * math.pi / 2) / 0.55) ** 2))
        wob = 1.0 - notch
    else:
        a = rng.uniform(4.5, 6.0)
        b = a * rng.uniform(0.8, 1.0)
        wob = np.ones_like(th)
    for k in range(2, 5):
        wob = wob + rng.uniform(0.0, 0.05) * np.cos(k * th + rng.uniform(0, 2 * math.pi))
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2) / wob
    body = 1.0 / (1.0 + np.exp((rho - 1.0) / 0.04))
    rim_w = rng.uniform(0.5, 0.8) / a
    rim = np.exp(-(((rho - 1.0 + rim_w) / rim_w) ** 2))
    gran = np.zeros_like(u)
    for _ in range(int(rng.integers(8, 16))):
        cy, cx = rng.uniform(-0.7, 0.7, 2) * np.array([b, a])
        gran += np.exp(-((u - cx) ** 2 + (v - cy) ** 2) / (2 * rng.uniform(0.35, 0.6) ** 2))
    nucleolus = np.zeros_like(u)
    if kind == "histio":
        spots = [rng.uniform(-0.25, 0.25, 2) * np.array([b, a])]
        inner, rim_k, spot_k = rng.uniform(0.26, 0.36), rng.uniform(0.3, 0.45), 0.5
    else:
        spots = []
        for _ in range(int(rng.integers(1, 4))):
            phi = rng.uniform(0, 2 * math.pi)
            spots.append(np.array([0.72 * b * math.sin(phi), 0.72 * a * math.cos(phi)]))
        inner, rim_k, spot_k = rng.uniform(0.3, 0.42), rng.uniform(0.45, 0.6), 0.75
    for cy, cx in spots:
        rn = rng.uniform(0.5, 0.9)
        nucleolus += 1.0 / (1.0 + np.exp((np.sqrt((u - cx) ** 2 + (v - cy) ** 2) - rn) / 0.12))
    c = body * (inner + 0.22 * np.tanh(gran) + rim_k * rim + spot_k * np.clip(nucleolus, 0, 1))
    return c, body


@lru_cache(maxsize=48)
def bank(kind: str, px_um: float) -> NucleusBank:
    """The template bank of nucleus ``kind`` (``"lymph"``, ``"tumor"``, ``"spindle"``, ``"histio"``,
    ``"blast"``) at ``px_um`` um/px."""
    n = {"lymph": 48, "tumor": 96, "spindle": 24, "histio": 48, "blast": 48}[kind]
    templates, body, half = _render_templates(kind, px_um, n)
    return NucleusBank(templates, body, half)


@lru_cache(maxsize=64)
def _deficit_table(kind: str, mpp: float, od: tuple[float, float, float]) -> np.ndarray:
    """(n, 3) light lost per template at level 0, in level-0 px² per channel, for per-unit intensity OD."""
    t = bank(kind, mpp).templates.astype(np.float64)
    odv = np.array(od)
    return (1.0 - np.exp(-t[..., None] * odv)).sum(axis=(1, 2))


def lattice_chunks(
    key: int, spacing: float, jitter: float, frame: Frame, box: Box, margin: float
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Jittered lattice points that may reach into ``box``: chunks of (cy, cx, base hash), row-major.

    Lattice site (gy, gx) holds one point at ``(g + 0.5 + jitter * U(-1, 1)) * spacing`` (level-0 px), keyed by
    a hash of (key, gy, gx), so every window sees the same points. ``margin`` (level-0 px) is how far a nucleus
    reaches; at least 4 output pixels are added (the blur of splatted nuclei). Chunks are blocks of
    ``_LATTICE_ROWS_PER_CHUNK`` absolute lattice rows, so memory is bounded and sums keep their order.
    """
    margin = max(margin, 4.0 * frame.ds)
    y_lo, y_hi = box[0] - margin, box[1] + margin
    x_lo, x_hi = box[2] - margin, box[3] + margin
    gy0, gy1 = math.floor(y_lo / spacing) - 1, math.floor(y_hi / spacing) + 1
    gx = np.arange(math.floor(x_lo / spacing) - 1, math.floor(x_hi / spacing) + 1)
    block = _LATTICE_ROWS_PER_CHUNK
    for start in range(gy0 - gy0 % block, gy1, block):
        gy = np.arange(max(start, gy0), min(start + block, gy1))
        if gy.size == 0:
            continue
        gyy, gxx = np.meshgrid(gy, gx, indexing="ij")
        gyy, gxx = gyy.ravel(), gxx.ravel()
        h = hash2(key, gyy, gxx)
        cy = (gyy + 0.5 + jitter * (2.0 * uniform(h, 1) - 1.0)) * spacing
        cx = (gxx + 0.5 + jitter * (2.0 * uniform(h, 2) - 1.0)) * spacing
        inside = (cy >= y_lo) & (cy < y_hi) & (cx >= x_lo) & (cx < x_hi)
        if inside.any():
            yield cy[inside], cx[inside], h[inside]


class NucleusCanvas:
    """Accumulates nuclei of one kind over a frame.

    Fine levels stamp pre-drawn templates (hematoxylin concentration); coarse levels (pixels over
    ``_STAMP_MAX_PX_UM``) splat each nucleus's light loss into its pixel and blur it over the footprint.
    With ``cover`` it also records the fraction of each pixel the nuclei cover.
    """

    _SPLAT_MARGIN = 3

    def __init__(self, kind: str, frame: Frame, od: np.ndarray, cover: bool = False) -> None:
        self.kind, self.frame, self.cover = kind, frame, cover
        h, w = frame.shape
        if frame.stamp:
            self.bank = bank(kind, round(frame.px_um, 6))
            s = self.bank.half
            self.pad = 2 * s  # canvas = output + 2s on every side; a template's corner lands at +s
            size = 2 * s + 1
            self.canvas_shape = (h + 4 * s, w + 4 * s)
            oy, ox = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
            self.offsets = (oy * self.canvas_shape[1] + ox).ravel()
            n_channels = 2 if cover else 1
        else:
            m = self._SPLAT_MARGIN
            self.pad = m
            self.canvas_shape = (h + 2 * m, w + 2 * m)
            base = bank(kind, round(frame.mpp, 6))
            table = _deficit_table(kind, round(frame.mpp, 6), tuple(float(v) for v in od))
            if cover:
                table = np.concatenate([table, base.body.sum(axis=(1, 2), dtype=np.float64)[:, None]], axis=1)
            self.table = table / frame.ds**2
            n_channels = self.table.shape[1]
        self.acc = np.zeros((n_channels, self.canvas_shape[0] * self.canvas_shape[1]))

    def add(self, cy: np.ndarray, cx: np.ndarray, variant: np.ndarray, intensity: np.ndarray) -> None:
        """Add nuclei centred at level-0 (cy, cx) with template index ``variant`` and ``intensity``."""
        frame = self.frame
        h, w = frame.shape
        y0 = frame.ys[0] - frame.ds / 2
        x0 = frame.xs[0] - frame.ds / 2
        pi = np.rint((cy - y0) / frame.ds - 0.5).astype(np.int64)
        pj = np.rint((cx - x0) / frame.ds - 0.5).astype(np.int64)
        wc = self.canvas_shape[1]
        n = self.acc.shape[1]
        if frame.stamp:
            s = self.bank.half
            keep = (pi >= -s) & (pi < h + s) & (pj >= -s) & (pj < w + s)
            if not keep.any():
                return
            pi, pj, variant, intensity = pi[keep], pj[keep], variant[keep], intensity[keep]
            idx = (((pi + s) * wc + (pj + s))[:, None] + self.offsets[None, :]).ravel()
            weights = self.bank.templates[variant].reshape(len(variant), -1) * intensity[:, None]
            self.acc[0] += np.bincount(idx, weights.ravel(), minlength=n)
            if self.cover:
                self.acc[1] += np.bincount(idx, self.bank.body[variant].ravel(), minlength=n)
            return
        m = self._SPLAT_MARGIN
        keep = (pi >= -m) & (pi < h + m) & (pj >= -m) & (pj < w + m)
        if not keep.any():
            return
        flat = (pi[keep] + m) * wc + pj[keep] + m
        per_nucleus = self.table[variant[keep]]
        per_nucleus[:, :3] *= intensity[keep, None]
        for ch in range(self.acc.shape[0]):
            self.acc[ch] += np.bincount(flat, per_nucleus[:, ch], minlength=n)

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(h, w) hematoxylin concentration (stamped) or (h, w, 3) light lost (splatted), and the cover."""
        h, w = self.frame.shape
        p = self.pad
        planes = self.acc.reshape(-1, *self.canvas_shape)
        if not self.frame.stamp:
            from scipy import ndimage

            sigma = min(0.7, 0.6 * _NUCLEUS_RADIUS_UM[self.kind] / self.frame.px_um)
            planes = np.stack(
                [ndimage.gaussian_filter(c, sigma, truncate=(p - 0.01) / sigma, mode="constant") for c in planes]
            )
        planes = planes[:, p : p + h, p : p + w].astype(np.float32)
        cover = planes[-1] if self.cover else None
        if self.frame.stamp:
            return planes[0], cover
        return np.moveaxis(planes[:3], 0, -1).copy(), cover
