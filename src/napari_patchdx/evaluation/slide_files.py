"""Evaluating a run's slides from files: :func:`evaluate_slides` (and its job twin) reads the slides, their heatmap
files and ground truth, evaluates them (:func:`~napari_patchdx.evaluation.slides.evaluate_slide_inputs_job`) and
writes the ``evaluate/`` folder: lesion points (``points/<name>.csv`` and ``points/<name>.geojson``), ``froc.json`` /
``froc.png``, ``roc.png``, ``slides.csv``, thumbnails, ``suspects.json`` and ``metrics.json``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputFileError
from ..io.annotations.model import EXCLUSION, NORMAL, TUMOR, AnnotationSet
from ..io.annotations.read import read_annotations
from ..io.names import POINTS_FOLDER, file_name, heatmap_paths, points_paths
from ..jsonvalues import write_json
from ..progress import Job, Progress, run_job
from ..sampling.sources import MPP_HINT, SlideMpp, check_slide_mpp, slide_mpp
from .figures import draw_roc, new_figure, save_figure
from .files import PathLike
from .label_errors import SUSPECT_HIGH, SUSPECT_LOW, suspects_document
from .masks import CAMELYON_LEVEL
from .messages import name_list
from .nms import LIU_RADIUS_UM
from .outputs import write_csv
from .slides import SLIDES_CSV_COLUMNS, SlideInput, SlidesEvaluation, evaluate_slide_inputs_job, protocol_mpp
from .thumbnails import slide_thumbnail


def _remove_stale(*paths: Path) -> None:
    """Remove outputs of an earlier evaluation that this one does not produce (so no stale figure survives)."""
    for p in paths:
        p.unlink(missing_ok=True)


def evaluate_slides_job(
    slides: Sequence[PathLike],
    heatmap_dir: PathLike,
    out_dir: PathLike,
    *,
    annotations: Mapping[str, PathLike | None] | None = None,
    nms_threshold: float = 0.5,
    nms_radius_um: float = LIU_RADIUS_UM,
    level: int = CAMELYON_LEVEL,
    mpp: SlideMpp = None,
    score: str = "max",
    n_boot: int = 1000,
    seed: int = 0,
    suspect_high: float = SUSPECT_HIGH,
    suspect_low: float = SUSPECT_LOW,
    thumbnails: bool = True,
) -> Job[dict[str, Any]]:
    """:func:`evaluate_slides` as a job yielding :class:`~napari_patchdx.progress.Progress`; returns the metrics."""
    from ..inference.heatmap_files import read_heatmap
    from ..io.detect import annotations_beside
    from ..io.slides.open import open_slide

    paths = [Path(s) for s in slides]
    if not paths:
        raise ConfigError("evaluate_slides: no slides given")
    mpp = check_slide_mpp(mpp)
    stems = [file_name(p) for p in paths]
    dupes = {s for s in stems if stems.count(s) > 1}
    if dupes:
        raise ConfigError(f"slides must have distinct names; repeated: {name_list(dupes)}")
    if annotations is None:
        ann: dict[str, Path | None] = {stem: annotations_beside(p) for stem, p in zip(stems, paths, strict=True)}
    else:
        ann = {str(k): (None if v is None else Path(v)) for k, v in annotations.items()}
        missing = set(stems) - set(ann)
        if missing:
            raise ConfigError(
                f"no ground-truth entry for slides {name_list(missing)} in annotations (give None for a normal slide)"
            )
        extra = set(ann) - set(stems)
        if extra:
            raise ConfigError(
                f"annotations name slides that are not evaluated: {name_list(extra)} (a tumour slide would drop out of "
                "the FROC); evaluate them too or leave them out of the mapping"
            )
    heat_dir = Path(heatmap_dir)
    if not heat_dir.is_dir():
        raise InputFileError(heat_dir, "the heatmap folder does not exist or is not a folder")
    lacking = [s for s in stems if not heatmap_paths(heat_dir, s)["final"].is_file()]
    if lacking:
        raise InputFileError(
            heat_dir, f"no heatmap (<slide>.heatmap.ome.tif with its .heatmap.json) for slides: {name_list(lacking)}"
        )
    out = Path(out_dir)
    n = len(paths)
    inputs: list[SlideInput] = []
    drawn: dict[str, AnnotationSet | None] = {}  # every slide's annotations, for its thumbnail
    slide_mpps: dict[str, float | None] = {}
    mpp_records: dict[str, dict[str, Any]] = {}
    for i, (path, stem) in enumerate(zip(paths, stems, strict=True)):
        yield Progress(i, n, f"{stem}: reading slide, heatmap and ground truth")
        with open_slide(path, mpp=slide_mpp(mpp, path)) as slide:
            shape = (int(slide.shape[0]), int(slide.shape[1]))
            slide_mpps[stem] = slide.mpp
            meta = slide.metadata()
            mpp_records[stem] = {"mpp": meta["mpp"], "source": meta["mpp_source"]}
        heat_path = heatmap_paths(heat_dir, stem)["final"]
        heat, grid, side = read_heatmap(heat_path)
        made_for = ((side.get("key") or {}).get("slide") or {}).get("shape")
        if made_for is not None and tuple(int(v) for v in made_for) != shape:
            raise InputFileError(
                heat_path,
                f"was computed for a {made_for[0]} x {made_for[1]} px slide, but {path.name} is {shape[0]} x "
                f"{shape[1]} px: not this slide's heatmap",
            )
        truth = read_annotations(ann[stem]) if ann[stem] is not None else None
        drawn[stem] = truth
        other = sorted(set(truth.labels) - {TUMOR, EXCLUSION, NORMAL}) if truth is not None else []
        if other:
            warnings.warn(
                f"{ann[stem]}: regions of classes {', '.join(other)} count as tumour in the FROC evaluation mask "
                "(every class but exclusion and normal does, as in CAMELYON16's _0 / _1 groups)",
                UserWarning,
                stacklevel=2,
            )
        if truth is not None and not truth.positives:
            if not truth.normals:
                warnings.warn(
                    f"{ann[stem]}: the annotation file has no tumour region (and no normal one), so slide {stem!r} "
                    "counts as a normal slide",
                    UserWarning,
                    stacklevel=2,
                )
            truth = None  # a tumour slide is one with tumour regions: with only normal / exclusion ones it is normal
        inputs.append(SlideInput(stem, heat, grid, truth, shape, None, heat_path))
    unknown = [f"{stem} ({path})" for stem, path in zip(stems, paths, strict=True) if slide_mpps[stem] is None]
    if unknown:
        raise ConfigError(
            f"microns per pixel unknown for slides {', '.join(unknown[:10])}: their files do not say, and lesion "
            f"points and the FROC protocol need them; {MPP_HINT}"
        )
    evaluation = yield from evaluate_slide_inputs_job(
        inputs,
        nms_threshold=nms_threshold,
        nms_radius_um=nms_radius_um,
        level=level,
        mpp=protocol_mpp(slide_mpps),
        score=score,
        n_boot=n_boot,
        seed=seed,
        suspect_high=suspect_high,
        suspect_low=suspect_low,
    )
    metrics = yield from _write_slide_outputs(evaluation, inputs, paths, out, drawn if thumbnails else None)
    given = all(r["source"] == "argument" for r in mpp_records.values())
    metrics["settings"]["mpp_source"] = "argument" if given else "slides"
    metrics["inputs"] = {
        "slides": [str(p) for p in paths],
        "heatmap_dir": str(heat_dir),
        "annotations": {k: (None if v is None else str(v)) for k, v in ann.items()},
        "mpp": mpp_records,
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def _write_slide_outputs(
    evaluation: SlidesEvaluation,
    inputs: Sequence[SlideInput],
    paths: Sequence[Path],
    out: Path,
    thumbnails: Mapping[str, AnnotationSet | None] | None,
) -> Job[dict[str, Any]]:
    """Write points/ (CAMELYON16 CSV and QuPath GeoJSON per slide), froc.json, froc.png, roc.png, slides.csv,
    thumbs/ (when ``thumbnails`` gives each slide's annotations to draw), suspects.json; returns the metrics."""
    from ..io.slides.open import open_slide

    (out / POINTS_FOLDER).mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {
        "slides_csv": "slides.csv",
        "suspects": "suspects.json",
        "points": {},
        "points_geojson": {},
    }
    for name in evaluation.names:
        where = points_paths(out / POINTS_FOLDER, name)
        evaluation.points[name].to_camelyon_csv(where["csv"])
        evaluation.points[name].to_geojson(where["geojson"])
        files["points"][name] = where["csv"].relative_to(out).as_posix()
        files["points_geojson"][name] = where["geojson"].relative_to(out).as_posix()
    if evaluation.froc is not None:
        evaluation.froc.to_json(out / "froc.json")
        evaluation.froc.plot(out / "froc.png")
        files.update(froc_json="froc.json", froc_png="froc.png")
    else:
        _remove_stale(out / "froc.json", out / "froc.png")
    if evaluation.auc is not None:
        valid = np.isfinite(evaluation.scores)
        fig = new_figure((5.0, 4.5))
        auc, lo, hi = evaluation.auc
        draw_roc(
            fig.add_subplot(1, 1, 1),
            {"slides": (evaluation.is_tumor[valid], evaluation.scores[valid])},
            title=f"slide-level ROC: AUC {auc:.3f} (95% CI {lo:.3f} - {hi:.3f})",
        )
        fig.tight_layout()
        save_figure(fig, out / "roc.png")
        files["roc_png"] = "roc.png"
    else:
        _remove_stale(out / "roc.png")
    rows = evaluation.rows()
    write_csv(out / "slides.csv", SLIDES_CSV_COLUMNS, rows)
    if thumbnails is not None:
        (out / "thumbs").mkdir(parents=True, exist_ok=True)
        files["thumbs"] = {}
        for i, (inp, path, row) in enumerate(zip(inputs, paths, rows, strict=True)):
            yield Progress(i, len(inputs), f"{inp.name}: thumbnail")
            with open_slide(path) as slide:
                image = slide.thumbnail(512)
            slide_thumbnail(
                out / "thumbs" / f"{inp.name}.png",
                image,
                inp.level0_shape or (image.shape[0], image.shape[1]),
                heatmap=inp.heatmap,
                grid=inp.grid,
                truth=thumbnails.get(inp.name, inp.truth),
                points=evaluation.points[inp.name],
                outcomes=evaluation.outcomes[inp.name],
                title=f"{inp.name} ({row['label']}), score {row['score']:.3f}",
                level=int(evaluation.settings["level"]),
            )
            files["thumbs"][inp.name] = f"thumbs/{inp.name}.png"
    suspects = [
        {**s, "thumbnail": files.get("thumbs", {}).get(s["name"]), "label": "tumor" if s["label"] else "normal"}
        for s in evaluation.suspects
    ]
    write_json(
        out / "suspects.json",
        suspects_document(
            suspects, evaluation.settings["suspect_high"], evaluation.settings["suspect_low"], "slide score"
        ),
    )
    metrics = evaluation.metrics()
    metrics["files"] = files
    return metrics


def evaluate_slides(
    slides: Sequence[PathLike],
    heatmap_dir: PathLike,
    out_dir: PathLike,
    *,
    annotations: Mapping[str, PathLike | None] | None = None,
    nms_threshold: float = 0.5,
    nms_radius_um: float = LIU_RADIUS_UM,
    level: int = CAMELYON_LEVEL,
    mpp: SlideMpp = None,
    score: str = "max",
    n_boot: int = 1000,
    seed: int = 0,
    suspect_high: float = SUSPECT_HIGH,
    suspect_low: float = SUSPECT_LOW,
    thumbnails: bool = True,
) -> dict[str, Any]:
    """Evaluate slide heatmaps: lesion points, CAMELYON16 FROC, slide AUC, per-slide table, thumbnails, suspects.

    Args:
        slides: the slide files; a slide's name is its file stem.
        heatmap_dir: folder of ``<name>.heatmap.ome.tif`` + ``<name>.heatmap.json`` (as
            :func:`napari_patchdx.inference.slide_heatmap_job` writes them).
        out_dir: where to write (created); see "Files" below.
        annotations: slide name -> its ground-truth file (ASAP XML or GeoJSON), or None for a normal slide; must
            name exactly the evaluated slides. Default: the file beside each slide
            (:func:`napari_patchdx.io.detect.annotations_beside`). Tumour slides are those whose annotations
            have a tumour region (:attr:`~napari_patchdx.io.annotations.AnnotationSet.positives`); a file with
            only normal (or exclusion) regions makes a normal slide, whose every detection is a false positive.
        nms_threshold, nms_radius_um: Liu et al.'s NMS threshold (probability) and radius (micrometres) for the
            lesion points (:func:`lesion_points`).
        level: pyramid level of the FROC evaluation mask (5 in CAMELYON16).
        mpp: the slides' level-0 microns per pixel, overriding their files': one value for every slide, or a
            mapping slide name -> value (:data:`~napari_patchdx.sampling.sources.SlideMpp`; names not evaluated
            are ignored). The FROC protocol (37.5 um growth, 275 um ITC axis) uses the slides' microns per pixel,
            which must be known for every slide and agree within 1 %: one value is the protocol's (the CAMELYON16
            challenge evaluates every slide at 0.243).
        score: slide score: ``"max"`` (the heatmap's maximum, Liu et al.) or ``"top<k>"`` (mean of the k largest).
        n_boot, seed: bootstrap resamples and seed of the AUC's 95 % interval.
        suspect_high, suspect_low: the suspected-label-error rule's limits (:data:`SUSPECT_RULE`).
        thumbnails: write ``thumbs/``.

    Files (under ``out_dir``, each written atomically):
        ``points/<name>.csv`` (CAMELYON16 ``probability,X,Y``, level-0 pixels) and ``points/<name>.geojson``
        (the same points as QuPath detections, ``[x, y]`` in continuous level-0 pixels, the probability as a
        measurement; :meth:`~napari_patchdx.evaluation.PointsTable.to_geojson`), ``froc.json`` and ``froc.png``
        (when some slide has a lesion to find), ``roc.png`` (when both tumour and normal slides are present),
        ``slides.csv`` (:data:`SLIDES_CSV_COLUMNS`), ``thumbs/<name>.png``, ``suspects.json`` (the rule and the
        suspects) and ``metrics.json`` (the returned dict).

    Returns:
        The metrics: ``track`` ("slides"), counts, ``froc`` (score, sensitivity_at, ... or ``skipped`` with the
        reason), ``slide_auc`` (auc, lo, hi, ... or ``skipped``), ``points``, ``suspects``, ``settings``,
        ``files`` (relative paths; ``points`` and ``points_geojson`` map each slide to its two points files) and
        ``inputs`` (with ``mpp``: per slide the microns per pixel used and their ``source``, ``"file"`` or
        ``"argument"``).

    Raises:
        ConfigError: no slides, repeated names, an annotations mapping that does not name exactly the slides,
            microns per pixel unknown (naming the slides and how to give them) or differing, bad parameters.
        InputFileError: a missing heatmap (all are listed), a heatmap that is not this slide's or holds no
            probabilities, an unreadable slide or annotation file.
    """
    return run_job(
        evaluate_slides_job(
            slides,
            heatmap_dir,
            out_dir,
            annotations=annotations,
            nms_threshold=nms_threshold,
            nms_radius_um=nms_radius_um,
            level=level,
            mpp=mpp,
            score=score,
            n_boot=n_boot,
            seed=seed,
            suspect_high=suspect_high,
            suspect_low=suspect_low,
            thumbnails=thumbnails,
        )
    )
