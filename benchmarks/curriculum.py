"""Park et al.'s curriculum (lesion patches, then whole images) vs the whole-image baseline with the same budget.

On the synthetic chest X-ray cohort, for several seeds: whole-image epochs until the mean validation AUROC first
reaches a target, and the test AUROC per class of the best whole-image checkpoint. Both arms get the same number of
optimizer steps (the trainer's budget rule: the baseline runs ``2 * epochs`` whole-image epochs, the curriculum
``epochs`` patch epochs of the same cost, then ``epochs`` whole-image epochs).

Run: .venv/bin/python benchmarks/curriculum.py [--seeds 3] [--epochs 4] [--images 120] [--size 256]
Prints a table (mean and spread over seeds) and, as its last line, one JSON object with ``curriculum_auroc``,
``baseline_auroc``, ``curriculum_epochs_to_target`` and ``baseline_epochs_to_target`` (means over the seeds that
reached the target; null when none did — the table says how many did).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle OpenMP threads must not starve the loader

import numpy as np
import pandas as pd
from _claims_xray import epochs_to_target, test_scores  # the benchmarks' shared X-ray helpers

from napari_patchdx.evaluation.xray_metrics import multilabel_auroc
from napari_patchdx.progress import run_job
from napari_patchdx.sampling.splits import assign_splits
from napari_patchdx.synth.cxr.cohort import make_cxr_cohort
from napari_patchdx.synth.cxr.data_model import CXR_CLASSES
from napari_patchdx.training.config import TrainConfig
from napari_patchdx.training.inputs import TrainData
from napari_patchdx.training.job import train_job


def _test_auroc(checkpoint: Path, root: Path, table: pd.DataFrame, size: int) -> dict[str, float]:
    scores = test_scores(checkpoint, root, table, size)
    result = multilabel_auroc(table[list(CXR_CLASSES)].to_numpy(), scores, CXR_CLASSES, n_boot=200)
    return {k: v[0] for k, v in result.items()}


def _finite(value: float) -> float | None:
    return round(value, 3) if np.isfinite(value) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per curriculum stage")
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", type=int, default=256, help="image side and whole-image working size (px)")
    parser.add_argument("--patch", type=int, default=64, help="patch side at the working size (px)")
    parser.add_argument("--target", type=float, default=0.75, help="target mean validation AUROC")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    rows = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cohort = make_cxr_cohort(Path(tmp) / "cxr", n=args.images, seed=0, size=args.size, dicom=False)
        labels = pd.read_csv(cohort.labels_csv)
        sick = dict(zip(labels["image"], labels[list(CXR_CLASSES)].any(axis=1), strict=True))
        splits = assign_splits(list(labels["image"]), (0.6, 0.2, 0.2), seed=0, strata=sick)
        test = labels[labels["image"].map(splits) == "test"]
        for seed in range(args.seeds):
            for arm in ("curriculum", "baseline"):
                config = TrainConfig(
                    track="cxr",
                    stage=arm,
                    arch="small",
                    epochs=args.epochs,
                    batch_size=8,
                    seed=seed,
                    working_size=args.size,
                    patch_size=args.patch,
                    device="cpu",
                    num_workers=args.workers,
                    optimizer="adam",
                )
                out = Path(tmp) / f"{arm}-{seed}"
                t0 = time.perf_counter()
                result = run_job(train_job(config, TrainData(cxr_root=cohort.root, splits=splits), out))
                seconds = time.perf_counter() - t0
                test_auc = _test_auroc(result.best or result.last, cohort.root, test, args.size)
                rows.append(
                    {
                        "seed": seed,
                        "arm": arm,
                        "epochs_to_target": epochs_to_target(result.history, args.target),
                        "seconds": seconds,
                        **{f"test_{k}": v for k, v in test_auc.items()},
                    }
                )
                print(f"seed {seed} {arm:<10} test mean AUROC {test_auc['mean']:.3f}  ({seconds:.0f} s)", flush=True)

    table = pd.DataFrame(rows)
    metrics = ["epochs_to_target", "test_mean", *[f"test_{c}" for c in CXR_CLASSES]]
    print(
        f"\n{args.images} images of {args.size} px (60/20/20 split), {args.seeds} seeds, small net, Adam, "
        f"{args.epochs} + {args.epochs} epochs vs {2 * args.epochs} epochs; target val AUROC {args.target}"
    )
    print(f"{'metric':<34} {'curriculum':>18} {'baseline':>18}")
    summary = {}
    for m in metrics:
        cells = []
        for arm in ("curriculum", "baseline"):
            v = table.loc[table.arm == arm, m].to_numpy(float)
            summary[(arm, m)] = float(np.nanmean(v))
            cells.append(f"{np.nanmean(v):.3f} +/- {np.nanstd(v):.3f}")
        print(f"{m:<34} {cells[0]:>18} {cells[1]:>18}")
    for arm in ("curriculum", "baseline"):
        reached = int(np.isfinite(table.loc[table.arm == arm, "epochs_to_target"].to_numpy(float)).sum())
        print(f"{arm}: reached the target in {reached} of {args.seeds} seeds")
    print(f"total time {time.perf_counter() - t_start:.0f} s")
    print(
        json.dumps(
            {
                "curriculum_auroc": round(summary[("curriculum", "test_mean")], 4),
                "baseline_auroc": round(summary[("baseline", "test_mean")], 4),
                "curriculum_epochs_to_target": _finite(summary[("curriculum", "epochs_to_target")]),
                "baseline_epochs_to_target": _finite(summary[("baseline", "epochs_to_target")]),
                "target": args.target,
                "seeds": args.seeds,
            }
        )
    )


if __name__ == "__main__":
    main()
