"""Smoke test of benchmarks/claims.py: every arm at the smallest sizes (``--smoke``), in a subprocess.

Checks the shape of the last JSON line, not which arm wins: every required claim is present, every number is finite,
and every null has a reason in ``null_reasons``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "claims.py"
REQUIRED = (
    "froc_tta",
    "froc_no_tta",
    "cross_centre_froc",
    "hard_negative_fp_per_slide",
    "slide_auc_classifier",
    "slide_auc_max",
    "ensemble_froc",
    "curriculum_vs_baseline",
    "xray_min_class_auroc",
)


def _leaves(value: Any, path: str = ""):
    """(dotted path, leaf) of every number / null in a JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v, path)
    elif value is None or isinstance(value, int | float):
        yield path, value


def _has_reason(path: str, reasons: dict[str, str]) -> bool:
    """A null at ``path`` is explained by a reason for it or for one of its parents."""
    parts = path.split(".")
    return any(".".join(parts[:k]) in reasons for k in range(1, len(parts) + 1))


@pytest.mark.slow
def test_claims_smoke_prints_every_claim_as_the_last_json_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert "froc_tta" in proc.stdout.split(lines[-1])[0], "the table comes before the JSON line"
    for key in REQUIRED:
        assert key in result, key
    for key in ("froc_tta", "froc_no_tta", "slide_auc_classifier", "slide_auc_max"):
        assert len(result[key]) == 3, key  # [value, lo, hi]
    assert set(result["cross_centre_froc"]) == {"liu", "none", "hed", "macenko"}
    assert {"before", "after", "difference"} <= set(result["hard_negative_fp_per_slide"])
    assert set(result["ensemble_froc"]) == {"1", "2", "3"}
    assert result["curriculum_vs_baseline"], "at least one training-set size"
    for cell in result["curriculum_vs_baseline"].values():
        assert len(cell["difference"]) == 3
    # CPU: the architecture arm is skipped and says so
    assert result["architectures"] is None
    assert "cuda" in result["null_reasons"]["architectures"]
    reasons = result["null_reasons"]
    for path, leaf in _leaves({k: v for k, v in result.items() if k != "null_reasons"}):
        if leaf is None:
            assert _has_reason(path, reasons), f"{path} is null without a reason"
        else:
            assert math.isfinite(leaf), path
    # values that are defined are probabilities / rates in range
    for key in ("froc_tta", "froc_no_tta", "slide_auc_classifier", "slide_auc_max"):
        for v in result[key]:
            assert v is None or 0.0 <= v <= 1.0, (key, v)
