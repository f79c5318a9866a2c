"""Smoke test of benchmarks/claims.py: every arm at the smallest sizes (``--smoke``), in a subprocess.

Checks the shape of the last JSON line, not which arm wins: every required claim is present, every number is finite,
and every null has a reason in ``null_reasons``.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from napari_patchdx.errors import InputFileError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "claims.py"
PLOTS_SCRIPT = SCRIPT.with_name("_claims_plots.py")
PNG_NAMES = ("claims_slides.png", "claims_curriculum.png", "claims_xray_classes.png")
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


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One ``--smoke --architectures --plots`` run shared by the tests of this module (the architecture arm, which
    ``--device cuda`` runs, on the CPU): the finished process and its plots folder."""
    tmp = tmp_path_factory.mktemp("claims_smoke")
    plots = tmp / "plots"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--architectures", "--out", str(tmp / "work"), "--plots", str(plots)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, plots


@pytest.mark.slow
def test_claims_smoke_prints_every_claim_as_the_last_json_line(
    smoke_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, _ = smoke_run
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
    # the architecture arm (forced on the CPU) trains all three at one patch size Inception-v3 accepts
    assert set(result["architectures"]) == {"small", "inception_v3", "resnet50"}
    assert all(len(cell) == 3 for cell in result["architectures"].values())
    assert "75 px patches" in proc.stdout
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


# --- the plots (benchmarks/_claims_plots.py) -------------------------------------------------------------------------


def _load_plots() -> Any:
    """benchmarks/_claims_plots.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("claims_plots", PLOTS_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


plots = _load_plots()

FULL_SHAPED = {
    "froc_tta": [0.62, 0.51, 0.71],
    "froc_no_tta": [0.58, 0.47, 0.69],
    "froc_tta_difference": [0.04, -0.01, 0.09],
    "slide_auc_tta": [0.81, 0.64, 0.95],
    "slide_auc_no_tta": [0.79, 0.6, 0.94],
    "cross_centre_froc": {
        "liu": [0.62, 0.51, 0.71],
        "none": [0.31, 0.2, 0.43],
        "hed": [0.66, 0.55, 0.76],
        "macenko": [0.6, 0.5, 0.7],
    },
    "cross_centre_difference_vs_none": {
        "liu": [0.31, 0.2, 0.4],
        "hed": [0.35, 0.25, 0.45],
        "macenko": [0.29, 0.2, 0.4],
    },
    "hard_negative_fp_per_slide": {
        "before": [2.5, 1.6, 3.4],
        "after": [1.25, 0.75, 2.0],
        "difference": [-1.25, -2.0, -0.5],
        "sensitivity": 0.5,
        "nms_threshold": 0.05,
    },
    "slide_auc_classifier": [0.86, 0.7, 0.97],
    "slide_auc_max": [0.81, 0.64, 0.95],
    "slide_auc_difference": [0.05, -0.05, 0.15],
    "ensemble_froc": {"1": [0.6, 0.5, 0.7], "2": [0.64, 0.53, 0.74], "3": [0.65, 0.54, 0.75]},
    "architectures": None,
    "curriculum_vs_baseline": {
        str(n): {
            "curriculum": [0.6 + d, 0.5 + d, 0.7 + d],
            "baseline": [0.55 + d, 0.45 + d, 0.65 + d],
            "difference": [0.05, -0.02, 0.12],
            "epochs_to_target": {
                "curriculum": 3.0,
                "curriculum_reached": "3/3",
                "baseline": 4.5,
                "baseline_reached": "2/3",
            },
        }
        for n, d in ((30, 0.0), (60, 0.05), (120, 0.1))
    },
    "xray_class_auroc": {
        "nodule": [0.61, 0.52, 0.7],
        "consolidation": [0.8, 0.72, 0.88],
        "interstitial_opacity": [0.75, 0.66, 0.84],
        "pleural_effusion": [0.7, 0.6, 0.8],
        "pneumothorax": [0.66, 0.55, 0.77],
    },
    "xray_min_class_auroc": {"class": "nodule", "auroc": [0.61, 0.52, 0.7], "arm": "curriculum", "n_train": 120},
    "null_reasons": {"architectures": "skipped: the small vs Inception-v3 vs ResNet-50 arm needs --device cuda"},
    "variant": "full",
    "seeds": 3,
    "device": "cpu",
}


def _with_nulls() -> dict[str, Any]:
    """FULL_SHAPED with nulls of every kind: a null cell, a cell without interval, a null difference, a null size."""
    result = copy.deepcopy(FULL_SHAPED)
    reasons = result["null_reasons"]
    result["froc_no_tta"] = [None, None, None]
    reasons["froc_no_tta"] = "undefined: no lesion to find in the test slides"
    result["froc_tta_difference"] = [None, None, None]
    result["cross_centre_froc"]["hed"] = [0.4, None, None]  # a value without interval
    result["hard_negative_fp_per_slide"]["after"] = [None, None, None]
    reasons["hard_negative_fp_per_slide.after"] = "undefined: the FROC curve never reaches sensitivity 0.5"
    result["ensemble_froc"]["2"] = None
    result["ensemble_froc"]["3"] = None
    reasons["ensemble_froc.2"] = "needs 2 seeds' models; this run has 1"
    reasons["ensemble_froc.3"] = "needs 3 seeds' models; this run has 1"
    cell = result["curriculum_vs_baseline"]["30"]
    cell["baseline"] = [None, None, None]
    cell["difference"] = [None, None, None]
    reasons["curriculum_vs_baseline.30.baseline"] = "undefined: no test class has both labels"
    cell["epochs_to_target"].update(curriculum=None, curriculum_reached="0/3")
    result["xray_class_auroc"]["consolidation"] = [None, None, None]
    reasons["xray_class_auroc.consolidation"] = "undefined: consolidation has one label"
    return result


def _texts(fig: Any) -> str:
    """Every text drawn in a figure (titles, labels, annotations, tick labels), line breaks as spaces."""
    return " | ".join(" ".join(t.get_text().split()) for t in fig.findobj(lambda a: hasattr(a, "get_text")))


def _assert_pngs(paths: list[Path], folder: Path) -> None:
    """The three figures, in ``folder``, non-empty PNGs that decode to about 700 px wide RGBA images."""
    assert [p.name for p in paths] == list(PNG_NAMES)
    for path in paths:
        assert path.parent == folder and path.stat().st_size > 10_000, path
        with Image.open(path) as im:
            assert im.format == "PNG"
            pixels = np.asarray(im.convert("RGB"))
        assert 650 <= pixels.shape[1] <= 760, (path.name, pixels.shape)
        assert pixels.std() > 10, f"{path.name} is blank"  # something is drawn on the white background


@pytest.mark.slow
def test_claims_smoke_plots_writes_three_decodable_pngs(
    smoke_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, folder = smoke_run
    printed = [Path(line.removeprefix("plot: ")) for line in proc.stderr.splitlines() if line.startswith("plot: ")]
    _assert_pngs(printed, folder)
    assert proc.stdout.strip().splitlines()[-1].startswith("{"), "the JSON line stays last on stdout"
    # the plots script reads the log (last line) and draws the same figures
    log = folder.parent / "claims.log"
    log.write_text(proc.stdout)
    again = plots.main([str(log), str(folder.parent / "again")])
    _assert_pngs(again, folder.parent / "again")


def test_plot_claims_of_a_complete_result(tmp_path: Path) -> None:
    paths = plots.plot_claims(FULL_SHAPED, tmp_path / "new" / "folder")
    _assert_pngs(paths, tmp_path / "new" / "folder")
    slides = _texts(plots.slides_figure(FULL_SHAPED))
    assert "not measured" not in slides
    assert "TTA - none: +0.040 [-0.010, +0.090]" in slides
    assert "after - before: -1.250 [-2.000, -0.500]" in slides
    assert "false positives per test slide at lesion sensitivity 0.5" in slides
    assert "0.860 [0.700, 0.970]" in slides  # the classifier's AUC and interval
    assert "curriculum, 120 training images" in _texts(plots.xray_classes_figure(FULL_SHAPED))


def test_plot_claims_skips_nulls_and_says_why(tmp_path: Path) -> None:
    result = _with_nulls()
    _assert_pngs(plots.plot_claims(result, tmp_path), tmp_path)
    slides = _texts(plots.slides_figure(result))
    assert "not measured: undefined: no lesion to find in the test slides" in slides
    assert "TTA - none: not measured" in slides
    assert "0.400 (no interval)" in slides
    assert "not measured: undefined: the FROC curve never reaches sensitivity 0.5" in slides
    assert "not measured: needs 3 seeds' models; this run has 1" in slides
    curve = _texts(plots.curriculum_figure(result))
    assert "baseline not measured at 30 images: undefined: no test class has both labels" in curve
    assert "not reached" in curve
    classes = _texts(plots.xray_classes_figure(result))
    assert "not measured: undefined: consolidation has one label" in classes


def test_plot_claims_of_a_run_with_an_arm_skipped(tmp_path: Path) -> None:
    """``claims.py --skip slides``: the slide keys are absent; every slide panel gives the arm's reason."""
    result = {k: v for k, v in FULL_SHAPED.items() if k.startswith(("curriculum", "xray", "null", "variant"))}
    result["null_reasons"] = {"slides": "skipped with --skip"}
    _assert_pngs(plots.plot_claims(result, tmp_path), tmp_path)
    slides = _texts(plots.slides_figure(result))
    assert slides.count("not measured: slides arm skipped with --skip") == 13  # every row of the five panels
    only_slides = {"froc_tta": [0.5, 0.4, 0.6], "null_reasons": {"xray": "skipped with --skip"}}
    assert "not measured: xray arm skipped with --skip" in _texts(plots.curriculum_figure(only_slides))
    assert "not measured: xray arm skipped with --skip" in _texts(plots.xray_classes_figure(only_slides))


def test_plots_command_line_reads_a_json_file_or_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    as_json = tmp_path / "result.json"
    as_json.write_text(json.dumps(FULL_SHAPED, indent=2))
    assert plots.read_result(as_json) == FULL_SHAPED
    log = tmp_path / "claims.log"
    log.write_text("[ 1 s] slides seed 0 liu\nfroc_tta  0.620 [0.510, 0.710]\n" + json.dumps(FULL_SHAPED) + "\n\n")
    paths = plots.main([str(log), str(tmp_path / "out")])
    assert capsys.readouterr().out.split() == [str(p) for p in paths]
    _assert_pngs(paths, tmp_path / "out")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty"),
        ("table only\nno json here\n", "is a JSON object"),
        ('{"variant": "full"}\n', "none of the claims"),
        ('{"froc_tta": "high"}\n', "froc_tta: expected [value, lo, hi]"),
        ('{"froc_tta": [0.5, "lo", 0.6]}\n', "froc_tta: expected a number or null"),
    ],
)
def test_plots_command_line_names_the_file_and_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.log"
    path.write_text(content)
    with pytest.raises(InputFileError, match=r"bad\.log") as err:
        plots.main([str(path), str(tmp_path / "out")])
    assert problem in str(err.value)
