#!/usr/bin/env bash
# Quick-start command 1: set everything up, then run the demo on the built-in synthetic cohorts: both tracks
# through the pipeline (slides: sampling, training, heatmaps with TTA, lesion points, FROC, AUC; chest X-rays:
# curriculum vs baseline, CAMs, AUROC, pointing game), then DIR/report.html and DIR/metrics.json.
# Extra arguments go to `napari-patchdx demo` (--out DIR, default ./patchdx-demo; --view; --quick; --seed N).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/napari-patchdx demo "$@"
