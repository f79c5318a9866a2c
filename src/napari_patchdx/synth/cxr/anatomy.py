"""Seeded chest anatomy in (u, v): lung outlines (apex, lateral wall, domes), heart, hila, ribs, spine."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .pose import Pose


@dataclass(frozen=True)
class Anatomy:
    """Seeded anatomy in (u, v). Index 0 = the image's left (patient's right), 1 = the image's right."""

    xm: float
    hw: np.ndarray  # lateral half-width of each lung at its widest
    v_ap: float  # apex level
    s_ac: float  # lateral offset of the apex cap's centre
    k_ap: float  # curvature of the apex cap
    t_w: float  # fraction of the lung height over which the lateral wall widens
    v_cp: np.ndarray  # costophrenic angle level
    dh: np.ndarray  # dome height above the costophrenic angle
    s_pk: np.ndarray  # lateral offset of the dome's peak
    p_cp: np.ndarray  # exponent of the lateral dome (sharper costophrenic angle when larger)
    w_med: float
    v_ak: float
    a_ak: float
    hx: float
    hy: float
    hrx: float
    hry: float
    tilt: float
    wall: float
    v_sh: float
    hilum_s: np.ndarray
    hilum_v: np.ndarray
    spine_w: float
    spine_period: float
    spine_phase: float
    trachea_w: float
    v_cl: float
    fov_mm: float
    gastric: tuple[float, float, float, float] | None
    breasts: float
    rib_y: np.ndarray  # (2, 10) posterior rib levels at the spine
    rib_h: np.ndarray
    rib_g: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Anatomy:
        xm = 0.5 + rng.uniform(-0.012, 0.012)
        hw0 = rng.uniform(0.33, 0.385)
        hw = np.array([hw0, hw0 + rng.uniform(-0.02, 0.01)])
        v_ap = rng.uniform(0.085, 0.15)
        vcp0 = rng.uniform(0.72, 0.8)
        v_cp = np.array([vcp0, vcp0 + rng.uniform(0.0, 0.03)])
        dh = rng.uniform(0.08, 0.12, 2)
        s_pk = hw * rng.uniform(0.45, 0.55, 2)
        p_cp = rng.uniform(1.7, 2.4, 2)
        hrx = rng.uniform(0.15, 0.18)
        hry = rng.uniform(0.105, 0.13)
        v_pk_l = v_cp[1] - dh[1]
        hilum_v = v_ap + rng.uniform(0.5, 0.58, 2) * (v_cp - v_ap) - np.array([0.0, 0.02])
        ribs_y = np.empty((2, 10))
        ribs_h = np.empty((2, 10))
        ribs_g = np.empty((2, 10))
        for k in range(2):
            top, bottom = v_ap - 0.035, v_cp[k] + 0.01
            frac = (np.arange(10) / 9.0) ** rng.uniform(0.85, 1.0)
            ribs_y[k] = top + (bottom - top) * frac + rng.normal(0, 0.004, 10)
            ribs_h[k] = rng.uniform(0.03, 0.045, 10) * np.linspace(1.4, 1.0, 10)
            ribs_g[k] = rng.uniform(0.09, 0.13, 10)
        gastric = None
        if rng.random() < 0.65:
            gastric = (
                rng.uniform(0.14, 0.24),
                rng.uniform(0.025, 0.05),
                rng.uniform(0.03, 0.06),
                rng.uniform(0.018, 0.03),
            )
        return cls(
            xm=xm,
            hw=hw,
            v_ap=v_ap,
            s_ac=rng.uniform(0.14, 0.18),
            k_ap=rng.uniform(6.0, 10.0),
            t_w=rng.uniform(0.55, 0.72),
            v_cp=v_cp,
            dh=dh,
            s_pk=s_pk,
            p_cp=p_cp,
            w_med=rng.uniform(0.05, 0.065),
            v_ak=v_ap + rng.uniform(0.13, 0.19),
            a_ak=rng.uniform(0.02, 0.04),
            hx=xm + rng.uniform(0.05, 0.075),
            hy=v_pk_l - rng.uniform(0.55, 0.75) * hry,
            hrx=hrx,
            hry=hry,
            tilt=rng.uniform(0.4, 0.65),
            wall=rng.uniform(0.04, 0.08),
            v_sh=v_ap + rng.uniform(-0.01, 0.05),
            hilum_s=np.array([rng.uniform(0.09, 0.12), rng.uniform(0.11, 0.14)]),
            hilum_v=hilum_v,
            spine_w=rng.uniform(0.03, 0.04),
            spine_period=rng.uniform(0.045, 0.058),
            spine_phase=rng.uniform(0, 1),
            trachea_w=rng.uniform(0.012, 0.016),
            v_cl=v_ap + rng.uniform(0.07, 0.11),
            fov_mm=rng.uniform(350.0, 430.0),
            gastric=gastric,
            breasts=rng.uniform(0.04, 0.08) if rng.random() < 0.4 else 0.0,
            rib_y=ribs_y,
            rib_h=ribs_h,
            rib_g=ribs_g,
        )

    # -- lung outline ------------------------------------------------------------------------------------------
    def side(self, u: np.ndarray) -> np.ndarray:
        return (np.asarray(u) > self.xm).astype(np.intp)

    def s_out(self, v: np.ndarray, k: np.ndarray | int) -> np.ndarray:
        """Lateral lung boundary (distance from the midline) at level v."""
        hw = self.hw[k]
        t = (v - self.v_ap) / (self.v_cp[k] - self.v_ap)
        return self.s_ac + (hw - self.s_ac) * np.sin(np.pi / 2 * np.clip(t / self.t_w, 0.0, 1.0)) ** 0.75

    def apex(self, s: np.ndarray) -> np.ndarray:
        """Upper lung boundary (the apex cap) at lateral distance s."""
        return self.v_ap + self.k_ap * (s - self.s_ac) ** 2

    def dome(self, s: np.ndarray, k: np.ndarray | int) -> np.ndarray:
        """Diaphragm level at lateral distance s: lungs above, abdomen below."""
        s_pk, dh = self.s_pk[k], self.dh[k]
        v_pk = self.v_cp[k] - dh
        x = s - s_pk
        lateral = v_pk + dh * (np.clip(x, 0.0, None) / (self.hw[k] - s_pk)) ** self.p_cp[k]
        medial = v_pk + 0.6 * dh * (np.clip(-x, 0.0, None) / s_pk) ** 2
        return np.where(x >= 0, lateral, medial)

    def s_in(self, v: np.ndarray, k: np.ndarray | int) -> np.ndarray:
        """Medial (mediastinal) lung boundary; the aortic knob bulges on the image's right."""
        knob = self.a_ak * np.exp(-(((v - self.v_ak) / 0.035) ** 2))
        return self.w_med + np.where(np.asarray(k) == 1, knob, 0.0)

    def heart_r2(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du, dv = u - self.hx, v - self.hy
        c, s = math.cos(self.tilt), math.sin(self.tilt)
        a = (c * du + s * dv) / self.hrx
        b = (-s * du + c * dv) / self.hry
        return a * a + b * b

    def lung(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Boolean lung fields (both sides) at anatomy points."""
        u = np.asarray(u)
        v = np.asarray(v)
        k = self.side(u)
        s = np.abs(u - self.xm)
        inside = (s < self.s_out(v, k)) & (v > self.apex(s)) & (v < self.dome(s, k)) & (s > self.s_in(v, k))
        return inside & (self.heart_r2(u, v) > 1.0)

    def lung_depth(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Relative lung thickness (0.2-1): thin at the apex and the chest wall, thickest mid-field."""
        k = self.side(u)
        s = np.abs(u - self.xm)
        p = np.clip(s / self.s_out(v, k), 0.0, 1.0)
        lateral = 0.35 + 0.65 * np.clip((1.0 - p) / 0.3, 0.0, 1.0) ** 0.5
        vertical = np.clip((v - self.v_ap) / 0.12, 0.3, 1.0) ** 0.5
        return lateral * vertical

    def mm_per_unit(self, pose: Pose) -> float:
        return self.fov_mm * pose.scale
