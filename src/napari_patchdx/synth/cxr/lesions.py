"""The five lesion classes: each draws its placement and returns a density term with a compact support.

:data:`LESION_SPECS` maps a class of :data:`~.data_model.CXR_CLASSES` to the function that lays one lesion
out; the returned :class:`LesionSpec`'s ``field`` evaluates it at full resolution inside its own pixel box.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import Anatomy
from .anatomy_layers import AnatomyLayers
from .drawing import draw_tubes, resample
from .pose import Pose


@dataclass
class LesionContext:
    """What a lesion needs to evaluate itself inside its pixel box."""

    anat: Anatomy
    pose: Pose
    n: int
    layers: AnatomyLayers
    box: tuple[int, int, int, int]
    u: np.ndarray
    v: np.ndarray
    lung_w: np.ndarray  # soft lung weight (0-1)
    lung: np.ndarray  # where lung_w > 0: the lungs and their soft edge
    rng: np.random.Generator  # texture stream of this lesion
    spacing_mm: float

    def lungdef(self) -> np.ndarray:
        r0, r1, c0, c1 = self.box
        return resample(self.layers.lungdef, self.n, r0, r1, c0, c1)

    def vessels(self) -> np.ndarray:
        r0, r1, c0, c1 = self.box
        return resample(self.layers.vessels, self.n, r0, r1, c0, c1)


@dataclass
class LesionSpec:
    """One placed lesion: its class, the anatomy rectangle (u, v) that holds it, and its density field."""

    cls: str
    bounds: tuple[float, float, float, float]  # umin, umax, vmin, vmax
    field: Callable[[LesionContext], tuple[np.ndarray, np.ndarray]]  # -> (density delta, support)
    side: int | None = None


def _lung_points(
    rng: np.random.Generator,
    anat: Anatomy,
    *,
    side: int | None = None,
    vfrac: tuple[float, float] = (0.0, 1.0),
    margin: float = 0.0,
) -> tuple[float, float, int]:
    """A random point inside a lung (and at least ``margin`` from its border in 8 directions)."""
    for _ in range(50):
        m = 256
        k = rng.integers(0, 2, m) if side is None else np.full(m, side)
        sgn = np.where(k == 1, 1.0, -1.0)
        s = rng.uniform(0.02, 1.0, m) * anat.hw[k]
        v = anat.v_ap + rng.uniform(*vfrac, m) * (anat.v_cp[k] - anat.v_ap)
        u = anat.xm + sgn * s
        ok = anat.lung(u, v)
        for a in np.linspace(0, 2 * np.pi, 8, endpoint=False):
            ok &= anat.lung(u + margin * np.cos(a), v + margin * np.sin(a))
        idx = np.flatnonzero(ok)
        if idx.size:
            i = int(idx[0])
            return float(u[i]), float(v[i]), int(k[i])
    raise RuntimeError("could not place a lesion inside the lungs")  # pragma: no cover - geometry guarantees it


def _side_lung(ctx: LesionContext, side: int) -> np.ndarray:
    return ctx.lung & ((ctx.u > ctx.anat.xm) == bool(side))


def _spec_nodule(rng: np.random.Generator, anat: Anatomy, pose: Pose, c: float) -> LesionSpec:
    """A round, lobulated, soft-edged nodule of 8-30 mm (median about 16 mm).

    Nodules under about 8 mm are rarely visible on a radiograph at all, and at the demo's 128 px (about 3 mm per
    pixel) they were one or two pixels among vessel crossings: the range started at 5 mm before.
    """
    diam_mm = 8.0 + 22.0 * rng.beta(1.2, 1.6)
    radius = diam_mm / 2.0 / anat.mm_per_unit(pose)
    cu, cv, _ = _lung_points(rng, anat, vfrac=(0.08, 0.95), margin=radius * 0.9)
    a3, a5 = rng.uniform(0, 0.08), rng.uniform(0, 0.05)
    p3, p5 = rng.uniform(0, 2 * np.pi, 2)
    q_soft = 1.25
    amp = c * rng.uniform(0.7, 1.3) * math.sqrt(diam_mm / 15.0)
    reach = radius * q_soft * (1 + a3 + a5)

    def field_fn(ctx: LesionContext) -> tuple[np.ndarray, np.ndarray]:
        du, dv = ctx.u - cu, ctx.v - cv
        theta = np.arctan2(dv, du)
        r_theta = radius * (1 + a3 * np.cos(3 * theta + p3) + a5 * np.cos(5 * theta + p5))
        q2 = (du * du + dv * dv) / (q_soft * r_theta) ** 2
        p = np.clip(1.0 - q2, 0.0, 1.0) ** 1.3
        support = (p > 0) & ctx.lung
        return amp * p * ctx.lung_w * support, support

    return LesionSpec("nodule", (cu - reach, cu + reach, cv - reach, cv + reach), field_fn)


def _spec_consolidation(rng: np.random.Generator, anat: Anatomy, pose: Pose, c: float) -> LesionSpec:
    rc = rng.uniform(0.05, 0.1)
    cu, cv, side = _lung_points(rng, anat, vfrac=(0.15, 0.95), margin=0.02)
    # A few large lobules make the shape, many small acinar ones its fluffy, patchy texture and margin.
    big, small = int(rng.integers(4, 8)), int(rng.integers(14, 28))
    m = big + small
    rad = rc * np.concatenate([0.5 * np.sqrt(rng.random(big)), 0.85 * np.sqrt(rng.random(small))])
    ang = rng.uniform(0, 2 * np.pi, m)
    bu, bv = cu + rad * np.cos(ang), cv + rad * np.sin(ang)
    br = rc * np.concatenate([rng.uniform(0.3, 0.5, big), rng.uniform(0.1, 0.2, small)])
    ba = np.concatenate([rng.uniform(0.6, 1.0, big), rng.uniform(0.3, 0.7, small)])
    t0 = 0.35
    reach = float(np.max(rad + br * np.sqrt(2 * np.log(np.maximum(ba * m / t0, 1.0001)))))
    amp = c * rng.uniform(0.75, 1.25)
    bronch = None
    if rng.random() < 0.6:
        hx = anat.xm + (1 if side else -1) * anat.hilum_s[side]
        base_ang = math.atan2(cv - anat.hilum_v[side], cu - hx)
        rows = []
        for _ in range(int(rng.integers(2, 4))):
            a = base_ang + rng.uniform(-0.5, 0.5)
            su, sv = cu - 0.5 * rc * math.cos(a), cv - 0.5 * rc * math.sin(a)
            ln = rc * rng.uniform(0.5, 0.9)
            eu, ev = su + ln * math.cos(a), sv + ln * math.sin(a)
            rows.append((su, sv, eu, ev, 1.0))
            for sgn in (-1, 1):
                b = a + sgn * rng.uniform(0.3, 0.6)
                fl = ln * rng.uniform(0.4, 0.7)
                rows.append((eu, ev, eu + fl * math.cos(b), ev + fl * math.sin(b), 0.7))
        bronch = np.array(rows)

    def field_fn(ctx: LesionContext) -> tuple[np.ndarray, np.ndarray]:
        f = np.zeros(ctx.u.shape, dtype=np.float32)
        for i in range(m):
            f += ba[i] * np.exp(-((ctx.u - bu[i]) ** 2 + (ctx.v - bv[i]) ** 2) / (2 * br[i] ** 2))
        p = 1.0 - np.exp(-np.clip(f - t0, 0.0, None) / 0.45)
        support = (p > 0) & ctx.lung
        air = np.zeros_like(p)
        if bronch is not None:
            sigma = max(0.7, 1.0 / ctx.spacing_mm)
            segs = bronch.copy()
            r0, _, c0, _ = ctx.box
            tubes = draw_tubes(p.shape, (r0, c0), ctx.pose, ctx.n, segs, 1.0, [sigma], [])
            if tubes.max() > 0:
                air = (tubes / tubes.max()).astype(np.float32)
        delta = (amp * p * (1.0 - 0.6 * air) * ctx.lung_w - 0.5 * p * ctx.vessels()) * support
        return delta, support

    return LesionSpec("consolidation", (cu - reach, cu + reach, cv - reach, cv + reach), field_fn, side)


def _spec_interstitial(rng: np.random.Generator, anat: Anatomy, pose: Pose, c: float) -> LesionSpec:
    side = int(rng.integers(0, 2))
    sgn = 1.0 if side else -1.0
    zone = rng.choice(4, p=[0.55, 0.2, 0.1, 0.15])
    lo, hi = [(0.45, 1.03), (0.3, 0.78), (0.0, 0.5), (0.12, 1.03)][zone]
    height = anat.v_cp[side] - anat.v_ap
    va, vb = anat.v_ap + lo * height, anat.v_ap + hi * height
    cell_mm = rng.uniform(3.0, 6.0)
    dots = rng.random() < 0.5
    amp = c * rng.uniform(0.75, 1.25)
    umin, umax = sorted((anat.xm + sgn * 0.03, anat.xm + sgn * (anat.hw[side] + 0.01)))

    def field_fn(ctx: LesionContext) -> tuple[np.ndarray, np.ndarray]:
        lung = _side_lung(ctx, side)
        sigma = max(0.8, cell_mm / ctx.spacing_mm / 2.5)
        white = ctx.rng.standard_normal(ctx.u.shape, dtype=np.float32)
        band = ndimage.gaussian_filter(white, sigma) - ndimage.gaussian_filter(white, 2 * sigma)
        band /= max(float(band.std()), 1e-6)
        texture = np.exp(-((band / 0.45) ** 2))
        if dots:
            pts = (ctx.rng.random(ctx.u.shape) < 0.25 / (sigma * sigma)).astype(np.float32)
            blob = ndimage.gaussian_filter(pts, 0.6 * sigma)
            texture = 0.5 * texture + 0.3 * blob / max(float(blob.max()), 1e-6) + 0.2
        else:
            texture = 0.65 * texture + 0.35
        tv = np.clip((ctx.v - va) / (vb - va), 0.0, 1.0)
        env = np.sin(np.pi * tv) ** 0.6
        s = np.abs(ctx.u - ctx.anat.xm)
        periph = 0.6 + 0.4 * np.clip(s / ctx.anat.s_out(ctx.v, side), 0.0, 1.0)
        support = (env > 0) & lung
        return amp * env * periph * texture * ctx.lung_w * support, support

    return LesionSpec("interstitial_opacity", (umin, umax, va, vb), field_fn, side)


#: Lateral fluid level of a pleural effusion above its costophrenic angle, as a fraction of the lung's height.
EFFUSION_LEVEL = (0.2, 0.5)


def _spec_effusion(rng: np.random.Generator, anat: Anatomy, pose: Pose, c: float) -> LesionSpec:
    """A free effusion of an upright patient: fluid fills the hemithorax's base up to a meniscus.

    The fluid level stands ``EFFUSION_LEVEL`` of the lung's height above the costophrenic angle at the chest
    wall and falls by 35-55 % of that towards the mediastinum (the meniscus, concave upwards), so the effusion
    blunts the costophrenic angle and, once it rises above the dome, hides the hemidiaphragm: 5-35 % of its lung
    field. It used to be a wedge in the lateral angle only, below the dome's peak (1-8 % of its lung, median 3 %),
    within the normal spread of the angle's level and sharpness, and a basal reticular opacity raised the lung
    base's density as much: whole-image models did not learn it (test AUROC 0.34-0.62 at 128 px).
    """
    side = int(rng.integers(0, 2))
    sgn = 1.0 if side else -1.0
    hw, vcp = anat.hw[side], anat.v_cp[side]
    h = rng.uniform(*EFFUSION_LEVEL) * (vcp - anat.v_ap)
    drop = h * rng.uniform(0.35, 0.55)
    tau = rng.uniform(0.015, 0.035)  # the hazy upper margin, where the fluid layer thins out
    frac = min(1.0, c * rng.uniform(0.85, 1.1))
    v_lat = vcp - h
    umin, umax = sorted((anat.xm + sgn * 0.02, anat.xm + sgn * (hw + 0.01)))

    def field_fn(ctx: LesionContext) -> tuple[np.ndarray, np.ndarray]:
        lung = _side_lung(ctx, side)
        s = np.abs(ctx.u - ctx.anat.xm)
        meniscus = v_lat + drop * (1.0 - np.clip(s / hw, 0.0, 1.0) ** 2)
        p = np.clip((ctx.v - meniscus) / tau, 0.0, 1.0) ** 0.8
        support = (p > 0) & lung
        delta = frac * p * (ctx.lungdef() - ctx.vessels()) * support
        return delta, support

    return LesionSpec("pleural_effusion", (umin, umax, v_lat - 0.01, vcp + 0.01), field_fn, side)


def _spec_pneumothorax(rng: np.random.Generator, anat: Anatomy, pose: Pose, c: float) -> LesionSpec:
    side = int(rng.integers(0, 2))
    sgn = 1.0 if side else -1.0
    v_lim = anat.v_ap + rng.uniform(0.3, 0.75) * (anat.v_cp[side] - anat.v_ap)
    rim = rng.uniform(0.025, 0.07)
    amp = c * rng.uniform(0.75, 1.25)
    umin, umax = sorted((anat.xm + sgn * 0.02, anat.xm + sgn * (anat.hw[side] + 0.01)))

    def field_fn(ctx: LesionContext) -> tuple[np.ndarray, np.ndarray]:
        a = ctx.anat
        lung = _side_lung(ctx, side)
        s = np.abs(ctx.u - a.xm)
        d = np.minimum(a.s_out(ctx.v, side) - s, (ctx.v - a.apex(s)) * 0.7)
        width = rim * np.clip((v_lim - ctx.v) / (v_lim - a.v_ap), 0.0, 1.0) ** 0.5
        zone = lung & (d < width) & (width > 0)
        wl = max(0.7 / (ctx.n * ctx.pose.scale), 0.3 / a.mm_per_unit(ctx.pose))
        near = lung & (width > 0) & (np.abs(d - width) < 3 * wl)
        line = np.exp(-(((d - width) / wl) ** 2)) * near
        delta = (-amp * ctx.lung_w - ctx.vessels()) * zone + 0.7 * amp * line * ctx.lung_w
        return delta.astype(np.float32), zone | near

    return LesionSpec("pneumothorax", (umin, umax, anat.v_ap - 0.02, v_lim + 0.01), field_fn, side)


LESION_SPECS: dict[str, Callable[[np.random.Generator, Anatomy, Pose, float], LesionSpec]] = {
    "nodule": _spec_nodule,
    "consolidation": _spec_consolidation,
    "interstitial_opacity": _spec_interstitial,
    "pleural_effusion": _spec_effusion,
    "pneumothorax": _spec_pneumothorax,
}
"""Lesion class -> function (rng, anatomy, pose, contrast) that places one lesion of that class."""
