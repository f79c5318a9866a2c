"""The acquisition chain of a seeded vendor: detector filter (blur / sharpen), noise, heel effect, display curve."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MASK_TRUNCATE = 2.5  # Gaussian kernels are cut at 2.5 sigma, so a filter moves nothing further than that


@dataclass(frozen=True)
class Vendor:
    """A seeded acquisition chain: display curve, density-domain filter, noise and heel effect."""

    gain: float
    offset: float
    gamma: float
    s_curve: float
    filter: str  # "blur", "sharpen" or "none"
    sigma_px: float
    amount: float
    noise: float
    noise_corr_px: float
    heel: tuple[float, float]

    @classmethod
    def draw(cls, rng: np.random.Generator, size: int) -> Vendor:
        scale = size / 1024.0
        kind = str(rng.choice(["blur", "sharpen", "none"], p=[0.4, 0.4, 0.2]))
        sigma = rng.uniform(0.5, 1.1) * scale if kind == "blur" else rng.uniform(1.5, 3.0) * scale
        amount = rng.uniform(0.3, 0.9)
        if sigma < 0.3:
            kind = "none"
        return cls(
            gain=rng.uniform(0.92, 1.03),
            offset=rng.uniform(-0.03, 0.02),
            gamma=rng.uniform(0.75, 1.35),
            s_curve=rng.uniform(0.0, 0.5),
            filter=kind,
            sigma_px=float(sigma) if kind != "none" else 0.0,
            amount=float(amount) if kind == "sharpen" else 0.0,
            noise=rng.uniform(0.006, 0.02),
            noise_corr_px=rng.uniform(0.4, 0.8),
            heel=(rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)),
        )

    @property
    def radius(self) -> int:
        """How far (pixels, Chebyshev) the filter moves a change."""
        return int(MASK_TRUNCATE * self.sigma_px + 0.5) if self.filter != "none" else 0

    def apply_filter(self, d: np.ndarray) -> np.ndarray:
        if self.filter == "none":
            return d
        smooth = ndimage.gaussian_filter(d, self.sigma_px, truncate=MASK_TRUNCATE)
        return smooth if self.filter == "blur" else d + self.amount * (d - smooth)

    def curve(self, x: np.ndarray) -> np.ndarray:
        y = np.clip(x * self.gain + self.offset, 0.0, 1.0) ** self.gamma
        return (1 - self.s_curve) * y + self.s_curve * y * y * (3 - 2 * y)
