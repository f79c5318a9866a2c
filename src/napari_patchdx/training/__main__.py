"""``python -m napari_patchdx.training``."""

import sys

from . import main

sys.exit(main())
