"""``python -m napari_patchdx.cli``."""

import sys

from . import main

sys.exit(main())
