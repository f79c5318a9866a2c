"""This package's version and the one record of the software a run used (written into every manifest)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

__all__ = ["RECORDED_PACKAGES", "__version__", "package_versions"]

try:
    __version__ = version("napari-patchdx")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

#: the distributions whose versions a manifest records, by their names on PyPI
RECORDED_PACKAGES = (
    "torch",
    "torchvision",
    "numpy",
    "pandas",
    "scikit-learn",
    "scikit-image",
    "tifffile",
    "openslide-python",
    "pydicom",
    "dask",
)


def package_versions() -> dict[str, str]:
    """``{"napari-patchdx": ..., "python": ..., "platform": ..., <distribution>: <version>, ...}``.

    Keys are PyPI distribution names (``scikit-learn``, not ``sklearn``); a package that is not installed is left
    out. Reads package metadata only: nothing is imported.
    """
    out = {"napari-patchdx": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
