"""The :class:`Transform` base class: ``transform(image, rng) -> image``, a ``repr`` and a JSON-ready ``to_dict``.

Kept apart from :mod:`~napari_patchdx.transforms.compose` so that every module of transforms can subclass it
(:mod:`~napari_patchdx.transforms.stain` does); :func:`~napari_patchdx.transforms.transform_from_dict` rebuilds
any of them from its ``to_dict``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

__all__ = ["Transform"]


class Transform(ABC):
    """Base of every transform: ``transform(image, rng) -> image``, a ``repr`` and a JSON-ready ``to_dict``."""

    @abstractmethod
    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Apply the transform; all randomness comes from ``rng``."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready) that rebuild this transform."""

    def to_dict(self) -> dict[str, Any]:
        """``{"type": class name, **constructor arguments}``, for run manifests; see :func:`transform_from_dict`."""
        return {"type": type(self).__name__, **self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]
