"""Settings of tissue detection (:class:`TissueConfig`), checked when made; every size is physical (micrometres).

See :mod:`napari_patchdx.sampling.tissue` for the algorithm the settings steer.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["TissueConfig"]


def _check_number(name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"tissue.{name}: must be a number, got {value!r}")
    v = float(value)
    below = v <= lo if lo_open else v < lo
    if not math.isfinite(v) or below or v > hi:
        bracket = "(" if lo_open else "["
        raise ConfigError(f"tissue.{name}: must be within {bracket}{lo:g}, {hi:g}], got {value!r}")
    return v


@dataclass(frozen=True)
class TissueConfig:
    """Settings of tissue detection. Every size is physical (micrometres), so they hold at any scan resolution.

    Attributes:
        target_mpp: resolution of the mask, micrometres per mask pixel (default 8: a 25 mm section gives a
            3125 px mask, fine enough to outline tissue to within about 10 um, cheap to compute and store).
        threshold: saturation in [0, 1] above which a pixel is tissue on its own; None (default) computes it
            per slide: Otsu's threshold over the saturation of the non-ink pixels, floored as below.
        min_saturation: floor of the threshold (default 0.07). Glass is grey: its saturation in an 8 um/px
            overview is about 0.01-0.04, eosin-stained stroma 0.15 and more. The floor keeps a blank slide
            blank.
        glass_margin: the threshold is also at least the glass's median saturation plus this (default 0.05),
            so tinted glass (a colour cast of 0.08-0.1) does not become tissue either.
        grow_pale: let pale tissue connected to the tissue join it (default True): pixels whose saturation is
            above the floor, or whose optical density relative to the glass is above ``pale_od``, in regions
            broader than the closing disk.
        pale_od: mean optical density (log10, over R, G, B) above which a pixel is darker than the glass
            (default 0.05, i.e. about 11 % less light; glass noise is under 0.01, pale IHC stroma about 0.08).
            0 turns the optical-density cue off.
        closing_um: diameter of the disk of the morphological closing, micrometres (default 50): gaps between
            cells, fibres and thin tears narrower than this are bridged; sections farther apart stay apart.
            0 disables the closing.
        min_object_um2: tissue pieces smaller than this area are dropped, square micrometres (default 10,000,
            about a 100 um square): dust, debris and specks (mostly under 50 um across) are an order of
            magnitude smaller, a biopsy fragment or lymph-node slice is orders larger, and every piece kept
            can hold at least one 299 px patch at 0.25 um/px (75 um square).
        min_hole_um2: holes in tissue smaller than this area are filled, square micrometres (default 20,000,
            about a 140 um square): fat cells (50-150 um across), small vessels and gland lumens, cracks;
            larger holes (big vessels, cysts, gaps between sections) stay out.
        reject_pen: find marker ink and keep it out of the mask (default True).
        green_hue: (low, high) hue range of green / cyan ink, degrees (default 70-190). No H&E or IHC-DAB
            colour lies in it.
        green_min_saturation: minimum saturation of green ink (default 0.2; glass is below 0.05).
        blue_hue: (low, high) hue range of blue ink, degrees (default 190-250). Hematoxylin lies here too,
            hence the saturation and value floors below.
        blue_min_saturation: minimum saturation of blue ink (default 0.45; blue marker is about 0.6, IHC
            counterstain under 0.3 and dense H&E hematoxylin under 0.45 at 8 um/px).
        blue_min_value: minimum HSV value (brightness) of blue ink (default 0.45; blue marker is bright,
            hematoxylin that saturated is darker).
        black_max_value: black ink (and black fill outside the scan) is darker than this HSV value
            (default 0.3) ...
        black_max_saturation: ... and less saturated than this (default 0.25; dark stained tissue is above 0.3).
        pen_margin_um: ink areas are grown by this distance before being excluded, micrometres (default 25),
            so the blurred rim of a stroke, a mix of ink and glass colours, is not taken for tissue.
    """

    target_mpp: float = 8.0
    threshold: float | None = None
    min_saturation: float = 0.07
    glass_margin: float = 0.05
    grow_pale: bool = True
    pale_od: float = 0.05
    closing_um: float = 50.0
    min_object_um2: float = 10_000.0
    min_hole_um2: float = 20_000.0
    reject_pen: bool = True
    green_hue: tuple[float, float] = (70.0, 190.0)
    green_min_saturation: float = 0.2
    blue_hue: tuple[float, float] = (190.0, 250.0)
    blue_min_saturation: float = 0.45
    blue_min_value: float = 0.45
    black_max_value: float = 0.3
    black_max_saturation: float = 0.25
    pen_margin_um: float = 25.0

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("target_mpp", _check_number("target_mpp", self.target_mpp, 0.0, 1e4, lo_open=True))
        if self.threshold is not None:
            put("threshold", _check_number("threshold", self.threshold, 0.0, 1.0))
        for name in (
            "min_saturation",
            "green_min_saturation",
            "blue_min_saturation",
            "blue_min_value",
            "black_max_value",
            "black_max_saturation",
        ):
            put(name, _check_number(name, getattr(self, name), 0.0, 1.0))
        if self.min_saturation >= 1.0:
            raise ConfigError(f"tissue.min_saturation: must be below 1, got {self.min_saturation!r}")
        for name in ("closing_um", "pen_margin_um"):
            put(name, _check_number(name, getattr(self, name), 0.0, 1e5))
        for name in ("min_object_um2", "min_hole_um2"):
            put(name, _check_number(name, getattr(self, name), 0.0, 1e12))
        put("glass_margin", _check_number("glass_margin", self.glass_margin, 0.0, 1.0))
        put("pale_od", _check_number("pale_od", self.pale_od, 0.0, 5.0))
        for name in ("reject_pen", "grow_pale"):
            value = getattr(self, name)
            if not isinstance(value, bool | np.bool_):
                raise ConfigError(f"tissue.{name}: must be true or false, got {value!r}")
            put(name, bool(value))
        for name in ("green_hue", "blue_hue"):
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != 2:
                raise ConfigError(f"tissue.{name}: must be a (low, high) pair of hues in degrees, got {value!r}")
            lo = _check_number(f"{name}[0]", value[0], 0.0, 360.0)
            hi = _check_number(f"{name}[1]", value[1], 0.0, 360.0)
            if lo >= hi:
                raise ConfigError(f"tissue.{name}: low hue must be below high hue, got {value!r}")
            put(name, (lo, hi))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples become lists)."""
        d = asdict(self)
        for name in ("green_hue", "blue_hue"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TissueConfig:
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys raise ConfigError."""
        if not isinstance(d, dict):
            raise ConfigError(f"tissue: settings must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"tissue: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**d)
