"""napari adapters (reader, writers, sample data, widgets): the only part of napari-patchdx that imports napari.

Importing this package marks triton as unavailable in the napari process (unless it is already imported).
torchvision imports torch._dynamo, which imports triton; triton's bundled LLVM and the LLVM inside Mesa's
software OpenGL (llvmpipe: virtual displays, remote desktops) crash the process when both are loaded. Nothing in
napari-patchdx uses torch.compile, so the viewer process simply runs without triton; headless runs are unaffected.
"""

from __future__ import annotations

import sys

if "triton" not in sys.modules:
    sys.modules["triton"] = None  # type: ignore[assignment]  # `import triton` now raises ImportError
