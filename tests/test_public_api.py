"""The public API: every name in ``napari_patchdx.__all__`` resolves and is documented, and the one-call stage
functions (``sample``, ``evaluate``, ``report``) give what the stage jobs give."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pandas as pd
import pytest

import napari_patchdx as pdx
from napari_patchdx.evaluation.slide_files import evaluate_slides
from napari_patchdx.evaluation.xrays import evaluate_cxr
from napari_patchdx.progress import run_job
from napari_patchdx.sampling.job import sample_slides_job

from .evaluation.test_evaluate import build_cxr_case, build_slide_case


def test_every_public_name_resolves_and_is_documented() -> None:
    for name in pdx.__all__:
        value = getattr(pdx, name)
        if callable(value):
            assert inspect.getdoc(value), f"napari_patchdx.{name} has no docstring"
    assert pdx.report is pdx.build_report
    with pytest.raises(AttributeError, match="no attribute 'sampel'"):
        pdx.sampel  # noqa: B018


def test_sample_is_the_sample_stage_on_files(wsi_cohort, tmp_path: Path) -> None:
    folder = wsi_cohort.slides[0].path.parent
    out = tmp_path / "patches.csv"
    reports = []
    table = pdx.sample(folder, out, settings=pdx.SampleSettings(n=40), seed=2, on_progress=reports.append)
    pairs = [(s.path, s.annotation_path) for s in wsi_cohort.slides]
    expected = run_job(sample_slides_job(sorted(pairs), n=40, seed=2))
    pd.testing.assert_frame_equal(table, expected)
    assert out.is_file() and len(pd.read_csv(out)) == 40 and reports
    assert set(table["label"]) == {0, 1}
    # one file of the folder, and the folder again: each slide once
    again = pdx.sample([wsi_cohort.slides[0].path, folder], settings=pdx.SampleSettings(n=5), seed=2)
    assert len(again) == 5
    with pytest.raises(pdx.InputFileError, match="not a slide we read"):
        pdx.sample([out])
    with pytest.raises(pdx.ConfigError, match=r"sample\.method"):
        pdx.SampleSettings(method="random")


def test_evaluate_routes_slides_and_xray_cohorts(tmp_path: Path) -> None:
    case = build_slide_case(tmp_path / "s")
    got = pdx.evaluate(case["slides"], case["heatmaps"], tmp_path / "a", settings=pdx.EvaluateSettings(n_boot=50))
    want = evaluate_slides(case["slides"], case["heatmaps"], tmp_path / "b", n_boot=50)
    for metrics in (got, want):
        metrics.pop("inputs")
    assert got == want and got["froc"]["score"] is not None
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["froc"] == got["froc"]

    cohort, infer = build_cxr_case(tmp_path / "x")
    got = pdx.evaluate(cohort, infer, tmp_path / "c", settings=pdx.EvaluateSettings(n_boot=20), seed=1)
    want = evaluate_cxr(infer, cohort, tmp_path / "d", n_boot=20, seed=1)
    for metrics in (got, want):
        metrics.pop("inputs", None)
    assert got == want and got["track"] == "cxr"
    with pytest.raises(pdx.ConfigError, match="thresholds are for a chest X-ray cohort"):
        pdx.evaluate(case["slides"], case["heatmaps"], tmp_path / "e", thresholds={"tumor": 0.5})
    with pytest.raises(pdx.ConfigError, match="annotations and mpp are for slides"):
        pdx.evaluate(cohort, infer, tmp_path / "f", annotations={})
