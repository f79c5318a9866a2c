#!/usr/bin/env bash
# Quick-start command 2: set everything up, then run the linter and the full test suite (GUI tests run in a
# real napari viewer on a virtual X server started by pytest-xvfb). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
exec .venv/bin/python -m pytest "$@"
