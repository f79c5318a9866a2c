"""The X-ray arm of benchmarks/claims.py: Park et al.'s curriculum vs the equal-budget baseline as a learning curve.

One synthetic chest X-ray cohort (``make_cxr_cohort``) with a fixed test set and a fixed validation set; training
sets of several sizes are nested (the first ``n`` of one shuffled list of the remaining images, stratified by
"any lesion"), so a larger set adds images and never swaps them. Both arms train the small network with the
trainer's budget rule (the curriculum: ``epochs`` lesion-patch epochs then ``epochs`` whole-image epochs; the
baseline: ``2 * epochs`` whole-image epochs of the same cost). Images outside a size's training set are given the
``test`` split, which the trainer never reads; the test AUROCs use only the fixed test images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from napari_patchdx.models.checkpoint import load_checkpoint
from napari_patchdx.progress import run_job
from napari_patchdx.synth.cxr.cohort import make_cxr_cohort
from napari_patchdx.synth.cxr.data_model import CXR_CLASSES
from napari_patchdx.training.config import TrainConfig
from napari_patchdx.training.datasets import WholeImageDataset
from napari_patchdx.training.inputs import TrainData
from napari_patchdx.training.job import train_job
from napari_patchdx.transforms.compose import cxr_eval_transforms

ARMS = ("curriculum", "baseline")


@dataclass(frozen=True)
class XraySizes:
    """Sizes of the X-ray arm.

    Attributes:
        train_sizes: training-set sizes (images), increasing.
        n_val, n_test: fixed validation and test images.
        size: image side and whole-image working size, pixels (nodules of 8-30 mm over a ~400 mm field are
            about 3-12 px across at 160 px).
        patch: lesion-patch side at the working size, pixels.
        epochs: epochs per curriculum stage (the baseline runs twice as many whole-image epochs).
        target: mean validation AUROC whose first whole-image epoch is "epochs to target".
    """

    train_sizes: tuple[int, ...]
    n_val: int
    n_test: int
    size: int
    patch: int
    epochs: int
    target: float = 0.7


@dataclass
class XrayRun:
    """One trained arm: test labels and probabilities (images x classes) and epochs to the validation target."""

    n_train: int
    arm: str
    seed: int
    labels: np.ndarray
    scores: np.ndarray
    epochs_to_target: float
    seconds: float


def make_cohort(root: Path, sizes: XraySizes) -> tuple[Path, pd.DataFrame, list[str], list[str], list[str]]:
    """Write the cohort; returns its root, its labels table, and the test, validation and (ordered) training-pool
    image ids."""
    n = max(sizes.train_sizes) + sizes.n_val + sizes.n_test
    cohort = make_cxr_cohort(root, n=n, seed=0, size=sizes.size, dicom=False)
    labels = pd.read_csv(cohort.labels_csv)
    rng = np.random.default_rng(0)
    sick = labels[list(CXR_CLASSES)].to_numpy().any(axis=1)
    # alternate sick / healthy images, so the test set, the validation set and every prefix of the pool stay balanced
    groups = [list(rng.permutation(np.flatnonzero(sick))), list(rng.permutation(np.flatnonzero(~sick)))]
    short = min(map(len, groups))
    order = [i for pair in zip(groups[0][:short], groups[1][:short], strict=True) for i in pair]
    order += groups[0][short:] + groups[1][short:]
    ids = [str(labels["image"].iloc[i]) for i in order]
    n_test, n_val = sizes.n_test, sizes.n_val
    return cohort.root, labels, ids[:n_test], ids[n_test : n_test + n_val], ids[n_test + n_val :]


def splits_for(labels: pd.DataFrame, val: Sequence[str], pool: Sequence[str], n_train: int) -> dict[str, str]:
    """Image -> split for one training-set size: the first ``n_train`` of the pool train, ``val`` validates, every
    other image is ``test`` (the trainer does not read the test split)."""
    out = {str(i): "test" for i in labels["image"]}
    out.update({i: "val" for i in val})
    out.update({i: "train" for i in pool[:n_train]})
    return out


def test_scores(checkpoint: Path, root: Path, test: pd.DataFrame, size: int) -> np.ndarray:
    """Sigmoid probabilities (images x classes) of the test images at the working size."""
    model, _ = load_checkpoint(checkpoint)
    model.eval()
    ds = WholeImageDataset(
        [root / p for p in test["png"]], test[list(CXR_CLASSES)].to_numpy(), size, cxr_eval_transforms()
    )
    with torch.no_grad():
        return torch.cat([torch.sigmoid(model(ds[i][0][None])) for i in range(len(ds))]).numpy()


def epochs_to_target(history: list[dict], target: float) -> float:
    """Whole-image epochs until the mean validation AUROC first reaches ``target`` (NaN: never)."""
    whole = [h for h in history if h.get("stage") == "whole"]
    for k, h in enumerate(whole, start=1):
        mean = (h.get("val_auroc") or {}).get("mean")
        if mean is not None and np.isfinite(mean) and mean >= target:
            return float(k)
    return float("nan")


def train_arm(
    root: Path, splits: dict, out: Path, sizes: XraySizes, arm: str, seed: int, device: str, workers: int
) -> tuple[Path, float]:
    """Train one arm; returns its best (else last) checkpoint and the epochs to the validation target."""
    config = TrainConfig(
        track="cxr",
        stage=arm,
        arch="small",
        epochs=sizes.epochs,
        batch_size=8,
        seed=seed,
        working_size=sizes.size,
        patch_size=sizes.patch,
        device=device,
        num_workers=workers,
        optimizer="adam",
    )
    result = run_job(train_job(config, TrainData(cxr_root=root, splits=splits), out))
    return result.best or result.last, epochs_to_target(result.history, sizes.target)
