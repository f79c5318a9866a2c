"""The ``napari-patchdx`` argument parser (:func:`build_parser`): every subcommand, its options and its handler
(in :mod:`.stages` and :mod:`.data`)."""

from __future__ import annotations

import argparse

from ..evaluation.settings import EvaluateSettings
from ..inference.settings import HEATMAP_OPTIONS, DistributedSettings, InferSettings
from ..reporting.settings import ReportSettings
from ..sampling.settings import SampleSettings
from ..training.config import TrainConfig
from ..training.retrain_settings import RetrainSettings
from ..versions import __version__
from .data import demo_command, froc_command, info_command, synth_command
from .options import add_mpp_option, add_setting_options
from .stages import (
    evaluate_command,
    infer_command,
    report_command,
    retrain_command,
    run_command,
    sample_command,
    train_command,
)


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
    p.set_defaults(func=run_command)

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
    p.add_argument("--patch-mpp", type=float, default=train.mpp, help="slides: um per patch pixel (default: level 0's)")
    add_mpp_option(p)
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
    p.set_defaults(func=sample_command)

    p = sub.add_parser(
        "train",
        help="train: the pipeline's train stage on a configuration",
        description="The pipeline's train stage on CONFIG.yaml (the sample stage must be done). Stop with Ctrl-C: "
        "a resumable checkpoint is kept and the next run goes on from it.",
    )
    p.add_argument("inputs", nargs="+", metavar="CONFIG", help="the pipeline configuration")
    _config_options(p)
    p.set_defaults(func=train_command)

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
    add_setting_options(p, InferSettings, HEATMAP_OPTIONS)
    add_setting_options(p, DistributedSettings)
    add_mpp_option(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:<index> or mps (default: auto)")
    p.set_defaults(func=infer_command)

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
    add_mpp_option(p, also="the FROC protocol's too (CAMELYON16: 0.243)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    p.set_defaults(func=evaluate_command)

    p = sub.add_parser(
        "report",
        help="the HTML report of one or several run directories",
        description="Write the HTML report (plots and thumbnails beside it) of RUN_DIR (default RUN_DIR/report.html) "
        "or of several runs in one page (--out required).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    p.add_argument("--out", default=None, help="the HTML file (default: RUN_DIR/report.html)")
    add_setting_options(p, ReportSettings, ["title"])
    p.set_defaults(func=report_command)

    p = sub.add_parser(
        "retrain",
        help="retrain a slide or X-ray run with the user's corrections: one numbered corrections round",
        description="Fine-tune RUN_DIR's model (the latest finished round's, or the train stage's) on the user's "
        "corrections and compare the old and the new model; writes RUN_DIR/rounds/<k>/, and an interrupted round "
        "resumes when the command is repeated with the same corrections. Slide runs: patches from the corrected "
        "regions weighted up (normal regions drawn around false positives, new tumour regions), then the corrected "
        "slides re-inferred: false positives per slide, FROC and slide AUC where the ground truth allows, the heatmap "
        "difference. X-ray runs: the corrections are the cohort's lesions.csv / labels.csv as edited in napari (or "
        "with save_image_truth; each save keeps the previous file as .bak); the images whose labels or boxes changed "
        "since the run (or the starting round) are weighted up in training on the run's splits: their class "
        "probabilities and the validation AUROC per class before and after.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run whose sample and train stages are done")
    p.add_argument(
        "--truth",
        default=None,
        help="slide runs (required): folder of the corrected ground truth, <slide>.xml or <slide>.geojson per "
        "corrected slide (level-0 px); X-ray runs: the corrected cohort folder (default: the run's cohort, corrected "
        "in place)",
    )
    p.add_argument(
        "--image",
        dest="images",
        action="append",
        default=None,
        metavar="ID",
        help="X-ray runs: a corrected image (its id in labels.csv; repeat for several). Default: the images whose "
        "labels or boxes differ from the run's (or the starting round's) tables; needed when a table was saved over "
        "more than once since the run (its .bak no longer holds the run's version)",
    )
    p.add_argument(
        "--from-round",
        type=int,
        default=None,
        help="start from this round's checkpoint, 0 for the train stage's (default: the latest finished round)",
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:<index> or mps (default: the run's)")
    p.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="start a new round even when the last one is unfinished with the same corrections",
    )
    add_setting_options(p, RetrainSettings)
    p.set_defaults(func=retrain_command)

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
    p.set_defaults(func=demo_command)

    p = sub.add_parser("synth", help="write a synthetic cohort (slides or chest X-rays)")
    p.add_argument("kind", choices=["wsi", "cxr"], help="wsi: whole-slide images; cxr: chest X-rays")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--n", type=int, default=None, help="number of slides (default 8) or images (default 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--size", type=int, default=None, help="side in pixels (wsi: 8192, cxr: 1024)")
    p.add_argument("--mpp", type=float, default=0.5, help="wsi: level-0 microns per pixel (default: 0.5)")
    p.add_argument("--large", action="store_true", help="wsi: one mostly-background slide (default 100,000 px)")
    p.add_argument("--no-dicom", action="store_true", help="cxr: write PNG only")
    p.add_argument(
        "--profile",
        choices=["default", "hard"],
        default="default",
        help="wsi: default, or hard: tumour mimics, micro-metastases and ITCs, low-contrast tumour, artefacts and "
        "two staining centres (A / B, in slides.csv)",
    )
    p.set_defaults(func=synth_command)

    p = sub.add_parser("info", help="print what napari-patchdx reads from slides, X-rays or annotation files")
    p.add_argument("paths", nargs="+", help="files to describe")
    add_mpp_option(p)
    p.set_defaults(func=info_command)

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
    p.set_defaults(func=froc_command)
    return parser
