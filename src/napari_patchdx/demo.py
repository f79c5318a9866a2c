"""The demo behind ``napari-patchdx demo``: the built-in synthetic cohorts, end to end as far as it goes today.

Current scope (the foundation): build the whole-slide and chest X-ray cohorts, open every file through the same
readers and layer builders napari uses, check each against its ground truth, and print and save a summary.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ._fsutil import atomic_write_text
from .layers import layers_for_paths

#: Demo cohort sizes: small enough for two CPU cores in a minute or two, large enough to mean something.
DEMO_WSI = {"n_tumor": 2, "n_normal": 1, "height": 6144, "width": 6144, "mpp": 0.5}
DEMO_CXR = {"n": 12, "size": 512}


def run_demo(out: Path, view: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run the demo into ``out``; returns (and writes to ``out/summary.json``) what it found."""
    from .data.synth_cxr import make_cxr_cohort
    from .data.synth_wsi import make_wsi_cohort

    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    print(f"[1/4] synthetic whole-slide cohort -> {out / 'wsi'}")
    wsi = make_wsi_cohort(out / "wsi", seed=seed, **DEMO_WSI)
    timings["synth_wsi_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    print(f"[2/4] synthetic chest X-ray cohort -> {out / 'cxr'}")
    cxr = make_cxr_cohort(out / "cxr", seed=seed, **DEMO_CXR)
    timings["synth_cxr_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    print("[3/4] opening every slide through the napari reader")
    all_layers: list[Any] = []
    slides = []
    for s in tqdm(wsi.slides, unit="slide"):
        layers = layers_for_paths([s.path])
        all_layers.extend(layers)
        image_kwargs = layers[0][1]
        info = image_kwargs["metadata"]["patchdx"]
        slides.append(
            {
                "slide": s.path.stem,
                "label": s.label,
                "size": "x".join(str(v) for v in info["level_shapes"][0][::-1]),
                "levels": len(info["level_shapes"]),
                "mpp": info["mpp"],
                "ground_truth_regions": len(layers[1][0]) if len(layers) > 1 else 0,
            }
        )
    timings["open_slides_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    print("[4/4] reading every chest X-ray (PNG and DICOM) through the napari reader")
    images = []
    with open(cxr.labels_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in tqdm(rows, unit="image"):
        png = layers_for_paths([cxr.root / row["png"]])
        all_layers.extend(png)
        entry: dict[str, Any] = {"image": row["image"], "shape": list(png[0][0].shape)}
        if row.get("dcm"):
            dcm = layers_for_paths([cxr.root / row["dcm"]])
            entry["dicom_vs_png_max_abs_diff"] = float(np.abs(dcm[0][0] - png[0][0]).max())
            entry["photometric"] = dcm[0][1]["metadata"]["patchdx"].get("photometric_interpretation")
        entry["labels"] = [k for k, v in row.items() if v == "1"]
        images.append(entry)
    timings["open_cxr_s"] = time.perf_counter() - t0

    summary = {"slides": slides, "cxr": images, "timings_s": {k: round(v, 2) for k, v in timings.items()}}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    _print_summary(summary)
    print(f"\nsummary written to {out / 'summary.json'}")
    if view:  # pragma: no cover - interactive
        from ._napari.viewer import show_layers

        show_layers(all_layers, title="napari-patchdx demo")
    return summary


def _print_summary(summary: dict[str, Any]) -> None:
    print("\nslides")
    print(f"  {'slide':<12} {'label':<7} {'size':<11} {'levels':>6} {'mpp':>5} {'regions':>7}")
    for s in summary["slides"]:
        print(
            f"  {s['slide']:<12} {s['label']:<7} {s['size']:<11} {s['levels']:>6} {s['mpp']:>5} "
            f"{s['ground_truth_regions']:>7}"
        )
    n_lesion = sum(1 for c in summary["cxr"] if c["labels"])
    worst = max((c.get("dicom_vs_png_max_abs_diff", 0.0) for c in summary["cxr"]), default=0.0)
    print(
        f"\nchest X-rays: {len(summary['cxr'])} images, {n_lesion} with lesions; "
        f"DICOM vs PNG max |difference| {worst:.4f}"
    )
    print("timings: " + ", ".join(f"{k} {v}" for k, v in summary["timings_s"].items()))
