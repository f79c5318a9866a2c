"""Evaluating a run's chest X-rays from files: :func:`evaluate_cxr` (and its job twin) reads the CAM predictions,
the cohort's ``labels.csv`` and ``lesions.csv``, computes per-class AUROC, operating points, the pointing game and
suspected label errors, and writes ``images.csv``, ``auroc.json``, ``roc.png``, thumbnails, ``suspects.json`` and
``metrics.json``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputFileError
from ..io.cohort import LABELS_NAME, LESIONS_NAME, read_labels, read_lesions
from ..jsonvalues import write_json
from ..progress import Job, Progress, run_job
from .figures import draw_roc, new_figure, save_figure
from .files import PathLike
from .label_errors import SUSPECT_HIGH, SUSPECT_LOW, check_suspect_limits, suspected_label_errors, suspects_document
from .messages import name_list
from .outputs import auc_interval, write_csv
from .roc import check_boot
from .thumbnails import class_colors, cxr_thumbnail
from .xray_metrics import (
    PointingPair,
    multilabel_auroc,
    pointing_game_pairs,
    sensitivity_specificity,
    youden_thresholds,
)


def _cam_peak(cam: np.ndarray) -> tuple[float, float]:
    """(y, x) centre of a native-size CAM's argmax pixel (first in row-major order; NaN never wins)."""
    plane = np.where(np.isnan(cam), -np.inf, cam)
    r, c = divmod(int(np.argmax(plane)), plane.shape[1])
    return (r + 0.5, c + 0.5)


def evaluate_cxr_job(
    infer_dir: PathLike,
    cohort_dir: PathLike,
    out_dir: PathLike,
    *,
    images: Sequence[str] | None = None,
    thresholds: Mapping[str, float | None] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    suspect_high: float = SUSPECT_HIGH,
    suspect_low: float = SUSPECT_LOW,
    thumbnails: bool = True,
) -> Job[dict[str, Any]]:
    """:func:`evaluate_cxr` as a job yielding :class:`~napari_patchdx.progress.Progress`; returns the metrics."""
    from ..inference.xray import cam_paths, read_cxr_prediction
    from ..io.cxr.read import read_cxr

    high, low = check_suspect_limits(suspect_high, suspect_low)
    check_boot(n_boot, 0.05)
    pred_dir, root, out = Path(infer_dir), Path(cohort_dir), Path(out_dir)
    if not pred_dir.is_dir():
        raise InputFileError(pred_dir, "the predictions folder does not exist or is not a folder")
    table, class_tuple = read_labels(root)
    classes = list(class_tuple)
    labels_csv = root / LABELS_NAME
    ids = table["image"].astype(str).tolist()
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise InputFileError(labels_csv, f"images listed more than once: {name_list(dupes)}")
    suffix = ".cam.json"
    preds = {p.name[: -len(suffix)]: p for p in sorted(pred_dir.glob(f"*{suffix}")) if p.is_file()}
    if images is None:
        unknown = set(preds) - set(ids)
        if unknown:
            raise ConfigError(
                f"predictions in {pred_dir} for images that are not in {labels_csv}: {name_list(unknown)}; pass "
                "images= to evaluate a subset"
            )
        chosen = [i for i in ids if i in preds]
        if not chosen:
            raise InputFileError(
                pred_dir, "no X-ray predictions (<image>.cam.ome.tif + <image>.cam.json) in the folder"
            )
    else:
        chosen = [str(i) for i in images]
        if not chosen:
            raise ConfigError("evaluate_cxr: images= is empty")
        repeated = {i for i in chosen if chosen.count(i) > 1}
        if repeated:
            raise ConfigError(f"images= names some images more than once: {name_list(repeated)}")
        unlabelled = set(chosen) - set(ids)
        if unlabelled:
            raise ConfigError(f"images without a row in {labels_csv}: {name_list(unlabelled)}")
        unpredicted = [i for i in chosen if i not in preds]
        if unpredicted:
            raise InputFileError(pred_dir, f"no prediction (<image>.cam.json) for images: {name_list(unpredicted)}")
    if thresholds is not None:
        strange = set(map(str, thresholds)) - set(classes)
        if strange:
            raise ConfigError(
                f"thresholds for classes {name_list(strange)} that {labels_csv} does not have ({', '.join(classes)}); "
                "was the checkpoint trained on other classes?"
            )
        if all(v is None for v in thresholds.values()):
            thresholds = None  # a checkpoint that stores no usable threshold: the same as giving none
    boxes_path = root / LESIONS_NAME
    all_boxes = (
        {
            image_id: [(b.class_index, b.y0, b.x0, b.y1, b.x1) for b in image_boxes]
            for image_id, image_boxes in read_lesions(boxes_path, classes).items()
        }
        if boxes_path.is_file()
        else None
    )
    by_id = table.set_index(table["image"].astype(str))
    y = by_id.loc[chosen, classes].to_numpy(dtype=np.int64).astype(bool)
    s = np.zeros(y.shape, dtype=np.float64)
    colors = dict(zip(classes, class_colors(len(classes)), strict=True))
    pairs: list[PointingPair] = []
    inconsistent: list[str] = []
    if thumbnails:
        (out / "thumbs").mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
    thumbs: dict[str, str] = {}
    extra_classes: set[str] = set()
    for i, image_id in enumerate(chosen):
        yield Progress(i, len(chosen), f"{image_id}: prediction")
        pred = read_cxr_prediction(preds[image_id])
        sidecar = cam_paths(pred_dir, image_id)["sidecar"]
        lacking = [c for c in classes if c not in pred.classes]
        if lacking:
            raise InputFileError(
                sidecar, f"has no prediction for classes {', '.join(lacking)} (it has {', '.join(pred.classes)})"
            )
        extra_classes |= set(pred.classes) - set(classes)
        order = [pred.classes.index(c) for c in classes]
        probs = np.asarray(pred.probabilities, dtype=np.float64)[order]
        bad = [c for c, p in zip(classes, probs, strict=True) if not (math.isfinite(p) and 0.0 <= p <= 1.0)]
        if bad:
            raise InputFileError(
                sidecar, f"probability of {', '.join(bad)} is NaN, infinite or outside [0, 1]: not a usable prediction"
            )
        s[i] = probs
        cams = np.asarray(pred.cams, dtype=np.float32)[order]
        image_boxes = (all_boxes or {}).get(image_id, [])
        for ci, *_ in image_boxes:
            if not y[i, ci]:
                inconsistent.append(f"{image_id}/{classes[ci]}")
        for pair in pointing_game_pairs([cams], [image_boxes], [tuple(pred.shape)]):
            pairs.append(PointingPair(i, pair.class_index, pair.hit, pair.peak))
        if thumbnails:
            positives = np.flatnonzero(y[i])
            shown = int(positives[np.argmax(probs[positives])]) if positives.size else int(np.argmax(probs))
            row = by_id.loc[image_id]
            try:
                grey = read_cxr(root / str(row["png"])).image
            except (InputFileError, OSError) as exc:
                warnings.warn(f"{image_id}: no thumbnail, the image is unreadable ({exc})", UserWarning, stacklevel=2)
            else:
                named = ", ".join(classes[k] for k in positives) or "normal"
                cxr_thumbnail(
                    out / "thumbs" / f"{image_id}.png",
                    grey,
                    cam=cams[shown],
                    boxes=[(classes[ci], y0, x0, y1, x1) for ci, y0, x0, y1, x1 in image_boxes],
                    peak=_cam_peak(cams[shown]),
                    title=f"{image_id} [{named}]: CAM {classes[shown]} p={probs[shown]:.2f}",
                    colors=colors,
                )
                thumbs[image_id] = f"thumbs/{image_id}.png"
        del cams, pred
    if extra_classes:
        warnings.warn(
            f"the predictions have classes that {labels_csv} lacks, left out: {name_list(extra_classes)}",
            UserWarning,
            stacklevel=2,
        )
    if inconsistent:
        warnings.warn(
            f"{boxes_path}: lesion boxes of classes the image is not labelled with (labels.csv says 0), scored in the "
            f"pointing game anyway: {name_list(inconsistent)}",
            UserWarning,
            stacklevel=2,
        )
    yield Progress(len(chosen), len(chosen), "AUROC, thresholds, pointing game")

    auroc: dict[str, tuple[float, float, float]] | None = None
    auroc_note = ""
    try:
        auroc = multilabel_auroc(y, s, classes=classes, n_boot=int(n_boot), seed=int(seed))
    except ConfigError as exc:
        auroc_note = str(exc)
    youden = youden_thresholds(y, s)
    thr = np.full(len(classes), np.nan)
    source: dict[str, str] = {}
    for c, name in enumerate(classes):
        given = None if thresholds is None else thresholds.get(name)
        if given is not None and math.isfinite(float(given)):
            thr[c], source[name] = float(given), "given"
        elif math.isfinite(youden[c]):
            thr[c], source[name] = youden[c], "youden on the evaluated images"
        else:
            source[name] = "undefined (one label only)"
    sens, spec = sensitivity_specificity(y, s, np.where(np.isfinite(thr), thr, 0.0))
    sens = np.where(np.isfinite(thr), sens, np.nan)
    spec = np.where(np.isfinite(thr), spec, np.nan)
    if thresholds is None:
        thresholds_note = (
            "no thresholds given: chosen by Youden's J on the evaluated images themselves, so sensitivity and "
            "specificity are optimistic (pass the checkpoint's validation thresholds)"
        )
    elif any(v.startswith("youden") for v in source.values()):
        thresholds_note = "given thresholds used; classes without one: Youden's J on the evaluated images (optimistic)"
    else:
        thresholds_note = "given thresholds (e.g. Youden's J on the validation split, from the checkpoint)"
    hits = np.zeros(len(classes), dtype=np.int64)
    total = np.zeros(len(classes), dtype=np.int64)
    hit_of: dict[tuple[int, int], bool] = {}
    for pair in pairs:
        total[pair.class_index] += 1
        hits[pair.class_index] += int(pair.hit)
        hit_of[(pair.image, pair.class_index)] = pair.hit
    pointing = {name: (float(hits[c] / total[c]) if total[c] else math.nan) for c, name in enumerate(classes)}
    unboxed = {
        name: int(sum(1 for i in range(len(chosen)) if y[i, c] and (i, c) not in hit_of))
        for c, name in enumerate(classes)
    }
    suspects = suspected_label_errors(chosen, y, s, classes=classes, high=high, low=low)
    suspect_ids = {x["name"] for x in suspects}

    columns = ["image", "labels"]
    for name in classes:
        columns += [f"{name}_label", f"{name}_probability", f"{name}_predicted", f"{name}_peak_in_box"]
    columns.append("suspect")
    rows = []
    for i, image_id in enumerate(chosen):
        row: dict[str, Any] = {
            "image": image_id,
            "labels": ";".join(classes[c] for c in np.flatnonzero(y[i])) or "normal",
            "suspect": image_id in suspect_ids,
        }
        for c, name in enumerate(classes):
            row[f"{name}_label"] = int(y[i, c])
            row[f"{name}_probability"] = float(s[i, c])
            row[f"{name}_predicted"] = "" if not math.isfinite(thr[c]) else int(s[i, c] >= thr[c])
            row[f"{name}_peak_in_box"] = "" if (i, c) not in hit_of else int(hit_of[(i, c)])
        rows.append(row)
    write_csv(out / "images.csv", columns, rows)

    files: dict[str, Any] = {"images_csv": "images.csv", "auroc_json": "auroc.json", "suspects": "suspects.json"}
    if thumbnails:
        files["thumbs"] = thumbs
    fig = new_figure((5.5, 4.8))
    mean_txt = f"mean AUROC {auroc['mean'][0]:.3f}" if auroc is not None else "AUROC undefined"
    draw_roc(
        fig.add_subplot(1, 1, 1),
        {name: (y[:, c], s[:, c]) for c, name in enumerate(classes)},
        title=f"X-ray ROC per class ({len(chosen)} images): {mean_txt}",
    )
    fig.tight_layout()
    save_figure(fig, out / "roc.png")
    files["roc_png"] = "roc.png"

    auroc_part = {name: auc_interval(auroc[name] if auroc is not None else None) for name in classes}
    mean_part = auc_interval(auroc["mean"] if auroc is not None else None)
    if auroc is None:
        mean_part["skipped"] = auroc_note
    summary = {
        "classes": classes,
        "n_images": len(chosen),
        "n_positive": {name: int(y[:, c].sum()) for c, name in enumerate(classes)},
        "auroc": auroc_part,
        "mean_auroc": mean_part,
        "confidence": 0.95,
        "thresholds": {name: float(thr[c]) for c, name in enumerate(classes)},
        "threshold_source": source,
        "thresholds_note": thresholds_note,
        "sensitivity": {name: float(sens[c]) for c, name in enumerate(classes)},
        "specificity": {name: float(spec[c]) for c, name in enumerate(classes)},
        "pointing_game": pointing,
        "pointing_pairs": {name: int(total[c]) for c, name in enumerate(classes)},
        "pointing_unboxed_positives": unboxed,
        "pointing_note": (
            "share of (image, class) pairs with a lesion box whose class CAM peaks inside one of the class's boxes"
            if all_boxes is not None
            else f"no {boxes_path.name} beside labels.csv: pointing game not computed"
        ),
    }
    write_json(out / "auroc.json", summary)
    suspects_out = [{**x, "thumbnail": thumbs.get(x["name"])} for x in suspects]
    write_json(out / "suspects.json", suspects_document(suspects_out, high, low, "class probability"))
    metrics = {
        "track": "cxr",
        **summary,
        "suspects": len(suspects),
        "settings": {"n_boot": int(n_boot), "seed": int(seed), "suspect_high": high, "suspect_low": low},
        "files": files,
        "inputs": {"infer_dir": str(pred_dir), "cohort_dir": str(root), "images": chosen},
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def evaluate_cxr(
    infer_dir: PathLike,
    cohort_dir: PathLike,
    out_dir: PathLike,
    *,
    images: Sequence[str] | None = None,
    thresholds: Mapping[str, float | None] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    suspect_high: float = SUSPECT_HIGH,
    suspect_low: float = SUSPECT_LOW,
    thumbnails: bool = True,
) -> dict[str, Any]:
    """Evaluate chest X-ray predictions: per-class and mean AUROC, operating points, pointing game, suspects.

    Args:
        infer_dir: folder of ``<image>.cam.ome.tif`` + ``<image>.cam.json``
            (:func:`napari_patchdx.inference.save_cxr_prediction`).
        cohort_dir: the cohort: ``labels.csv`` (:func:`napari_patchdx.io.cohort.read_labels`: image,
            png, one 0 / 1 column per class) and, for the pointing game, ``lesions.csv`` (image, class, y0, x0,
            y1, x1: half-open native-pixel boxes), as :func:`napari_patchdx.synth.cxr.make_cxr_cohort` writes.
        out_dir: where to write (created); see "Files".
        images: the image ids to evaluate (default: every prediction in ``infer_dir``, which must all be in
            ``labels.csv``).
        thresholds: class -> operating threshold (a score >= it is called positive), e.g.
            :func:`~napari_patchdx.models.checkpoint.checkpoint_thresholds` (Youden's J on the validation split).
            None, or a class given None: Youden's J on the evaluated images, which is optimistic;
            ``metrics["threshold_source"]`` and ``thresholds_note`` say which was used.
        n_boot, seed: bootstrap resamples (images, the same resample for every class) and seed of the 95 %
            intervals (:func:`multilabel_auroc`).
        suspect_high, suspect_low: the suspected-label-error rule's limits (:data:`SUSPECT_RULE`), per class.
        thumbnails: write ``thumbs/<image>.png``: the X-ray with the CAM of its most probable labelled class (or
            its most probable class when it has no label), the lesion boxes and the CAM's peak.

    Pointing game: for every (image, class) pair with at least one box in ``lesions.csv``, a hit when the class
    CAM's maximum (at native resolution) lies inside one of that class's boxes on the image
    (:func:`pointing_game_pairs`); the rate per class is hits / pairs (NaN without pairs).

    Files (under ``out_dir``, each written atomically): ``images.csv`` (image, labels, then per class
    ``<class>_label``, ``_probability``, ``_predicted`` (at the threshold), ``_peak_in_box`` (empty without a
    box), and ``suspect``), ``auroc.json`` (the per-class summary), ``roc.png`` (a curve per class),
    ``thumbs/``, ``suspects.json`` and ``metrics.json`` (the returned dict).

    Returns:
        The metrics: ``track`` ("cxr"), ``classes``, ``n_images``, ``n_positive``, ``auroc`` (class -> auc, lo,
        hi), ``mean_auroc``, ``thresholds``, ``threshold_source``, ``thresholds_note``, ``sensitivity``,
        ``specificity``, ``pointing_game``, ``pointing_pairs``, ``suspects``, ``settings``, ``files``, ``inputs``.

    Raises:
        ConfigError: predictions for images missing from ``labels.csv`` (or ``images`` naming such images),
            thresholds for unknown classes, bad parameters.
        InputFileError: no predictions, a missing prediction for a listed image, a prediction lacking a class or
            with a NaN / out-of-range probability, a bad ``labels.csv`` / ``lesions.csv``.
    """
    return run_job(
        evaluate_cxr_job(
            infer_dir,
            cohort_dir,
            out_dir,
            images=images,
            thresholds=thresholds,
            n_boot=n_boot,
            seed=seed,
            suspect_high=suspect_high,
            suspect_low=suspect_low,
            thumbnails=thumbnails,
        )
    )
