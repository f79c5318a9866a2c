"""The patient pose: a seeded rotation, scale and offset mapping anatomy coordinates (u, v) to pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pose:
    """Maps anatomy (u, v) to normalised image (x, y) = ((col + 0.5) / n, (row + 0.5) / n) and back."""

    angle: float  # radians; positive turns +u towards +v (clockwise on screen)
    scale: float
    dx: float
    dy: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Pose:
        return cls(
            angle=math.radians(rng.uniform(-3.0, 3.0)),
            scale=rng.uniform(0.95, 1.05),
            dx=rng.uniform(-0.025, 0.025),
            dy=rng.uniform(-0.02, 0.025),
        )

    def grid(self, r0: int, r1: int, c0: int, c1: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Anatomy coordinates (u, v), float32 (r1 - r0, c1 - c0), of the pixel centres of a box at size n."""
        x = ((np.arange(c0, c1, dtype=np.float64) + 0.5) / n - 0.5 - self.dx)[None, :]
        y = ((np.arange(r0, r1, dtype=np.float64) + 0.5) / n - 0.5 - self.dy)[:, None]
        c, s = math.cos(self.angle) / self.scale, math.sin(self.angle) / self.scale
        u = (0.5 + c * x + s * y).astype(np.float32)
        v = (0.5 - s * x + c * y).astype(np.float32)
        return u, v

    def to_pixels(self, u: np.ndarray, v: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) pixel coordinates (continuous; integer = pixel centre) of anatomy points at size n."""
        c, s = math.cos(self.angle) * self.scale, math.sin(self.angle) * self.scale
        uu, vv = np.asarray(u, dtype=np.float64) - 0.5, np.asarray(v, dtype=np.float64) - 0.5
        x = 0.5 + self.dx + c * uu - s * vv
        y = 0.5 + self.dy + s * uu + c * vv
        return y * n - 0.5, x * n - 0.5

    def box(self, umin: float, umax: float, vmin: float, vmax: float, n: int, margin: int = 2) -> tuple[int, ...]:
        """Pixel box (r0, r1, c0, c1), clipped to the image, that holds an anatomy rectangle."""
        rows, cols = self.to_pixels(np.array([umin, umax, umin, umax]), np.array([vmin, vmin, vmax, vmax]), n)
        r0 = max(0, math.floor(rows.min()) - margin)
        r1 = min(n, math.ceil(rows.max()) + margin + 1)
        c0 = max(0, math.floor(cols.min()) - margin)
        c1 = min(n, math.ceil(cols.max()) + margin + 1)
        return r0, max(r0, r1), c0, max(c0, c1)
