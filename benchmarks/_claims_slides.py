"""The slide arms of benchmarks/claims.py: the hard two-centre cohort, pipeline runs, and their test evaluation.

Every slide arm uses one split of the hard cohort (``make_wsi_cohort(profile="hard")``): centre A slides train
(all but the last of each label) and validate (the last of each label), centre B slides are the test set. So every
slide claim is measured across the staining / scanner shift, the CAMELYON16 situation; the cross-centre arm is the
same runs compared by colour treatment.

A run is an ordinary pipeline run (``napari_patchdx.run``: sample, train, infer; the pipeline's own evaluate stage is
not used because the classifier arm predicts the training slides too). The test heatmaps are evaluated here, in
memory, with the CAMELYON16 protocol at the slides' own microns per pixel, keeping each slide's FROC lookup so the
FROC can be bootstrapped over slides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_patchdx.evaluation import SlideInput, evaluate_slide_inputs, heatmap_features
from napari_patchdx.evaluation.froc import SlideLookup, lookup_slides
from napari_patchdx.inference import heatmaps_job, read_heatmap
from napari_patchdx.io.annotations.read import read_annotations
from napari_patchdx.io.names import heatmap_paths
from napari_patchdx.pipeline import RunResult, run
from napari_patchdx.progress import run_job
from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

LOW_NMS_THRESHOLD = 0.05
"""NMS threshold of the second set of lesion points behind the FP-rate-at-sensitivity claim: with the usual 0.5
the FROC curve often stops short of the target sensitivity."""


@dataclass(frozen=True)
class SlideSizes:
    """Sizes of the slide arms.

    Attributes:
        n_tumor, n_normal: slides per label (even slide indices are centre A, odd centre B).
        height, width: level-0 size of each slide, pixels; mpp: level-0 micrometres per pixel.
        patches: balanced training patches per run (``sample.n``).
        train: the pipeline's ``train`` section (patch size in pixels at ``train.mpp`` um/px, epochs ...).
    """

    n_tumor: int
    n_normal: int
    height: int
    width: int
    mpp: float
    patches: int
    train: Mapping[str, Any]


@dataclass
class SlideEval:
    """One model's (or ensemble's) evaluation of the test slides, in the order of ``names``.

    Attributes:
        names: test slide names; positive: tumour slide or not.
        lookups: FROC lookups of the lesion points at NMS threshold 0.5 (Liu et al.).
        lookups_low: the same at :data:`LOW_NMS_THRESHOLD` (the FP-rate-at-sensitivity claim).
        max_scores: heatmap maximum per slide.
        features: :func:`heatmap_features` per slide.
    """

    names: list[str]
    positive: np.ndarray
    lookups: list[SlideLookup]
    lookups_low: list[SlideLookup]
    max_scores: np.ndarray
    features: list[dict[str, float]]


def make_cohort(root: Path, sizes: SlideSizes) -> pd.DataFrame:
    """Write the hard cohort under ``root``; its table (slide, label, centre, path, annotation ("" for a normal
    slide), mpp, height, width)."""
    cohort = make_wsi_cohort(
        root,
        n_tumor=sizes.n_tumor,
        n_normal=sizes.n_normal,
        height=sizes.height,
        width=sizes.width,
        mpp=sizes.mpp,
        profile="hard",
        seed=0,
    )
    table = pd.read_csv(cohort.csv)
    table["path"] = [str(root / f) for f in table["file"]]
    table["annotation"] = [str(root / a) if isinstance(a, str) and a else "" for a in table["annotation"]]
    return table


def centre_splits(table: pd.DataFrame) -> dict[str, str]:
    """Slide -> split: centre B is the test set; in centre A the last slide of each label validates, the rest train."""
    splits: dict[str, str] = {}
    for _, group in table.groupby(["centre", "label"], sort=True):
        names = list(group["slide"])
        for k, name in enumerate(names):
            if group["centre"].iloc[0] != "A":
                splits[name] = "test"
            else:
                splits[name] = "val" if k == len(names) - 1 and len(names) > 1 else "train"
    return splits


def run_slides(
    cohort_dir: Path,
    run_dir: Path,
    sizes: SlideSizes,
    splits: Mapping[str, str],
    *,
    seed: int,
    device: str,
    arch: str = "small",
    stain: str = "liu",
    hard_negatives: bool = False,
    tta: bool = True,
    infer_splits: Sequence[str] = ("test",),
    train: Mapping[str, Any] | None = None,
) -> RunResult:
    """One pipeline run (sample, train, infer) into ``run_dir``; a second call with other ``infer`` settings
    reuses the trained model (the pipeline skips the stages whose settings did not change). ``train`` overrides
    settings of ``sizes.train``."""
    config = {
        "track": "slides",
        "input": str(cohort_dir),
        "run_dir": str(run_dir),
        "seed": seed,
        "device": device,
        "splits": dict(splits),
        "sample": {"n": sizes.patches},
        "train": {**sizes.train, **(train or {}), "arch": arch, "stain": stain, "hard_negatives": hard_negatives},
        "infer": {"tta": tta, "splits": list(infer_splits)},
        "report": {"enabled": False},
    }
    return run(config, stages=("sample", "train", "infer"))


def checkpoint(run_dir: Path) -> Path:
    """The best checkpoint of a run (what the pipeline's infer stage uses by default)."""
    return run_dir / "train" / "best.safetensors"


def ensemble_heatmaps(table: pd.DataFrame, checkpoints: Sequence[Path], out: Path, device: str) -> Path:
    """Heatmaps of the slides in ``table`` averaged over ``checkpoints`` (8-fold TTA each), written to ``out``."""
    run_job(heatmaps_job(list(table["path"]), list(checkpoints), out, device=device, tta=True))
    return out


def evaluate_heatmaps(heat_dir: Path, table: pd.DataFrame) -> SlideEval:
    """Evaluate the heatmaps of the slides in ``table`` (CAMELYON16 FROC lookups, heatmap maximum, features)."""
    inputs, truths, shapes = [], {}, {}
    features = []
    for row in table.itertuples():
        heat, grid, _ = read_heatmap(heatmap_paths(heat_dir, row.slide)["final"])
        truth = read_annotations(row.annotation) if row.annotation else None
        shape = (int(row.height), int(row.width))
        inputs.append(SlideInput(row.slide, heat, grid, truth, shape))
        truths[row.slide], shapes[row.slide] = truth, shape
        features.append(heatmap_features(heat, grid))
    names = list(table["slide"])
    mpp = float(table["mpp"].iloc[0])
    looked = []
    for threshold in (0.5, LOW_NMS_THRESHOLD):
        ev = evaluate_slide_inputs(inputs, nms_threshold=threshold, mpp=mpp, n_boot=0)
        looked.append(lookup_slides(ev.points, truths, shapes, 5, mpp, names))
    return SlideEval(
        names=names,
        positive=np.array([bool(a) for a in table["annotation"]]),
        lookups=looked[0],
        lookups_low=looked[1],
        max_scores=np.array([f["max"] for f in features], dtype=np.float64),
        features=features,
    )
