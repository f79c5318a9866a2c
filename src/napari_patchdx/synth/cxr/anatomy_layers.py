"""Density layers of the anatomy at work resolution: trunk, heart, abdomen, bones, lungs' air and vessels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .anatomy import Anatomy
from .drawing import draw_tubes, rib_profile, tube
from .pose import Pose

_A_SOFT = 0.55  # soft tissue of the trunk at its thickest
_A_LUNG = 0.32  # air deficit of the lungs at their thickest
_A_HEART = 0.07
_A_ABDOMEN = 0.06
_A_RIB = 0.085
_A_VESSEL = 8.0  # peak density per unit vessel diameter (anatomy units): 0.01 -> 0.08


def _vessel_segments(rng: np.random.Generator, anat: Anatomy) -> np.ndarray:
    """Branching pulmonary vessel trees from both hila: (N, 5) segments (u0, v0, u1, v1, diameter).

    Monopodial branching: at each node the vessel goes on almost straight, slightly thinner, and gives off a
    thinner side branch at 25-55 degrees; trees stop at the lung border or below a diameter of ~0.4 mm.
    """
    segs = []
    for k in (0, 1):
        sgn = 1.0 if k else -1.0
        hx, hy = anat.xm + sgn * anat.hilum_s[k], anat.hilum_v[k]
        trunk_deg = np.array([-100.0, -72.0, -40.0, -8.0, 22.0, 48.0, 74.0, 95.0])
        ang = np.deg2rad(trunk_deg + rng.uniform(-10, 10, trunk_deg.size))
        m = ang.size
        x = hx + sgn * rng.uniform(-0.01, 0.015, m)
        y = hy + 0.06 * np.sin(ang) + rng.uniform(-0.01, 0.01, m)
        d = rng.uniform(0.009, 0.014, m)
        length = rng.uniform(0.035, 0.05, m)
        for g in range(14):
            if x.size == 0:
                break
            ex = x + sgn * np.cos(ang) * length
            ey = y + np.sin(ang) * length
            segs.append(np.stack([x, y, ex, ey, d], axis=1))
            inside = anat.lung(ex, ey) | (g < 2)
            keep = inside & (d * 0.85 >= 0.0011)
            x, y, ang, d, length = ex[keep], ey[keep], ang[keep], d[keep], length[keep]
            n = x.size
            side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
            main_ang = ang + np.deg2rad(rng.normal(0, 7, n))
            branch_ang = ang + side * np.deg2rad(rng.uniform(25, 55, n))
            branch = rng.random(n) < 0.85
            x = np.concatenate([x, x[branch]])
            y = np.concatenate([y, y[branch]])
            ang = np.concatenate([main_ang, branch_ang[branch]])
            d = np.concatenate([d * rng.uniform(0.8, 0.9, n), d[branch] * rng.uniform(0.5, 0.7, branch.sum())])
            length = np.concatenate(
                [length * rng.uniform(0.82, 0.95, n), length[branch] * rng.uniform(0.6, 0.85, branch.sum())]
            )
    return np.concatenate(segs, axis=0) if segs else np.zeros((0, 5))


@dataclass
class AnatomyLayers:
    """The anatomy's density at work resolution, in the parts that lesions replace or modulate."""

    base: np.ndarray  # everything but the lungs' air and the vessels
    lungdef: np.ndarray  # the lungs' air deficit (>= 0, subtracted)
    vessels: np.ndarray  # pulmonary vessels (>= 0, added)
    lung_soft: np.ndarray  # soft-edged lung fields (0-1)
    edge_px: int  # how far (work pixels) the soft edge reaches beyond the lung fields


def render_anatomy(anat: Anatomy, pose: Pose, w: int, rng: np.random.Generator) -> AnatomyLayers:
    """Density layers of the anatomy at work resolution w x w (float32)."""
    segs = _vessel_segments(rng, anat)  # before any draw whose size depends on w
    u, v = pose.grid(0, w, 0, w, w)
    k = anat.side(u)
    s = np.abs(u - anat.xm)
    sigma_edge = max(0.6, 0.0022 * w)

    # Soft tissue of the trunk (elliptical cross-section), wider at the shoulders, under a sloping shoulder
    # line that leaves air above the shoulders on either side of the neck.
    bw = anat.hw.max() + anat.wall + 0.16 / (1.0 + np.exp((v - anat.v_sh) / 0.025))
    top = anat.v_sh - 0.2 + 0.5 * np.clip(s - 0.09, 0.0, None) ** 2 / 0.25
    neck = np.clip((v - top) / 0.03, 0.0, 1.0)
    base = _A_SOFT * np.sqrt(np.clip(1.0 - (s / bw) ** 2, 0.0, 1.0)) * (0.35 + 0.65 * neck)

    # Abdomen below the domes, heart above them.
    dome = anat.dome(s, k)
    base += _A_ABDOMEN * np.clip((v - dome) / 0.04, 0.0, 1.0)
    heart = np.sqrt(np.clip(1.0 - anat.heart_r2(u, v), 0.0, 1.0))
    base += _A_HEART * heart * np.clip((dome + 0.015 - v) / 0.03, 0.0, 1.0)

    # Gastric bubble under the left dome (image right), breast shadows over the lower zones.
    if anat.gastric is not None:
        gs, gv, grx, gry = anat.gastric
        gu = anat.xm + gs
        gvv = float(anat.dome(np.array(gs), 1)) + gv
        r2 = ((u - gu) / grx) ** 2 + ((v - gvv) / gry) ** 2
        base -= 0.18 * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)) * np.clip((v - dome) / 0.01, 0.0, 1.0)
    if anat.breasts > 0:
        for kk in (0, 1):
            sgn = 1.0 if kk else -1.0
            cu, cv = anat.xm + sgn * 0.22, anat.v_cp[kk] - 0.1
            r2 = ((u - cu) / 0.17) ** 2 + ((v - cv) / 0.11) ** 2
            fade_up = np.clip((v - cv + 0.08) / 0.14, 0.0, 1.0)
            base += anat.breasts * np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)) * fade_up

    # Spine: vertebral bodies separated by discs.
    du = u - anat.xm
    across = np.sqrt(np.clip(1.0 - (du / anat.spine_w) ** 2, 0.0, 1.0))
    bodies = 0.5 * (1 + np.tanh(3.0 * np.cos(2 * np.pi * (v / anat.spine_period + anat.spine_phase))))
    base += 0.09 * across * (0.65 + 0.35 * bodies)

    # Trachea and main bronchi (air, darker).
    car_v = float(anat.hilum_v.min()) - 0.05
    tx = anat.xm - 0.006
    air = tube(u, v, (tx, -0.1), (tx, car_v), anat.trachea_w)
    for kk in (0, 1):
        sgn = 1.0 if kk else -1.0
        hil = (anat.xm + sgn * anat.hilum_s[kk] * 0.8, anat.hilum_v[kk] - 0.005)
        air = np.maximum(air, tube(u, v, (tx, car_v), hil, anat.trachea_w * 0.75))
    base -= 0.1 * air * np.clip(1.0 - 3.0 * ndimage.gaussian_filter(anat.lung(u, v).astype(np.float32), 2.0), 0, 1)

    # Bones: posterior ribs, anterior ribs and clavicles, evaluated in their own boxes.
    for kk in (0, 1):
        sgn = 1.0 if kk else -1.0
        hw = anat.hw[kk]
        for j in range(10):
            y0, h, g = anat.rib_y[kk, j], anat.rib_h[kk, j], anat.rib_g[kk, j]
            sv = 0.6 * hw
            umin, umax = sorted((anat.xm + sgn * 0.0, anat.xm + sgn * (hw + 0.06)))
            r0, r1, c0, c1 = pose.box(umin, umax, y0 - h - 0.03, y0 + g + 0.03, w)
            if r1 <= r0 or c1 <= c0:
                continue
            bu, bv = u[r0:r1, c0:c1], v[r0:r1, c0:c1]
            ss = sgn * (bu - anat.xm)
            inner = ss <= sv
            vc = np.where(inner, y0 - h * (1 - ((ss - sv) / sv) ** 2), y0 - h + g * ((ss - sv) / (hw - sv)) ** 2)
            slope = np.where(inner, -2 * h * (ss - sv) / sv**2, 2 * g * (ss - sv) / (hw - sv) ** 2)
            half = 0.0105 + 0.005 * np.clip(ss / 0.25, 0.0, 1.0)
            d = (bv - vc) / (half * np.sqrt(1.0 + slope * slope))
            fade = np.clip((anat.s_out(bv, kk) + 0.04 - ss) / 0.03, 0.0, 1.0)
            fade *= np.clip((ss - 0.015) / 0.03, 0.0, 1.0)
            fade *= 1.0 - 0.45 * np.clip((bv - anat.dome(ss, kk)) / 0.03, 0.0, 1.0)  # fainter under the dome
            base[r0:r1, c0:c1] += _A_RIB * rib_profile(d) * fade
        for j in range(6):
            # Anterior ribs leave the lateral wall near a posterior rib's end and run down medially.
            y_lat = anat.rib_y[kk, j + 1] + 0.02
            m = 0.5 + 0.05 * j
            s_lat = hw + 0.02
            umin, umax = sorted((anat.xm + sgn * 0.05, anat.xm + sgn * (s_lat + 0.02)))
            r0, r1, c0, c1 = pose.box(umin, umax, y_lat - 0.03, y_lat + m * s_lat + 0.05, w)
            if r1 <= r0 or c1 <= c0:
                continue
            bu, bv = u[r0:r1, c0:c1], v[r0:r1, c0:c1]
            ss = sgn * (bu - anat.xm)
            q = np.clip(s_lat - ss, 0.0, None)
            vc = y_lat + m * q + 0.35 * q * q
            slope = m + 0.7 * q
            d = (bv - vc) / (0.0135 * np.sqrt(1.0 + slope * slope))
            fade = np.clip((ss - 0.1) / 0.1, 0.0, 1.0) * np.clip((anat.s_out(bv, kk) + 0.03 - ss) / 0.03, 0.0, 1.0)
            fade *= 1.0 - 0.45 * np.clip((bv - anat.dome(ss, kk)) / 0.03, 0.0, 1.0)
            base[r0:r1, c0:c1] += 0.6 * _A_RIB * rib_profile(d) * fade
        # Clavicle: from the sternal end up and out to the shoulder, with a gentle S.
        s0, s1 = 0.035, 0.31
        umin, umax = sorted((anat.xm + sgn * s0, anat.xm + sgn * s1))
        r0, r1, c0, c1 = pose.box(umin, umax, anat.v_cl - 0.07, anat.v_cl + 0.03, w)
        if r1 > r0 and c1 > c0:
            bu, bv = u[r0:r1, c0:c1], v[r0:r1, c0:c1]
            ss = sgn * (bu - anat.xm)
            t = np.clip((ss - s0) / (s1 - s0), 0.0, 1.0)
            vc = anat.v_cl - 0.045 * t + 0.012 * np.sin(2 * np.pi * t)
            slope = (-0.045 + 0.012 * 2 * np.pi * np.cos(2 * np.pi * t)) / (s1 - s0)
            half = 0.011 + 0.004 * (1 - t)
            d = (bv - vc) / (half * np.sqrt(1.0 + slope * slope))
            fade = np.clip((ss - s0) / 0.015, 0.0, 1.0) * np.clip((s1 - ss) / 0.02, 0.0, 1.0)
            base[r0:r1, c0:c1] += 0.14 * rib_profile(d) * fade

    # Lungs: air deficit, soft-edged, thickest mid-field.
    lung = anat.lung(u, v)
    lung_soft = ndimage.gaussian_filter(lung.astype(np.float32), sigma_edge)
    lungdef = _A_LUNG * ndimage.gaussian_filter(lung * anat.lung_depth(u, v).astype(np.float32), sigma_edge)
    # Parenchymal mottling: faint band-pass texture of a few millimetres.
    grain = rng.standard_normal((w, w), dtype=np.float32)
    sigma_grain = max(0.7, 0.006 * w)
    grain = ndimage.gaussian_filter(grain, sigma_grain) - ndimage.gaussian_filter(grain, 2 * sigma_grain)
    grain /= max(float(grain.std()), 1e-6)
    base += 0.012 * grain * lung_soft

    # Pulmonary vessels, visible inside the lungs only.
    sig = [max(0.5, 0.0014 * w), 0.003 * w, 0.0055 * w]
    thr = [0.0045 * w, 0.009 * w]
    vessels = draw_tubes((w, w), (0, 0), pose, w, segs, _A_VESSEL, sig, thr).astype(np.float32) * lung_soft
    return AnatomyLayers(
        base=base.astype(np.float32),
        lungdef=lungdef.astype(np.float32),
        vessels=vessels,
        lung_soft=lung_soft,
        edge_px=int(4.0 * sigma_edge + 0.5) + 1,
    )
