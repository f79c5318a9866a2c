"""``python -m napari_patchdx.training``."""

import sys

from .cli import main

sys.exit(main())
