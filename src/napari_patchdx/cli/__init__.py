"""The ``napari-patchdx`` command.

Subcommands: ``run`` (the whole pipeline on a configuration), ``sample`` / ``train`` / ``infer`` / ``evaluate``
(one stage: on a configuration's run directory, or on explicit files where that is natural), ``report``,
``demo``, ``synth``, ``info`` and ``froc``. Long work shows a progress bar driven by the job's progress reports.

Exit codes: 0 success; 1 a processing error (a bad input file, missing metadata, an unwritable output ...: the
message names the file and the problem); 2 a usage or configuration error (unknown option or key, bad value,
missing input files, a stage whose predecessor is not done); 130 interrupted by the user (Ctrl-C: outputs are
written atomically and stages record that they did not finish, so nothing half-done is taken for complete, and the
next run resumes or redoes it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, PatchdxError
from ..evaluation.settings import EvaluateSettings
from ..inference.settings import DistributedSettings, InferSettings
from ..reporting.settings import ReportSettings
from ..sampling.settings import SampleSettings
from ..training.config import TrainConfig
from ..versions import __version__
from .bar import drive
from .options import add_setting_options, settings_from_args

_CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


class UsageError(Exception):
    """A command-line usage problem found after parsing (exit code 2)."""


_INFER_OPTIONS = ("tta", "stride", "batch_size", "min_tissue")
"""The infer settings the command takes with explicit inputs (checkpoint and splits concern a run's folders)."""


def _is_config(inputs: Sequence[str]) -> bool:
    return len(inputs) == 1 and Path(inputs[0]).suffix.lower() in _CONFIG_SUFFIXES


def _config_path(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise UsageError(f"{path}: no such configuration file")
    return path


# ---------------------------------------------------------------------------------------------------------------
# pipeline commands
# ---------------------------------------------------------------------------------------------------------------


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


def _run(args: argparse.Namespace) -> int:
    from .. import pipeline

    job = pipeline.run_job(_config_path(args.config), run_dir=args.run_dir, force=args.force)
    result = drive(job, "run")
    _print_result(result)
    return 0


def _stage_on_config(stage: str, args: argparse.Namespace) -> int:
    from .. import pipeline

    job = pipeline.run_job(_config_path(args.inputs[0]), run_dir=args.run_dir, force=args.force, stages=[stage])
    result = drive(job, stage)
    _print_result(result)
    return 0


def _sample(args: argparse.Namespace) -> int:
    if _is_config(args.inputs):
        return _stage_on_config("sample", args)
    if not args.out:
        raise UsageError("sample: give a configuration file, or input slides / a cohort folder with --out TABLE")
    from ..sampling.job import sample_cxr_job, sample_slides_job
    from ..sampling.patches import PatchGeometry
    from ..sampling.tables import write_patch_table
    from ..training.config import DEFAULT_PATCH_SIZE

    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"{out}: the patch table is written as .csv or .parquet")
    settings = settings_from_args(SampleSettings, args)
    first = Path(args.inputs[0])
    if len(args.inputs) == 1 and (first / "labels.csv").is_file():
        job = sample_cxr_job(
            first,
            n=settings.n,
            patch_size=args.patch_size or DEFAULT_PATCH_SIZE["cxr"],
            working_size=args.working_size,
            seed=args.seed,
        )
    else:
        patch = args.patch_size or DEFAULT_PATCH_SIZE["slide"]
        geometry = PatchGeometry(patch, args.center_size or min(128, patch), args.mpp)
        job = sample_slides_job(
            _slide_pairs(args.inputs),
            method=settings.method,
            n=settings.n,
            geometry=geometry,
            seed=args.seed,
            jitter=args.jitter,
            min_tissue=settings.min_tissue,
        )
    table = drive(job, "sample")
    write_patch_table(table, out)
    print(f"wrote {len(table)} patches ({int((table['label'] > 0).sum())} positive) to {out}")
    return 0


def _slide_pairs(inputs: Sequence[str]) -> list[tuple[Path, Path | None]]:
    from ..errors import InputFileError
    from ..io.detect import annotations_beside, detect_kind, slides_in_folder
    from ..io.slides.dicom import series_representative

    pairs: list[tuple[Path, Path | None]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = slides_in_folder(path)
            if not found:
                raise InputFileError(path, "holds no slides")
            pairs.extend(found)
        elif detect_kind(path) == "slide":
            slide = series_representative(path)  # any file of a DICOM-WSI series stands for the series
            pairs.append((slide, annotations_beside(slide)))
        else:
            problem = "no such file" if not path.exists() else "not a slide we read"
            raise InputFileError(path, problem)
    return list(dict.fromkeys(pairs))


def _train(args: argparse.Namespace) -> int:
    if not _is_config(args.inputs):
        raise UsageError(
            "train: give one pipeline configuration file (YAML); to train on a training config alone use "
            "`python -m napari_patchdx.training CONFIG.json OUT_DIR`"
        )
    return _stage_on_config("train", args)


def _infer(args: argparse.Namespace) -> int:
    if _is_config(args.inputs) and not args.checkpoint:
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
    if slides:
        from ..inference.distributed_heatmaps import heatmaps_job
        from ..io.slides.dicom import one_per_series

        slides = one_per_series(slides)

        settings = settings_from_args(InferSettings, args, _INFER_OPTIONS)
        where = settings_from_args(DistributedSettings, args)
        job = heatmaps_job(
            slides,
            [Path(c) for c in args.checkpoint],
            out,
            workers=where.workers,
            scheduler=where.scheduler,
            retries=where.retries,
            device=args.device,
            tta=settings.tta,
            stride=settings.stride,
            batch_size=settings.batch_size,
            min_tissue=settings.min_tissue,
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


def _evaluate(args: argparse.Namespace) -> int:
    if _is_config(args.inputs) and not (args.heatmaps or args.cams):
        return _stage_on_config("evaluate", args)
    from .. import evaluation as ev

    if not args.out:
        raise UsageError("evaluate: give a configuration file, or --out DIR with --heatmaps or --cams")
    settings = settings_from_args(EvaluateSettings, args)
    if args.heatmaps:
        from ..errors import InputFileError

        if not args.inputs:
            raise UsageError("evaluate --heatmaps DIR: name the slides (or their folder)")
        slides = [p for p, _ in _slide_pairs(args.inputs)]
        if not slides:
            raise InputFileError(Path(args.inputs[0]), "no slides")
        job = ev.evaluate_slides_job(
            slides,
            args.heatmaps,
            args.out,
            nms_threshold=settings.nms_threshold,
            nms_radius_um=settings.nms_radius_um,
            level=settings.level,
            mpp=settings.mpp,
            score=settings.score,
            n_boot=settings.n_boot,
            seed=args.seed,
        )
    elif args.cams:
        if not args.cohort:
            raise UsageError("evaluate --cams DIR needs --cohort DIR (labels.csv, lesions.csv)")
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


def _report(args: argparse.Namespace) -> int:
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


# ---------------------------------------------------------------------------------------------------------------
# data commands
# ---------------------------------------------------------------------------------------------------------------


def _synth(args: argparse.Namespace) -> int:
    out = Path(args.out)
    t0 = time.perf_counter()
    if args.kind == "wsi":
        from ..synth.wsi.cohort import make_wsi_cohort
        from ..synth.wsi.slide import make_slide

        if args.large:
            size = args.size or 100_000
            slide = make_slide(
                out / "large_000.tif", height=size, width=size, mpp=args.mpp, seed=args.seed, tissue_fraction=0.002
            )
            print(f"wrote {slide.path} ({size} x {size} px at {args.mpp} um/px)")
        else:
            n = args.n if args.n is not None else 8
            size = args.size or 8192
            cohort = make_wsi_cohort(
                out,
                n_tumor=(n + 1) // 2,
                n_normal=n // 2,
                seed=args.seed,
                height=size,
                width=size,
                mpp=args.mpp,
            )
            print(f"wrote {len(cohort.slides)} slides and {cohort.csv} to {out}")
    else:
        from ..synth.cxr.cohort import make_cxr_cohort

        n = args.n if args.n is not None else 40
        cohort = make_cxr_cohort(out, n=n, seed=args.seed, size=args.size or 1024, dicom=not args.no_dicom)
        print(
            f"wrote {len(cohort.images)} chest X-rays, {cohort.labels_csv.name} and {cohort.lesions_csv.name} to {out}"
        )
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def _info(args: argparse.Namespace) -> int:
    from ..io.detect import detect_kind

    for raw in args.paths:
        path = Path(raw)
        kind = detect_kind(path)
        if kind == "slide":
            from ..io.slides.open import open_slide

            with open_slide(path, mpp=args.mpp) as slide:
                summary = slide.metadata()
        elif kind == "cxr":
            from ..io.cxr.read import read_cxr

            cxr = read_cxr(path)
            summary = {"path": str(path), "shape": list(cxr.image.shape), "spacing_mm": cxr.spacing, **cxr.meta}
        elif kind == "annotations":
            from ..io.annotations.read import read_annotations

            ann = read_annotations(path)
            labels: dict[str, int] = {}
            for region in ann.regions:
                labels[region.label] = labels.get(region.label, 0) + 1
            summary = {"path": str(path), "regions": len(ann.regions), "labels": labels}
        else:
            from ..errors import InputFileError

            problem = "no such file" if not path.exists() else "not a slide, chest X-ray or annotation file we read"
            raise InputFileError(path, problem)
        print(json.dumps(summary, indent=2, default=str))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import DEMO, QUICK, run_demo

    run_demo(Path(args.out), view=args.view, seed=args.seed, sizes=QUICK if args.quick else DEMO)
    return 0


def _froc(args: argparse.Namespace) -> int:
    from ..evaluation.froc_dirs import froc_from_dirs

    result = froc_from_dirs(
        args.detections,
        args.annotations,
        slides_file=args.slides,
        shapes_csv=args.shapes,
        level=args.level,
        mpp=args.mpp,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json_path = result.to_json(out / "froc.json")
    png_path = result.plot(out / "froc.png")
    rates = ", ".join(f"{rate:g}: {sens:.4f}" for rate, sens in result.sensitivity_at.items())
    print(f"FROC score {result.score:.4f} ({result.n_slides} slides, {result.n_lesions} lesions)")
    print(f"sensitivity at FPs per slide {rates}")
    print(f"wrote {json_path} and {png_path}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# the parser
# ---------------------------------------------------------------------------------------------------------------


def _config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", default=None, help="the run directory (default: run_dir in the configuration)")
    p.add_argument("--force", action="store_true", help="re-run the stage even when its artifacts are current")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="napari-patchdx",
        description="Train and run lesion detectors on whole-slide images and chest X-rays.",
        epilog="Exit codes: 0 success, 1 a processing error (names the file), 2 a usage or configuration error, "
        "130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"napari-patchdx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "run",
        help="run the pipeline (sample, train, infer, evaluate, report) on a configuration",
        description="Run sample -> train -> infer -> evaluate -> report over a run directory. Stages whose "
        "artifacts exist and whose settings and inputs are unchanged are skipped; an interrupted stage resumes. "
        "CONFIG is a YAML configuration (see the documentation's configuration reference) or a run's manifest.json "
        "(repeats that run).",
    )
    p.add_argument("config", metavar="CONFIG", help="YAML configuration, or a run's manifest.json")
    _config_options(p)
    p.set_defaults(func=_run)

    p = sub.add_parser(
        "sample",
        help="sample patches: one pipeline stage, or slides / a cohort folder to a patch table",
        description="With CONFIG.yaml: the pipeline's sample stage (splits and patch table in RUN_DIR/sample). "
        "With slides, slide folders or one chest X-ray cohort folder and --out: a patch table (CSV or Parquet).",
    )
    p.add_argument("inputs", nargs="+", metavar="CONFIG | INPUT", help="a configuration, or slides / folders")
    _config_options(p)
    p.add_argument("--out", default=None, help="patch table to write (.csv or .parquet)")
    add_setting_options(p, SampleSettings)
    train = TrainConfig()
    p.add_argument("--patch-size", type=int, default=None, help="patch side, px (slides 299, X-rays 256)")
    p.add_argument("--center-size", type=int, default=None, help="slides: labelled centre region, px (128)")
    p.add_argument("--mpp", type=float, default=train.mpp, help="slides: um per patch pixel (default: level 0)")
    p.add_argument(
        "--jitter", type=float, default=train.jitter, help=f"slides: positional jitter, patch px ({train.jitter})"
    )
    p.add_argument(
        "--working-size",
        type=int,
        default=train.working_size,
        help=f"X-rays: working resolution, px ({train.working_size})",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(func=_sample)

    p = sub.add_parser(
        "train",
        help="train: the pipeline's train stage on a configuration",
        description="The pipeline's train stage on CONFIG.yaml (the sample stage must be done). Stop with Ctrl-C: "
        "a resumable checkpoint is kept and the next run goes on from it.",
    )
    p.add_argument("inputs", nargs="+", metavar="CONFIG", help="the pipeline configuration")
    _config_options(p)
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "infer",
        help="heatmaps / CAMs: one pipeline stage, or checkpoint(s) on slides / X-rays",
        description="With CONFIG.yaml: the pipeline's infer stage. With --checkpoint and --out: tumour heatmaps "
        "of slides (<stem>.heatmap.ome.tif + .json) and probabilities + CAMs of chest X-rays "
        "(<stem>.cam.ome.tif + .json).",
    )
    p.add_argument("inputs", nargs="+", metavar="CONFIG | INPUT", help="a configuration, or slides / folders / X-rays")
    _config_options(p)
    p.add_argument("--checkpoint", action="append", default=[], help="checkpoint (repeat for an ensemble)")
    p.add_argument("--out", default=None, help="output folder")
    add_setting_options(p, InferSettings, _INFER_OPTIONS)
    add_setting_options(p, DistributedSettings)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:<index> or mps (default: auto)")
    p.set_defaults(func=_infer)

    p = sub.add_parser(
        "evaluate",
        help="metrics: one pipeline stage, or heatmaps / CAMs against ground truth",
        description="With CONFIG.yaml: the pipeline's evaluate stage. With --heatmaps DIR --out DIR SLIDES: lesion "
        "points, CAMELYON16 FROC and slide AUC (ground truth beside the slides). With --cams DIR --cohort DIR --out "
        "DIR [IMAGE ...]: X-ray AUROC, sensitivity / specificity and the pointing game.",
    )
    p.add_argument("inputs", nargs="*", metavar="CONFIG | INPUT", help="a configuration, or slides / image ids")
    _config_options(p)
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument("--heatmaps", default=None, help="slides: folder of <stem>.heatmap.ome.tif")
    p.add_argument("--cams", default=None, help="X-rays: folder of <image>.cam.ome.tif")
    p.add_argument("--cohort", default=None, help="X-rays: the cohort folder (labels.csv, lesions.csv)")
    p.add_argument("--checkpoint", default=None, help="X-rays: checkpoint whose Youden thresholds to use")
    add_setting_options(p, EvaluateSettings)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "report",
        help="the HTML report of one or several run directories",
        description="Write the HTML report (plots and thumbnails beside it) of RUN_DIR (default RUN_DIR/report.html) "
        "or of several runs in one page (--out required).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    p.add_argument("--out", default=None, help="the HTML file (default: RUN_DIR/report.html)")
    add_setting_options(p, ReportSettings, ["title"])
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "demo",
        help="both tracks end to end on built-in synthetic cohorts",
        description="Make synthetic slide and chest X-ray cohorts, run the slide track and the X-ray track "
        "(curriculum and baseline) through the pipeline, and write DIR/report.html and DIR/metrics.json.",
    )
    p.add_argument("--out", default="patchdx-demo", help="output folder (default: ./patchdx-demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--view", action="store_true", help="open napari with every layer afterwards")
    p.add_argument("--quick", action="store_true", help="tiny cohorts and a few training steps (about a minute)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("synth", help="write a synthetic cohort (slides or chest X-rays)")
    p.add_argument("kind", choices=["wsi", "cxr"], help="wsi: whole-slide images; cxr: chest X-rays")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=None, help="number of slides (default 8) or images (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--size", type=int, default=None, help="side in pixels (wsi: 8192, cxr: 1024)")
    p.add_argument("--mpp", type=float, default=0.5, help="wsi: level-0 microns per pixel (default: 0.5)")
    p.add_argument("--large", action="store_true", help="wsi: one mostly-background slide (default 100,000 px)")
    p.add_argument("--no-dicom", action="store_true", help="cxr: write PNG only")
    p.set_defaults(func=_synth)

    p = sub.add_parser("info", help="print what napari-patchdx reads from slides, X-rays or annotation files")
    p.add_argument("paths", nargs="+", help="files to describe")
    p.add_argument("--mpp", type=float, default=None, help="override the slide's microns per pixel")
    p.set_defaults(func=_info)

    p = sub.add_parser("froc", help="CAMELYON16 lesion-level FROC of detection CSVs against annotations")
    p.add_argument("--detections", required=True, help="folder of <slide>.csv files (rows probability,X,Y)")
    p.add_argument(
        "--annotations", required=True, help="folder of <slide>.xml / .geojson ground truth (others: normal)"
    )
    p.add_argument("--out", required=True, help="output folder for froc.json and froc.png")
    p.add_argument("--level", type=int, default=5, help="pyramid level of the evaluation mask (default: 5)")
    p.add_argument("--mpp", type=float, default=0.243, help="level-0 microns per pixel (default: 0.243)")
    p.add_argument(
        "--slides",
        default=None,
        help="slide list: one name per line, or a CSV with a 'slide' column (default: the CSVs)",
    )
    p.add_argument(
        "--shapes",
        default=None,
        help="CSV with columns slide,height,width (level-0 px); default: slides.csv in the annotations folder",
    )
    p.set_defaults(func=_froc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-patchdx`` command; returns the exit code.

    Unless the environment says otherwise, OpenMP threads (torch's CPU kernels) wait passively
    (``OMP_WAIT_POLICY=PASSIVE``, read when torch is first imported, which the subcommands do lazily): on a
    machine whose cores are shared with other work, spinning threads made CPU inference up to 10x slower, at a
    cost of a few percent on an idle machine.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, ConfigError) as exc:  # a usage or configuration problem: nothing was done
        print(f"napari-patchdx {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (PatchdxError, OSError) as exc:  # bad input, or a file in the way / unwritable output
        print(f"napari-patchdx {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("napari-patchdx: interrupted", file=sys.stderr)
        return 130
