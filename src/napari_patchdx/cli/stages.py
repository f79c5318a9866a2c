"""The pipeline commands: ``run``, and ``sample`` / ``train`` / ``infer`` / ``evaluate`` / ``report`` (one stage on a
configuration's run directory, or the stage's job on files named on the command line), and ``retrain`` (a corrections
round on a run directory).

On files, a command that reads slides takes ``--mpp`` (:func:`~napari_patchdx.cli.options.mpp_from_args`): the
slides' level-0 microns per pixel, passed to the stage's job as its ``mpp``. With a configuration the microns per
pixel are its ``mpp`` key, recorded with the run.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evaluation.settings import EvaluateSettings
from ..inference.settings import HEATMAP_OPTIONS, DistributedSettings, InferSettings
from ..io.cohort import cohort_folder
from ..reporting.settings import ReportSettings
from ..sampling.settings import SampleSettings
from .bar import drive
from .options import UsageError, mpp_from_args, settings_from_args

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
"""A single input with one of these suffixes is a pipeline configuration."""


def is_config(inputs: Sequence[str]) -> bool:
    """One input with a configuration suffix (:data:`CONFIG_SUFFIXES`)."""
    return len(inputs) == 1 and Path(inputs[0]).suffix.lower() in CONFIG_SUFFIXES


def _config_path(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise UsageError(f"{path}: no such configuration file")
    return path


def _print_result(result: Any) -> None:
    print(f"run directory: {result.run_dir}")
    for stage, action in result.stages.items():
        seconds = result.timings.get(stage)
        print(f"  {stage:<9} {action}{f' ({seconds:.1f} s)' if seconds is not None else ''}")
    for note in result.notes:
        print(f"note: {note}")
    from ..pipeline.results import headline

    shown = headline(result.metrics)
    if shown:
        print("metrics: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    if result.cancelled:
        print("stopped: the interrupted stage resumes (or restarts) at the next run")
    if result.report is not None:
        print(f"report: {result.report}")


def run_command(args: argparse.Namespace) -> int:
    """``run CONFIG``: the whole pipeline."""
    from .. import pipeline

    job = pipeline.run_job(_config_path(args.config), run_dir=args.run_dir, force=args.force)
    result = drive(job, "run")
    _print_result(result)
    return 0


def _stage_on_config(stage: str, args: argparse.Namespace) -> int:
    from .. import pipeline

    if getattr(args, "mpp", None):
        raise UsageError(
            f"{stage}: --mpp is for slides named on the command line; with a configuration, write the slides' "
            "microns per pixel into it (top-level 'mpp: UM', or 'mpp: {NAME: UM}'), where the run records them"
        )
    job = pipeline.run_job(_config_path(args.inputs[0]), run_dir=args.run_dir, force=args.force, stages=[stage])
    result = drive(job, stage)
    _print_result(result)
    return 0


def sample_command(args: argparse.Namespace) -> int:
    """``sample``: the sample stage on a configuration, or slides / an X-ray cohort to a patch table."""
    if is_config(args.inputs):
        return _stage_on_config("sample", args)
    if not args.out:
        raise UsageError("sample: give a configuration file, or input slides / a cohort folder with --out TABLE")
    from ..io.detect import slide_inputs
    from ..sampling.job import sample_cxr_job, sample_slides_job
    from ..sampling.patches import PatchGeometry
    from ..sampling.tables import write_patch_table
    from ..training.config import DEFAULT_PATCH_SIZE

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"{out}: the patch table is written as .csv or .parquet")
    settings = settings_from_args(SampleSettings, args)
    cohort = cohort_folder(args.inputs)
    if cohort is not None:
        mpp_from_args(args, [])  # X-rays have no microns per pixel: --mpp is refused
        job = sample_cxr_job(
            cohort,
            n=settings.n,
            patch_size=args.patch_size or DEFAULT_PATCH_SIZE["cxr"],
            working_size=args.working_size,
            seed=args.seed,
        )
    else:
        pairs = slide_inputs(args.inputs)
        patch = args.patch_size or DEFAULT_PATCH_SIZE["slide"]
        geometry = PatchGeometry(patch, args.center_size or min(128, patch), args.patch_mpp)
        job = sample_slides_job(
            pairs,
            method=settings.method,
            n=settings.n,
            geometry=geometry,
            seed=args.seed,
            jitter=args.jitter,
            min_tissue=settings.min_tissue,
            mpp=mpp_from_args(args, [p for p, _ in pairs]),
        )
    table = drive(job, "sample")
    write_patch_table(table, out)
    print(f"wrote {len(table)} patches ({int((table['label'] > 0).sum())} positive) to {out}")
    return 0


def train_command(args: argparse.Namespace) -> int:
    """``train CONFIG``: the train stage."""
    if not is_config(args.inputs):
        raise UsageError(
            "train: give one pipeline configuration file (YAML); to train on a training config alone use "
            "`python -m napari_patchdx.training CONFIG.json OUT_DIR`"
        )
    return _stage_on_config("train", args)


def infer_command(args: argparse.Namespace) -> int:
    """``infer``: the infer stage on a configuration, or checkpoints on slides / X-rays."""
    if is_config(args.inputs) and not args.checkpoint:
        return _stage_on_config("infer", args)
    if not args.checkpoint or not args.out:
        raise UsageError("infer: give a configuration file, or --checkpoint C --out DIR and slides / X-rays")
    from ..errors import InputFileError
    from ..io.detect import detect_kind, slides_in_folder

    out = Path(args.out)
    slides: list[Path] = []
    xrays: list[Path] = []
    for raw in args.inputs:
        path = Path(raw)
        if path.is_dir():
            found = [p for p, _ in slides_in_folder(path)]
            if not found:
                raise InputFileError(path, "holds no slides")
            slides.extend(found)
            continue
        kind = detect_kind(path)
        if kind == "slide":
            slides.append(path)
        elif kind == "cxr":
            xrays.append(path)
        else:
            raise InputFileError(path, "no such file" if not path.exists() else "not a slide or chest X-ray we read")
    from ..io.slides.dicom import one_per_series

    slides = one_per_series(slides)
    mpp = mpp_from_args(args, slides)
    if slides:
        from ..inference.distributed_heatmaps import heatmaps_job

        settings = settings_from_args(InferSettings, args, HEATMAP_OPTIONS)
        where = settings_from_args(DistributedSettings, args)
        job = heatmaps_job(
            slides,
            [Path(c) for c in args.checkpoint],
            out,
            device=args.device,
            mpp=mpp,
            **where.job_options(),
            **settings.heatmap_options(),
        )
        results = drive(job, "heatmaps")
        for res in results:
            print(f"wrote {res.path}")
    if xrays:
        if len(args.checkpoint) > 1:
            raise UsageError("infer: chest X-rays are predicted with one checkpoint")
        from ..devices import resolve_device
        from ..inference.xray_job import predict_xrays_job

        device = str(resolve_device(args.device))
        outcomes = drive(predict_xrays_job(xrays, args.checkpoint[0], out, device=device), "X-rays")
        print(f"wrote {len(outcomes)} prediction(s) to {out}")
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """``evaluate``: the evaluate stage on a configuration, or heatmaps / CAMs against ground truth."""
    if is_config(args.inputs) and not (args.heatmaps or args.cams):
        return _stage_on_config("evaluate", args)
    from .. import evaluation as ev

    if not args.out:
        raise UsageError("evaluate: give a configuration file, or --out DIR with --heatmaps or --cams")
    settings = settings_from_args(EvaluateSettings, args)
    if args.heatmaps:
        from ..io.detect import slide_inputs

        if not args.inputs:
            raise UsageError("evaluate --heatmaps DIR: name the slides (or their folder)")
        slides = [p for p, _ in slide_inputs(args.inputs)]
        job = ev.evaluate_slides_job(
            slides,
            args.heatmaps,
            args.out,
            mpp=mpp_from_args(args, slides),
            seed=args.seed,
            **settings.slide_options(),
        )
    elif args.cams:
        if not args.cohort:
            raise UsageError("evaluate --cams DIR needs --cohort DIR (labels.csv, lesions.csv)")
        mpp_from_args(args, [])  # X-rays have no microns per pixel: --mpp is refused
        thresholds = None
        if args.checkpoint:
            from ..models.checkpoint import checkpoint_thresholds

            thresholds = checkpoint_thresholds(args.checkpoint)
        job = ev.evaluate_cxr_job(
            args.cams,
            args.cohort,
            args.out,
            images=args.inputs or None,
            thresholds=thresholds,
            n_boot=settings.n_boot,
            seed=args.seed,
        )
    else:
        raise UsageError("evaluate: give --heatmaps DIR (slides) or --cams DIR (X-rays)")
    metrics = drive(job, "evaluate")
    from ..pipeline.results import headline

    shown = headline(metrics)
    if shown:
        print("metrics: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def report_command(args: argparse.Namespace) -> int:
    """``report RUN_DIR ...``: the HTML report of one or several runs."""
    from ..reporting.build import build_report

    runs = [Path(r) for r in args.runs]
    for run in runs:
        if not run.is_dir():
            raise UsageError(f"{run}: no such run directory")
    out = Path(args.out) if args.out else None
    if out is None and len(runs) > 1:
        raise UsageError("report: with several run directories, say where the report goes (--out FILE)")
    settings = settings_from_args(ReportSettings, args, ["title"])
    path = build_report(runs if len(runs) > 1 else runs[0], out, title=settings.title)
    print(f"report: {path}")
    return 0


def _change(values: dict, key: str, digits: int = 3) -> str:
    """``before -> after`` of one number of a corrections round (``-`` where it is undefined)."""

    def show(value: object) -> str:
        if value is None:
            return "-"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    return f"{show((values.get('before') or {}).get(key))} -> {show((values.get('after') or {}).get(key))}"


def retrain_command(args: argparse.Namespace) -> int:
    """``retrain RUN_DIR [--truth FOLDER]``: one corrections round (slides: fine-tune, re-infer the corrected slides,
    compare; X-rays: fine-tune on the corrected cohort, compare the corrected images' probabilities and the validation
    AUROC)."""
    from ..pipeline.retrain import retrain_job
    from ..training.retrain_settings import RetrainSettings
    from ..training.xray_corrections import XrayRound

    settings = settings_from_args(RetrainSettings, args)
    job = retrain_job(
        args.run_dir,
        args.truth,
        from_round=args.from_round,
        device=args.device,
        resume=args.resume,
        images=args.images,
        **settings.job_options(),
    )
    result = drive(job, "retrain")
    print(f"round {result.number}: {result.folder} (started from {result.start_checkpoint})")
    if result.cancelled:
        print("stopped: repeat the command with the same corrections to resume the round")
        return 0
    print(f"new checkpoint: {result.checkpoint}")
    if isinstance(result, XrayRound):
        _print_xray_round(result)
        return 0
    print(f"{'slide':<24} {'false positives':>16} {'lesions found':>14} {'p in normal regions':>22}")
    for name, row in result.slides.items():
        print(
            f"{name:<24} {_change(row, 'false_positives'):>16} {_change(row, 'lesions_detected'):>14} "
            f"{_change(row, 'normal_mean'):>22}"
        )
    m = result.metrics
    print(
        f"false positives per corrected slide {_change(m, 'fp_per_slide', 2)}, FROC {_change(m, 'froc')}, "
        f"heatmap difference (after - before) in {result.paths['difference']}"
    )
    return 0


def _print_xray_round(result: Any) -> None:
    """The corrected images' class probabilities and the validation AUROC of an X-ray round, before -> after."""
    print(f"{'image':<24} {'split':<6} {'weight':>6} {'class':<24} {'label':>5} {'probability':>16}")
    for image, row in result.images.items():
        for cls, label in (row.get("labels") or {}).items():
            p = {when: {"p": (row.get(when) or {}).get(cls)} for when in ("before", "after")}
            print(
                f"{image:<24} {row.get('split', ''):<6} {row.get('weight', 1):>6} {cls:<24} {label:>5} "
                f"{_change(p, 'p'):>16}"
            )
    auroc = (result.metrics or {}).get("val_auroc") or {}
    classes = [c for c in (auroc.get("after") or auroc.get("before") or {}) if c != "mean"]
    per_class = ", ".join(f"{c} {_change(auroc, c)}" for c in classes)
    print(f"validation AUROC (mean) {_change(auroc, 'mean')}; per class: {per_class or '-'}")
