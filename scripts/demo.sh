#!/usr/bin/env bash
# Quick-start command 1: set everything up, then run the demo on the built-in synthetic cohorts.
# Extra arguments go to `napari-patchdx demo` (e.g. --out DIR, --view).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/napari-patchdx demo "$@"
