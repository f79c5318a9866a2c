"""The papers' claims, measured on synthetic cohorts (issue 13): each arm several seeds, each comparison a paired
difference with a 95 % bootstrap interval over the test slides / images.

Slide arms (the hard two-centre cohort; train on centre A, test on centre B, see ``_claims_slides``):

* ``froc_tta`` / ``froc_no_tta``: 8-fold test-time augmentation vs none on the same Liu-jitter models (Liu et al.:
  "a few percent"); also the slide AUCs.
* ``cross_centre_froc``: colour treatment none / Liu's jitter / HED jitter (Tellez et al.) / Macenko normalisation.
* ``hard_negative_fp_per_slide``: false positives per test slide where the FROC curve reaches sensitivity 0.5
  (lesion points at NMS threshold 0.05), the Liu model (before) vs the same with a hard-negative round (after).
* ``slide_auc_classifier`` / ``slide_auc_max``: a random forest on heatmap features fitted on the centre A slides'
  heatmaps vs the heatmap maximum (CAMELYON16 task 2).
* ``ensemble_froc``: the average of the first 1 / 2 / 3 seeds' Liu models (Liu: more than 3 did not help).
* ``architectures``: small vs Inception-v3 vs ResNet-50 at one patch size all accept (``--device cuda``, or
  ``--architectures`` on any device).

X-ray arm: ``curriculum_vs_baseline`` (Park et al.), a learning curve over training-set sizes with the mean AUROC
difference per size, epochs to the validation target per arm, and ``xray_min_class_auroc`` (the worst class of the
curriculum models at the largest size).

Run: .venv/bin/python benchmarks/claims.py [--quick | --smoke] [--seeds 3] [--device cpu|cuda] [--out DIR]
[--plots DIR]
Prints a table and, as its last line, one JSON object (``--plots``: then writes the figures of ``_claims_plots``
there and prints their paths to stderr). Nothing here asserts which arm wins. Nulls carry a reason
in ``null_reasons``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not starve the loader

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _claims_plots as cp
import _claims_slides as cs
import _claims_stats as st
import _claims_xray as cx
import numpy as np

from napari_patchdx.evaluation import SlideClassifier
from napari_patchdx.models.nets import MIN_INPUT_SIZE
from napari_patchdx.synth.cxr.data_model import CXR_CLASSES

AUGMENTATIONS = ("liu", "none", "hed", "macenko")
ARCHITECTURES = ("small", "inception_v3", "resnet50")
FP_SENSITIVITY = 0.5


@dataclass(frozen=True)
class Sizes:
    """Every size of one variant (``--smoke``, ``--quick`` or the default)."""

    slides: cs.SlideSizes
    xray: cx.XraySizes
    seeds: int
    n_boot: int


_TRAIN = {"optimizer": "adam", "num_workers": 0, "progress_every": 8}
SMOKE = Sizes(
    cs.SlideSizes(
        4,
        4,
        1024,
        1024,
        1.0,
        32,
        {
            **_TRAIN,
            "patch_size": 32,
            "center_size": 16,
            "mpp": 4.0,
            "epochs": 1,
            "batch_size": 16,
            "val_patches": 16,
            "steps_per_epoch": 2,
        },
    ),
    cx.XraySizes((8,), n_val=6, n_test=10, size=64, patch=32, epochs=1),
    seeds=1,
    n_boot=20,
)
QUICK = Sizes(
    cs.SlideSizes(
        4,
        4,
        2048,
        2048,
        1.0,
        512,
        {**_TRAIN, "patch_size": 64, "center_size": 32, "mpp": 2.0, "epochs": 2, "batch_size": 32, "val_patches": 64},
    ),
    cx.XraySizes((30, 60), n_val=20, n_test=40, size=128, patch=32, epochs=3),
    seeds=1,
    n_boot=500,
)
FULL = Sizes(
    cs.SlideSizes(
        8,
        8,
        2560,
        2560,
        0.5,
        1536,
        {**_TRAIN, "patch_size": 64, "center_size": 32, "mpp": 2.0, "epochs": 3, "batch_size": 32, "val_patches": 256},
    ),
    cx.XraySizes((30, 60, 120), n_val=40, n_test=80, size=160, patch=40, epochs=3),
    seeds=3,
    n_boot=1000,
)


class Claims:
    """Collects the JSON claims, their null reasons and the table rows."""

    def __init__(self, n_boot: int) -> None:
        self.n_boot = n_boot
        self.values: dict[str, Any] = {}
        self.reasons: dict[str, str] = {}
        self.rows: list[tuple[str, str]] = []

    def interval(self, key: str, stat: st.Stat, positive: np.ndarray, undefined: str) -> list[float | None]:
        """``[value, lo, hi]`` of ``stat`` bootstrapped over the test cases; nulls get a reason under ``key``."""
        cell = st.bootstrap(stat, positive, self.n_boot, seed=0)
        if cell[0] is None:
            self.reasons[key] = undefined
        elif cell[1] is None:
            self.reasons.setdefault(key, "no interval: fewer than half of the bootstrap resamples are defined")
        return cell

    def row(self, label: str, cell: Sequence[float | None] | None) -> None:
        self.rows.append((label, fmt(cell)))


def fmt(cell: Sequence[float | None] | None) -> str:
    if cell is None or cell[0] is None:
        return "n/a"
    if cell[1] is None:
        return f"{cell[0]:.3f}"
    return f"{cell[0]:.3f} [{cell[1]:.3f}, {cell[2]:.3f}]"


def slide_arms(
    work: Path,
    sizes: Sizes,
    device: str,
    claims: Claims,
    log: Callable[[str], None],
    architectures: bool = False,
) -> None:
    """Every slide claim: TTA, colour treatment across centres, hard negatives, slide classifier, ensembles; the
    architectures with ``device`` cuda or ``architectures``."""
    table = cs.make_cohort(work / "wsi", sizes.slides)
    splits = cs.centre_splits(table)
    test = table[[splits[s] == "test" for s in table["slide"]]].reset_index(drop=True)
    fit = table[[splits[s] in ("train", "val") for s in table["slide"]]].reset_index(drop=True)
    seeds = range(sizes.seeds)
    evals: dict[tuple[str, int], cs.SlideEval] = {}
    fits: dict[int, cs.SlideEval] = {}
    for seed in seeds:
        for stain in AUGMENTATIONS:
            run_dir = work / "runs" / f"{stain}-{seed}"
            t0 = time.perf_counter()
            if stain == "liu":  # inference-only arm: the same model without, then with TTA (train + test slides)
                cs.run_slides(work / "wsi", run_dir, sizes.slides, splits, seed=seed, device=device, tta=False)
                evals[("no_tta", seed)] = cs.evaluate_heatmaps(run_dir / "infer", test)
                cs.run_slides(
                    work / "wsi",
                    run_dir,
                    sizes.slides,
                    splits,
                    seed=seed,
                    device=device,
                    infer_splits=("train", "val", "test"),
                )
                fits[seed] = cs.evaluate_heatmaps(run_dir / "infer", fit)
            else:
                cs.run_slides(work / "wsi", run_dir, sizes.slides, splits, seed=seed, device=device, stain=stain)
            evals[(stain, seed)] = cs.evaluate_heatmaps(run_dir / "infer", test)
            log(f"slides seed {seed} {stain:<8} {time.perf_counter() - t0:6.0f} s")
        t0 = time.perf_counter()
        run_dir = work / "runs" / f"hardneg-{seed}"
        cs.run_slides(work / "wsi", run_dir, sizes.slides, splits, seed=seed, device=device, hard_negatives=True)
        evals[("hardneg", seed)] = cs.evaluate_heatmaps(run_dir / "infer", test)
        log(f"slides seed {seed} hard-neg {time.perf_counter() - t0:6.0f} s")
    positive = evals[("liu", 0)].positive

    def froc(arm: str, low: bool = False) -> st.Stat:
        return st.seed_mean(
            [st.froc_score(evals[(arm, s)].lookups_low if low else evals[(arm, s)].lookups) for s in seeds]
        )

    def slide_auc(arm: str) -> st.Stat:
        return st.seed_mean([st.auc(positive, evals[(arm, s)].max_scores) for s in seeds])

    no_lesion = "undefined: no lesion to find in the test slides"
    claims.values["froc_tta"] = claims.interval("froc_tta", froc("liu"), positive, no_lesion)
    claims.values["froc_no_tta"] = claims.interval("froc_no_tta", froc("no_tta"), positive, no_lesion)
    claims.values["froc_tta_difference"] = claims.interval(
        "froc_tta_difference", st.difference(froc("liu"), froc("no_tta")), positive, no_lesion
    )
    claims.values["slide_auc_tta"] = claims.interval("slide_auc_tta", slide_auc("liu"), positive, no_lesion)
    claims.values["slide_auc_no_tta"] = claims.interval("slide_auc_no_tta", slide_auc("no_tta"), positive, no_lesion)
    for key in ("froc_tta", "froc_no_tta", "froc_tta_difference", "slide_auc_tta", "slide_auc_no_tta"):
        claims.row(key, claims.values[key])

    claims.values["cross_centre_froc"] = {
        a: claims.interval(f"cross_centre_froc.{a}", froc(a), positive, no_lesion) for a in AUGMENTATIONS
    }
    claims.values["cross_centre_difference_vs_none"] = {
        a: claims.interval(
            f"cross_centre_difference_vs_none.{a}", st.difference(froc(a), froc("none")), positive, no_lesion
        )
        for a in AUGMENTATIONS
        if a != "none"
    }
    for a in AUGMENTATIONS:
        claims.row(f"cross-centre FROC, {a}", claims.values["cross_centre_froc"][a])
    for a, cell in claims.values["cross_centre_difference_vs_none"].items():
        claims.row(f"cross-centre FROC, {a} - none", cell)

    never = f"undefined: the FROC curve never reaches sensitivity {FP_SENSITIVITY} (mean over seeds needs every seed)"

    def fp(arm: str) -> st.Stat:
        return st.seed_mean([st.fp_at_sensitivity(evals[(arm, s)].lookups_low, FP_SENSITIVITY) for s in seeds])

    hn = {
        "before": claims.interval("hard_negative_fp_per_slide.before", fp("liu"), positive, never),
        "after": claims.interval("hard_negative_fp_per_slide.after", fp("hardneg"), positive, never),
        "difference": claims.interval(
            "hard_negative_fp_per_slide.difference", st.difference(fp("hardneg"), fp("liu")), positive, never
        ),
        "sensitivity": FP_SENSITIVITY,
        "nms_threshold": cs.LOW_NMS_THRESHOLD,
    }
    claims.values["hard_negative_fp_per_slide"] = hn
    claims.values["hard_negative_froc"] = {
        "before": claims.values["froc_tta"],
        "after": claims.interval("hard_negative_froc.after", froc("hardneg"), positive, no_lesion),
    }
    for k in ("before", "after", "difference"):
        claims.row(f"FPs/slide at sensitivity {FP_SENSITIVITY}, hard negatives {k}", hn[k])
    claims.row("FROC with hard negatives", claims.values["hard_negative_froc"]["after"])

    classifier_scores = []
    for seed in seeds:
        model = SlideClassifier.fit(fits[seed].features, fits[seed].positive.astype(int), seed=seed)
        classifier_scores.append(model.predict(evals[("liu", seed)].features))
    classifier = st.seed_mean([st.auc(positive, s) for s in classifier_scores])
    claims.values["slide_auc_classifier"] = claims.interval("slide_auc_classifier", classifier, positive, no_lesion)
    claims.values["slide_auc_max"] = claims.values["slide_auc_tta"]
    claims.values["slide_auc_difference"] = claims.interval(
        "slide_auc_difference", st.difference(classifier, slide_auc("liu")), positive, no_lesion
    )
    claims.values["slide_classifier_fit_slides"] = len(fit)
    for key in ("slide_auc_classifier", "slide_auc_max", "slide_auc_difference"):
        claims.row(key, claims.values[key])

    ensemble: dict[str, Any] = {
        "1": claims.values["froc_tta"]
        if sizes.seeds == 1
        else claims.interval("ensemble_froc.1", st.froc_score(evals[("liu", 0)].lookups), positive, no_lesion)
    }
    for k in (2, 3):
        if k > sizes.seeds:
            ensemble[str(k)] = None
            claims.reasons[f"ensemble_froc.{k}"] = f"needs {k} seeds' models; this run has {sizes.seeds}"
            continue
        t0 = time.perf_counter()
        members = [cs.checkpoint(work / "runs" / f"liu-{s}") for s in range(k)]
        heat = cs.ensemble_heatmaps(test, members, work / "ensembles" / str(k), device)
        stat = st.froc_score(cs.evaluate_heatmaps(heat, test).lookups)
        ensemble[str(k)] = claims.interval(f"ensemble_froc.{k}", stat, positive, no_lesion)
        log(f"ensemble of {k} {time.perf_counter() - t0:6.0f} s")
    claims.values["ensemble_froc"] = ensemble
    for k, cell in ensemble.items():
        claims.row(f"ensemble of {k} FROC", cell)

    if device.startswith("cuda") or architectures:
        arch = {}
        # one patch size every architecture accepts (Inception-v3 needs 75 px), the same for all three
        patch = max(int(sizes.slides.train["patch_size"]), *(MIN_INPUT_SIZE[name] for name in ARCHITECTURES))
        for name in ARCHITECTURES:
            t0 = time.perf_counter()
            run_dir = work / "runs" / f"arch-{name}"
            cs.run_slides(
                work / "wsi",
                run_dir,
                sizes.slides,
                splits,
                seed=0,
                device=device,
                arch=name,
                train={"patch_size": patch},
            )
            stat = st.froc_score(cs.evaluate_heatmaps(run_dir / "infer", test).lookups)
            arch[name] = claims.interval(f"architectures.{name}", stat, positive, no_lesion)
            claims.row(f"FROC, {name} (seed 0, {patch} px patches)", arch[name])
            log(f"architecture {name:<12} {time.perf_counter() - t0:6.0f} s")
        claims.values["architectures"] = arch
    else:
        claims.values["architectures"] = None
        claims.reasons["architectures"] = (
            "skipped: the small vs Inception-v3 vs ResNet-50 arm needs --device cuda (or --architectures)"
        )


def xray_arm(work: Path, sizes: Sizes, device: str, claims: Claims, log: Callable[[str], None]) -> None:
    """The curriculum learning curve and the worst X-ray class."""
    xs = sizes.xray
    root, labels, test_ids, val_ids, pool = cx.make_cohort(work / "cxr", xs)
    test = labels.set_index("image").loc[test_ids].reset_index()
    y = test[list(CXR_CLASSES)].to_numpy().astype(bool)
    positive = y.any(axis=1)
    scores: dict[tuple[int, str, int], np.ndarray] = {}
    epochs: dict[tuple[int, str, int], float] = {}
    for n in xs.train_sizes:
        splits = cx.splits_for(labels, val_ids, pool, n)
        for seed in range(sizes.seeds):
            for arm in cx.ARMS:
                t0 = time.perf_counter()
                ckpt, ep = cx.train_arm(root, splits, work / "xray" / f"{arm}-{n}-{seed}", xs, arm, seed, device, 0)
                scores[(n, arm, seed)] = cx.test_scores(ckpt, root, test, xs.size)
                epochs[(n, arm, seed)] = ep
                log(f"x-ray {n:4d} images seed {seed} {arm:<10} {time.perf_counter() - t0:6.0f} s")
    undefined = "undefined: no test class has both labels"
    curve: dict[str, Any] = {}
    for n in xs.train_sizes:
        mean = {
            arm: st.seed_mean([st.mean_class_auc(y, scores[(n, arm, s)]) for s in range(sizes.seeds)])
            for arm in cx.ARMS
        }
        cell = {
            arm: claims.interval(f"curriculum_vs_baseline.{n}.{arm}", mean[arm], positive, undefined) for arm in cx.ARMS
        }
        cell["difference"] = claims.interval(
            f"curriculum_vs_baseline.{n}.difference",
            st.difference(mean["curriculum"], mean["baseline"]),
            positive,
            undefined,
        )
        cell["epochs_to_target"] = {}
        for arm in cx.ARMS:
            reached = [epochs[(n, arm, s)] for s in range(sizes.seeds) if math.isfinite(epochs[(n, arm, s)])]
            cell["epochs_to_target"][arm] = st.finite(float(np.mean(reached))) if reached else None
            cell["epochs_to_target"][f"{arm}_reached"] = f"{len(reached)}/{sizes.seeds}"
            if not reached:
                claims.reasons[f"curriculum_vs_baseline.{n}.epochs_to_target.{arm}"] = (
                    f"no seed reached validation AUROC {xs.target}"
                )
        curve[str(n)] = cell
        for arm in (*cx.ARMS, "difference"):
            claims.row(f"x-ray {n} images: mean AUROC {arm}", cell[arm])
        claims.rows.append(
            (
                f"x-ray {n} images: epochs to val AUROC {xs.target}",
                ", ".join(f"{k} {v}" for k, v in cell["epochs_to_target"].items()),
            )
        )
    claims.values["curriculum_vs_baseline"] = curve
    largest = max(xs.train_sizes)
    per_class = {}
    for k, name in enumerate(CXR_CLASSES):
        stat = st.seed_mean([st.auc(y[:, k], scores[(largest, "curriculum", s)][:, k]) for s in range(sizes.seeds)])
        per_class[name] = claims.interval(f"xray_class_auroc.{name}", stat, y[:, k], f"undefined: {name} has one label")
        claims.row(f"x-ray AUROC {name} (curriculum, {largest} images)", per_class[name])
    defined = {k: v for k, v in per_class.items() if v[0] is not None}
    worst = min(defined, key=lambda k: defined[k][0]) if defined else None
    claims.values["xray_class_auroc"] = per_class
    claims.values["xray_min_class_auroc"] = (
        {"class": worst, "auroc": defined[worst], "arm": "curriculum", "n_train": largest} if worst else None
    )
    if worst is None:
        claims.reasons["xray_min_class_auroc"] = "no class has both labels in the test set"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every arm; prints the table and, last, the JSON line (also returned)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="tiny sizes, 1 seed (under 10 minutes on 2 cores)")
    size.add_argument("--smoke", action="store_true", help="the smallest sizes (the test suite's smoke test)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per arm (default: 3; --quick / --smoke: 1)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to add the architecture arm")
    parser.add_argument(
        "--architectures", action="store_true", help="add the architecture arm on any device (slow on a CPU)"
    )
    parser.add_argument("--out", default=None, help="keep the cohorts and runs here (default: a temporary folder)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["slides", "xray"], help="arms to leave out")
    parser.add_argument("--plots", type=Path, default=None, help="also write the PNG figures of the claims here")
    args = parser.parse_args(argv)
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)  # a bad folder fails now, not after the run
    sizes = SMOKE if args.smoke else QUICK if args.quick else FULL
    if args.seeds is not None:
        sizes = Sizes(sizes.slides, sizes.xray, args.seeds, sizes.n_boot)
    variant = "smoke" if args.smoke else "quick" if args.quick else "full"
    claims = Claims(sizes.n_boot)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.0f} s] {message}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.out) if args.out else Path(tmp)
        arms = (("slides", functools.partial(slide_arms, architectures=args.architectures)), ("xray", xray_arm))
        for name, arm in arms:
            if name in args.skip:
                claims.reasons[name] = "skipped with --skip"
                continue
            t0 = time.perf_counter()
            arm(work, sizes, args.device, claims, log)
            timings[name] = round(time.perf_counter() - t0, 1)
    timings["total"] = round(time.perf_counter() - t_start, 1)

    print(
        f"\nclaims ({variant}: {sizes.seeds} seed(s), device {args.device}; value [95 % bootstrap interval over "
        "test slides / images]; slide arms train on centre A, test on centre B)"
    )
    width = max(len(label) for label, _ in claims.rows) if claims.rows else 10
    for label, text in claims.rows:
        print(f"{label:<{width}}  {text}")
    print("timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    result = {
        **claims.values,
        "null_reasons": claims.reasons,
        "variant": variant,
        "seeds": sizes.seeds,
        "device": args.device,
        "n_boot": sizes.n_boot,
        "timings_s": timings,
    }
    print(json.dumps(result, allow_nan=False), flush=True)
    if args.plots is not None:  # after the JSON line (stays last on stdout); the paths go to stderr
        for path in cp.plot_claims(result, args.plots):
            print(f"plot: {path}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
