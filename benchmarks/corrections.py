"""Review, correct, retrain (issue 14): three rounds of simulated corrections lower the false positives per test slide
at equal sensitivity?

On a synthetic slide cohort (the hard profile by default: tumour mimics, micro-metastases, ITCs, two staining
centres), slides are split into train / validation (the pipeline run that trains the first model), review (slides a
user looks at) and test (never corrected). Then ``--rounds`` corrections rounds, each ``napari_patchdx.retrain`` on the
run, where the true ground truth plays the user:

* the current model's lesion points on every review slide (no TTA, NMS threshold 0.5) are classified against the
  true ground truth; the ``--k`` most probable false positives of each slide get a "normal" disc of radius
  ``--radius`` heatmap cells (kept in later rounds, as a user's saved corrections are);
* the user's ground truth of a review slide also holds its true tumour regions: missed lesions drawn as tumour and
  found ones accepted (round 1 on slides that had no ground truth; later rounds add only new normal regions);
* the round fine-tunes from the previous round's checkpoint (``retrain``'s default) with the corrected regions
  weighted up (``--fraction``; ``--steps`` optimizer steps at learning rate ``--lr``), then every test slide is mapped
  by the new model (no TTA).

Each of ``--seeds`` training seeds runs the whole cycle (its own first model, its own simulated corrections); the
numbers are means over the seeds.

Measure: false positives per test slide where each model's lesion-level FROC curve (lesion points at NMS threshold
0.05, so the curve extends far) first reaches the target sensitivity: the sensitivity the first model (round 0) reaches
with its lesion points at the usual threshold 0.5 (so every model is read at the first model's operating sensitivity).
Intervals: 95 % stratified bootstrap over the test slides; each round is also compared with round 0 as a paired
difference on the same resamples. Also: the FROC score per round and the false positives per review slide before and
after each round (from ``round.json``).

Run: .venv/bin/python benchmarks/corrections.py [--quick] [--profile hard|default] [--seeds 3] [--rounds 3] [--k 3]
[--lr 1e-4] [--steps N] [--sensitivity S] [--device cpu] [--out DIR]
Prints a table and, as its last line, one JSON object (``fp_per_test_slide``: per round ``[value, lo, hi]``;
``fp_difference_vs_round0``; ``target_sensitivity``; ``froc``; ``review_fp_per_slide``; ``seconds``).
Nothing here asserts that a round helps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not starve the loader

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _claims_stats as st  # the benchmarks' shared bootstrap over slides
import numpy as np
import pandas as pd

import napari_patchdx
from napari_patchdx.evaluation import SlideInput, evaluate_slide_inputs
from napari_patchdx.evaluation.froc import SlideLookup, froc_from_lookups, lookup_slides
from napari_patchdx.inference import heatmaps_job, read_heatmap
from napari_patchdx.io.annotations import AnnotationSet, Region, read_annotations
from napari_patchdx.io.names import heatmap_paths, round_paths
from napari_patchdx.progress import run_job
from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

LOW_NMS = 0.05
"""NMS threshold of the lesion points the FP-at-sensitivity reading uses (the curve reaches further)."""


@dataclass(frozen=True)
class Sizes:
    """A variant's sizes: slides per label and role, slide side (px at 1 um/px), the first model and each round."""

    roles: dict[str, tuple[int, int]]  # role -> (tumour slides, normal slides)
    side: int
    patches: int
    train: dict[str, Any]
    round_epochs: int
    round_steps: int
    n_boot: int


_TRAIN = {"arch": "small", "optimizer": "adam", "num_workers": 0, "progress_every": 8, "batch_size": 32}
FULL = Sizes(
    {"train": (3, 3), "val": (1, 1), "review": (3, 2), "test": (6, 5)},
    2048,
    768,
    {**_TRAIN, "patch_size": 64, "center_size": 32, "mpp": 2.0, "epochs": 3, "val_patches": 96},
    1,
    32,
    1000,
)
QUICK = Sizes(
    {"train": (2, 2), "val": (1, 1), "review": (2, 1), "test": (2, 2)},
    1536,
    384,
    {**_TRAIN, "patch_size": 64, "center_size": 32, "mpp": 2.0, "epochs": 2, "val_patches": 64},
    1,
    8,
    200,
)


def make_cohort(root: Path, sizes: Sizes, profile: str, seed: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """The cohort under ``root`` (slide, label, path, annotation) and each slide's role."""
    n_tumor = sum(t for t, _ in sizes.roles.values())
    n_normal = sum(n for _, n in sizes.roles.values())
    cohort = make_wsi_cohort(
        root, n_tumor=n_tumor, n_normal=n_normal, height=sizes.side, width=sizes.side, mpp=1.0, profile=profile,
        seed=seed,
    )  # fmt: skip
    table = pd.read_csv(cohort.csv)
    table["path"] = [str(root / f) for f in table["file"]]
    table["annotation"] = [str(root / a) if isinstance(a, str) and a else "" for a in table["annotation"]]
    roles: dict[str, str] = {}
    for label, column in (("tumor", 0), ("normal", 1)):
        names = list(table.loc[table["label"] == label, "slide"])
        i = 0
        for role, counts in sizes.roles.items():
            for name in names[i : i + counts[column]]:
                roles[name] = role
            i += counts[column]
    return table, roles


def truth_of(row: Any) -> AnnotationSet | None:
    return read_annotations(row.annotation) if row.annotation else None


def lesion_lookups(heat_dir: Path, table: pd.DataFrame, threshold: float) -> list[SlideLookup]:
    """FROC lookups of each slide's lesion points (NMS ``threshold``) against the true ground truth."""
    inputs, truths, shapes = [], {}, {}
    for row in table.itertuples():
        heat, grid, _ = read_heatmap(heatmap_paths(heat_dir, row.slide)["final"])
        truth = truth_of(row)
        shape = (int(row.height), int(row.width))
        inputs.append(SlideInput(row.slide, heat, grid, truth, shape))
        truths[row.slide], shapes[row.slide] = truth, shape
    ev = evaluate_slide_inputs(inputs, nms_threshold=threshold, mpp=1.0, n_boot=0)
    return lookup_slides(ev.points, truths, shapes, 5, 1.0, list(table["slide"]))


def disc(y: float, x: float, radius: float) -> Region:
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    return Region(np.c_[y + radius * np.sin(t), x + radius * np.cos(t)], label="normal", name="rejected")


def user_corrections(
    heat_dir: Path, review: pd.DataFrame, normals: dict[str, list[Region]], k: int, radius_cells: float
) -> dict[str, AnnotationSet]:
    """The simulated user: ``k`` new normal discs per review slide around the most probable false positives of the
    heatmaps in ``heat_dir`` (NMS 0.5, against the true truth), added to the earlier ones; with the true tumour
    regions, the corrected ground truth of every review slide."""
    out = {}
    for row in review.itertuples():
        heat, grid, _ = read_heatmap(heatmap_paths(heat_dir, row.slide)["final"])
        truth = truth_of(row)
        ev = evaluate_slide_inputs(
            [SlideInput(row.slide, heat, grid, truth, (int(row.height), int(row.width)))], mpp=1.0, n_boot=0
        )
        points, outcomes = ev.points[row.slide], ev.outcomes[row.slide]
        fps = [i for i in range(len(points)) if outcomes.outcome[i] == "false_positive"][:k]
        radius = radius_cells * grid.spacing[0]
        normals.setdefault(row.slide, []).extend(disc(points.y[i], points.x[i], radius) for i in fps)
        out[row.slide] = AnnotationSet([*(truth.regions if truth is not None else []), *normals[row.slide]])
    return out


@dataclass
class SeedRun:
    """One seed's cycle: per round the test slides' FROC lookups (NMS 0.05 and 0.5) and the review slides' false
    positives per slide before and after the round."""

    low: list[list[SlideLookup]]
    usual: list[list[SlideLookup]]
    review_fp: list[dict[str, float]]


def one_seed(
    work: Path, seed: int, sizes: Sizes, args: argparse.Namespace, splits: dict[str, str], review: pd.DataFrame,
    test: pd.DataFrame, log: Any,
) -> SeedRun:  # fmt: skip
    """Train the first model (seed ``seed``), then ``args.rounds`` rounds of simulated corrections."""
    run_dir = work / f"run-{seed}"
    config = {
        "track": "slides", "input": str(work / "wsi"), "run_dir": str(run_dir), "seed": seed, "device": args.device,
        "splits": splits, "sample": {"n": sizes.patches}, "train": dict(sizes.train), "evaluate": {"n_boot": 0},
        "report": {"enabled": False},
    }  # fmt: skip
    napari_patchdx.run(config, stages=("sample", "train"))

    def map_slides(checkpoint: Path, rows: pd.DataFrame, out: Path) -> Path:
        run_job(heatmaps_job(list(rows["path"]), [checkpoint], out, device=args.device, tta=False))
        return out

    checkpoint = run_dir / "train" / "best.safetensors"
    review_heat = map_slides(checkpoint, review, work / f"review-heatmaps-{seed}")
    normals: dict[str, list[Region]] = {}
    out = SeedRun([], [], [])
    for r in range(args.rounds + 1):
        if r > 0:
            corrected = user_corrections(review_heat, review, normals, args.k, args.radius)
            result = napari_patchdx.retrain(
                run_dir, corrected, epochs=sizes.round_epochs, steps_per_epoch=args.steps or sizes.round_steps,
                fraction=args.fraction, lr=args.lr, device=args.device,
            )  # fmt: skip
            assert result.checkpoint is not None and result.number == r
            checkpoint = result.checkpoint
            review_heat = round_paths(run_dir, r)["heatmaps_after"]
            out.review_fp.append({w: result.metrics[w]["fp_per_slide"] for w in ("before", "after")})
        heat = map_slides(checkpoint, test, work / f"test-heatmaps-{seed}" / str(r))
        out.low.append(lesion_lookups(heat, test, LOW_NMS))
        out.usual.append(lesion_lookups(heat, test, 0.5))
        log(f"seed {seed} round {r}: done")
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, smaller slides, one seed, shorter training")
    parser.add_argument("--profile", choices=["hard", "default"], default="hard")
    parser.add_argument("--seeds", type=int, default=None, help="training seeds (default: 3; --quick 1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--k", type=int, default=3, help="false positives rejected per review slide and round")
    parser.add_argument("--radius", type=float, default=2.0, help="radius of a rejected region, heatmap cells")
    parser.add_argument("--fraction", type=float, default=0.5, help="share of fine-tuning patches from corrections")
    parser.add_argument("--lr", type=float, default=1e-4, help="fine-tuning learning rate (the first model: Adam 1e-3)")
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps per round (default: the variant's)")
    parser.add_argument(
        "--sensitivity", type=float, default=None, help="target sensitivity (default: round 0's at NMS threshold 0.5)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    seeds = range(args.seeds or (1 if args.quick else 3))
    t_start = time.perf_counter()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="patchdx-corrections-"))

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f} s] {message}", file=sys.stderr, flush=True)

    table, roles = make_cohort(work / "wsi", sizes, args.profile, 0)
    log(f"cohort: {len(table)} slides ({args.profile} profile) in {work / 'wsi'}")
    review = table[[roles[s] == "review" for s in table["slide"]]].reset_index(drop=True)
    hidden = work / "review-truth"  # the review slides start without ground truth: the user's is the rounds'
    hidden.mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(review.itertuples()):
        if row.annotation:
            moved = Path(row.annotation).rename(hidden / Path(row.annotation).name)
            review.loc[i, "annotation"] = str(moved)
    test = table[[roles[s] == "test" for s in table["slide"]]].reset_index(drop=True)
    splits = {s: {"train": "train", "val": "val"}.get(r, "test") for s, r in roles.items()}
    runs = [one_seed(work, seed, sizes, args, splits, review, test, log) for seed in seeds]

    positive = np.array([bool(a) for a in test["annotation"]])
    reached = [froc_from_lookups(run.usual[0], 5, 1.0).sensitivity for run in runs]
    target = min(float(s.max()) if len(s) else math.nan for s in reached)
    if args.sensitivity is not None:
        target = float(args.sensitivity)

    def fp_stat(r: int) -> st.Stat:
        return st.seed_mean([st.fp_at_sensitivity(run.low[r], target) for run in runs])

    fp: dict[str, Any] = {}
    diff: dict[str, Any] = {}
    frocs: dict[str, Any] = {}
    review_fp: dict[str, Any] = {}
    for r in range(args.rounds + 1):
        fp[str(r)] = st.bootstrap(fp_stat(r), positive, sizes.n_boot, seed=0)
        frocs[str(r)] = st.bootstrap(
            st.seed_mean([st.froc_score(run.usual[r]) for run in runs]), positive, sizes.n_boot, seed=0
        )
        if r:
            diff[str(r)] = st.bootstrap(st.difference(fp_stat(r), fp_stat(0)), positive, sizes.n_boot, seed=0)
            review_fp[str(r)] = {
                w: st.finite(float(np.mean([run.review_fp[r - 1][w] for run in runs]))) for w in ("before", "after")
            }
    seconds = round(time.perf_counter() - t_start, 1)

    def cell(v: Sequence[float | None]) -> str:
        if v[0] is None:
            return "n/a"
        return f"{v[0]:.2f}" if v[1] is None else f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"

    print(
        f"test slides: {len(test)} ({int(positive.sum())} tumour); review slides: {len(review)}; k = {args.k}; "
        f"seeds: {len(runs)} (means over seeds; 95 % bootstrap intervals over the test slides)"
    )
    print(f"target sensitivity ({'given' if args.sensitivity is not None else 'round 0 at NMS 0.5'}): {target:.3f}")
    print(f"{'round':<6} {'FP / test slide at target':>28} {'difference vs round 0':>28} {'FROC (NMS 0.5)':>24}"
          f" {'review FP/slide before -> after':>32}")  # fmt: skip
    for r in range(args.rounds + 1):
        rev = review_fp.get(str(r))
        shown = f"{rev['before']:.2f} -> {rev['after']:.2f}" if rev else ""
        print(f"{r:<6} {cell(fp[str(r)]):>28} {cell(diff[str(r)]) if r else '':>28} {cell(frocs[str(r)]):>24}"
              f" {shown:>32}")  # fmt: skip
    result_json = {
        "profile": args.profile, "seeds": len(runs), "rounds": args.rounds, "k": args.k, "radius_cells": args.radius,
        "fraction": args.fraction, "lr": args.lr, "steps": args.steps or sizes.round_steps, "n_test": len(test),
        "n_review": len(review), "target_sensitivity": st.finite(target), "fp_per_test_slide": fp,
        "fp_difference_vs_round0": diff, "froc": frocs, "review_fp_per_slide": review_fp, "quick": args.quick,
        "device": args.device, "seconds": seconds,
    }  # fmt: skip
    print(json.dumps(result_json, allow_nan=False), flush=True)
    return result_json


if __name__ == "__main__":
    main()
