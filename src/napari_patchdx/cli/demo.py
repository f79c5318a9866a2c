"""The demo behind ``napari-patchdx demo``: both tracks end to end on built-in synthetic cohorts, through ``run()``.

1. Synthetic cohorts: lymph-node slides with tumour annotations (``DIR/data/wsi``) and chest X-rays with lesion
   masks (``DIR/data/cxr``).
2. The slide track (Liu et al. 2017): balanced patch sampling, training the small network, tumour heatmaps with
   8-fold test-time augmentation on the test slides, lesion points, CAMELYON16 FROC and slide-level AUC.
3. The X-ray track (Park et al. 2019), twice on the same split: the curriculum (lesion patches first, then whole
   images) and the baseline (whole images only, the same number of optimizer steps); probabilities and class
   activation maps of the test images, AUROC per class and the pointing game (CAM peak inside the lesion box).
4. One report over the three runs (``DIR/report.html``) and every metric in ``DIR/metrics.json`` (the report's
   per-run metrics, plus ``curriculum_vs_baseline``: every number both X-ray runs report, side by side, and
   ``demo``: sizes, seed and timings).

Each run is an ordinary pipeline run (``DIR/runs/<name>``, its configuration also saved as
``DIR/configs/<name>.yaml``), so ``napari-patchdx run DIR/configs/slides.yaml`` repeats it, and running the demo
again into the same folder skips everything that is already done. :class:`DemoSizes` sets every size; the default
:data:`DEMO` finishes in a few minutes on two CPU cores, :data:`QUICK` (``--quick``, and the tests) in about a
minute. The sizes are deliberately small (coarse slide magnification, 128 px X-rays, the 300K-parameter network,
a few epochs): the demo shows the whole workflow, not the methods' best numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..jsonvalues import write_json

__all__ = ["DEMO", "QUICK", "DemoSizes", "run_demo"]


@dataclass(frozen=True)
class DemoSizes:
    """Every size the demo uses.

    Attributes:
        wsi: :func:`~napari_patchdx.synth.wsi.make_wsi_cohort` arguments (n_tumor, n_normal, height, width in
            level-0 pixels, mpp in um/px).
        slide_splits: train / val / test fractions of the slides (stratified tumour / normal).
        slide_patches: balanced training patches (``sample.n``).
        slide_train: the slide run's ``train`` section (patch size in patch pixels at ``mpp`` um/px ...).
        cxr: :func:`~napari_patchdx.synth.cxr.make_cxr_cohort` arguments (n images, size in pixels).
        cxr_splits: train / val / test fractions of the X-rays (stratified by any lesion).
        cxr_train: the X-ray runs' ``train`` section (``stage`` is set per run: curriculum / baseline).
        n_boot: bootstrap resamples of the AUC / AUROC intervals.
    """

    wsi: dict[str, Any] = field(default_factory=dict)
    slide_splits: tuple[float, float, float] = (0.4, 0.2, 0.4)
    slide_patches: int = 1024
    slide_train: dict[str, Any] = field(default_factory=dict)
    cxr: dict[str, Any] = field(default_factory=dict)
    cxr_splits: tuple[float, float, float] = (0.6, 0.2, 0.2)
    cxr_train: dict[str, Any] = field(default_factory=dict)
    n_boot: int = 500


_COMMON = {"arch": "small", "optimizer": "adam", "num_workers": 0}

DEMO = DemoSizes(
    # the hard profile (mimics, micro-metastases, artefacts, two staining centres): the default one is solved
    # perfectly by the small network, so no method could be told from another on it
    wsi={"n_tumor": 5, "n_normal": 5, "height": 2560, "width": 2560, "mpp": 0.5, "profile": "hard"},
    slide_splits=(0.4, 0.2, 0.4),
    slide_patches=1536,
    slide_train={
        **_COMMON,
        "patch_size": 64,
        "center_size": 32,
        "mpp": 2.0,
        "epochs": 3,
        "batch_size": 32,
        "val_patches": 256,
        "progress_every": 8,
    },
    # 240 X-rays (48 test images): with fewer, per-class test AUROCs rest on two or three positives each
    cxr={"n": 240, "size": 128, "dicom": False},
    cxr_splits=(0.6, 0.2, 0.2),
    cxr_train={
        **_COMMON,
        "working_size": 128,
        "patch_size": 32,
        "epochs": 8,
        "batch_size": 8,
        "val_patches": 128,
        "progress_every": 4,
    },
    n_boot=500,
)
"""The demo's sizes: a few minutes on two CPU cores."""

QUICK = DemoSizes(
    wsi={"n_tumor": 3, "n_normal": 3, "height": 1536, "width": 1536, "mpp": 1.0},
    slide_splits=(0.34, 0.33, 0.33),
    slide_patches=64,
    slide_train={
        **_COMMON,
        "patch_size": 32,
        "center_size": 16,
        "mpp": 4.0,
        "epochs": 1,
        "batch_size": 16,
        "val_patches": 32,
    },
    cxr={"n": 16, "size": 96, "dicom": False},
    cxr_splits=(0.5, 0.25, 0.25),
    cxr_train={
        **_COMMON,
        "working_size": 64,
        "patch_size": 32,
        "epochs": 1,
        "batch_size": 8,
        "val_patches": 16,
    },
    n_boot=50,
)
"""Tiny sizes (``napari-patchdx demo --quick`` and the tests): the same code path in about a minute."""

RUNS = ("slides", "cxr-curriculum", "cxr-baseline")


def demo_configs(out: Path, seed: int = 0, sizes: DemoSizes = DEMO) -> dict[str, Any]:
    """The three pipeline configurations of the demo (``RunConfig`` objects keyed by run name)."""
    from ..pipeline.config import RunConfig

    data, runs = out / "data", out / "runs"
    common = {"seed": seed, "evaluate": {"n_boot": sizes.n_boot}}
    configs = {
        "slides": RunConfig.from_dict(
            {
                "track": "slides",
                "input": str(data / "wsi"),
                "run_dir": str(runs / "slides"),
                "splits": _slide_splits(data / "wsi", sizes.slide_splits, seed),
                "sample": {"n": sizes.slide_patches},
                "train": dict(sizes.slide_train),
                **common,
            }
        )
    }
    for stage in ("curriculum", "baseline"):
        configs[f"cxr-{stage}"] = RunConfig.from_dict(
            {
                "track": "cxr",
                "input": str(data / "cxr"),
                "run_dir": str(runs / f"cxr-{stage}"),
                "splits": list(sizes.cxr_splits),
                "sample": {"n": 256 if stage == "curriculum" else 0},
                "train": {**sizes.cxr_train, "stage": stage},
                **common,
            }
        )
    return configs


def _slide_splits(folder: Path, fractions: tuple[float, float, float], seed: int) -> Any:
    """The slide splits: stratified by label and staining centre when the cohort has centres (the hard profile:
    a training set from one centre only fails on the other), else the fractions (stratified by label)."""
    import pandas as pd

    from ..sampling.splits import assign_splits

    table = folder / "slides.csv"
    if not table.is_file():
        return list(fractions)
    rows = pd.read_csv(table, dtype=str, keep_default_na=False)
    if "centre" not in rows.columns:
        return list(fractions)
    strata = {r.slide: (r.label, r.centre) for r in rows.itertuples(index=False)}
    return assign_splits(list(strata), fractions, seed=seed, strata=strata)


def run_demo(out: Path, view: bool = False, seed: int = 0, sizes: DemoSizes = DEMO) -> dict[str, Any]:
    """Run the demo into ``out`` (see the module docstring); returns what it writes to ``out/metrics.json``.

    Args:
        out: the demo folder (created; a second run reuses what is done).
        view: open napari with every layer at the end (blocks until the viewer is closed).
        seed: seeds the cohorts, the splits and the training.
        sizes: cohort and training sizes (:data:`DEMO`; :data:`QUICK` for a fast check).
    """
    from ..pipeline.runner import run_job
    from ..reporting.build import build_report
    from ..synth.cxr.cohort import make_cxr_cohort
    from ..synth.wsi.cohort import make_wsi_cohort
    from .bar import drive

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    print(f"[1/5] synthetic cohorts -> {out / 'data'}")
    make_wsi_cohort(out / "data" / "wsi", seed=seed, **sizes.wsi)
    make_cxr_cohort(out / "data" / "cxr", seed=seed, **sizes.cxr)
    timings["cohorts"] = time.perf_counter() - t0

    configs = demo_configs(out, seed, sizes)
    results = {}
    steps = {
        "slides": "[2/5] slide track: balanced sampling, training, heatmaps with TTA, lesion points, FROC, AUC",
        "cxr-curriculum": "[3/5] X-ray track, curriculum: lesion patches, then whole images; CAMs, AUROC",
        "cxr-baseline": "[4/5] X-ray track, baseline: whole images only, the same budget",
    }
    for name, config in configs.items():
        print(steps[name])
        config.to_yaml(_mkdir(out / "configs") / f"{name}.yaml")
        t0 = time.perf_counter()
        results[name] = drive(run_job(config), name)
        timings[name] = time.perf_counter() - t0

    t0 = time.perf_counter()
    print("[5/5] report")
    report = build_report([results[n].run_dir for n in RUNS], out / "report.html", title="napari-patchdx demo")
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all

    # build_report wrote metrics.json beside the page (one entry per run, keyed by run folder name); add the demo's
    summary = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    summary["curriculum_vs_baseline"] = compare(results["cxr-curriculum"].metrics, results["cxr-baseline"].metrics)
    summary["demo"] = {
        "runs": {n: {"run_dir": str(r.run_dir), "stages": r.stages} for n, r in results.items()},
        "report": str(report),
        "seed": seed,
        "sizes": asdict(sizes),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
    }
    write_json(out / "metrics.json", summary)
    _print_summary(summary)
    print(f"\nmetrics: {out / 'metrics.json'}")
    print(f"report:  {report}")
    if view:  # pragma: no cover - interactive
        # napari runs in its own process: the command line never imports napari or Qt
        runs = [str(r.run_dir) for r in results.values()]
        command = [sys.executable, "-m", "napari_patchdx._napari.viewer", *runs, "--title", "napari-patchdx demo"]
        subprocess.run(command, check=False)
    return summary


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _numbers(metrics: Any, prefix: str = "") -> dict[str, float]:
    """Every finite number of a nested metrics dict, keyed by its dotted path (settings and counts left out)."""
    out: dict[str, float] = {}
    if isinstance(metrics, dict):
        for key, value in metrics.items():
            if key in ("settings", "inputs", "files", "n_boot", "confidence") or str(key).startswith("n_"):
                continue
            out.update(_numbers(value, f"{prefix}{key}."))
    elif isinstance(metrics, int | float) and not isinstance(metrics, bool) and metrics == metrics:
        out[prefix[:-1]] = float(metrics)
    return out


_COMPARED = ("auroc.", "mean_auroc.", "sensitivity.", "specificity.", "pointing_game.", "training.best")


def compare(curriculum: dict[str, Any], baseline: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The numbers both X-ray runs report (AUROC per class and mean, sensitivity, specificity, pointing game per
    class and its mean over the classes where it is defined, best validation AUROC), side by side with their
    difference (curriculum - baseline). Interval bounds are left out."""
    a, b = _numbers(curriculum), _numbers(baseline)
    for values, metrics in ((a, curriculum), (b, baseline)):
        game = [v for v in (metrics.get("pointing_game") or {}).values() if isinstance(v, int | float)]
        if game:
            values["pointing_game.mean"] = float(sum(game) / len(game))
    keys = [k for k in a if k in b and not k.endswith((".lo", ".hi"))]
    chosen = [k for k in keys if k.startswith(_COMPARED)] or keys
    return {key: {"curriculum": a[key], "baseline": b[key], "difference": a[key] - b[key]} for key in chosen}


def _print_summary(summary: dict[str, Any]) -> None:
    slides = _numbers(summary.get("slides", {}))
    print("\nslide track (test slides)")
    for key in sorted(slides):
        if key.startswith(("froc.score", "froc.sensitivity_at", "slide_auc.auc", "points.")):
            print(f"  {key:<32} {slides[key]:.3f}")
    print("\nchest X-rays: curriculum vs baseline (test images)")
    print(f"  {'metric':<40} {'curriculum':>10} {'baseline':>10} {'diff':>7}")
    rows = summary["curriculum_vs_baseline"]
    for key in list(rows)[:30]:
        row = rows[key]
        print(f"  {key:<40} {row['curriculum']:>10.3f} {row['baseline']:>10.3f} {row['difference']:>+7.3f}")
    print("\ntimings (s): " + ", ".join(f"{k} {v}" for k, v in summary["demo"]["timings_s"].items()))
