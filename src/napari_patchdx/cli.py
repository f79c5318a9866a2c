"""The ``napari-patchdx`` command.

Exit codes: 0 success, 1 a processing error (a bad input file, missing metadata, ...: the message names the
file and the problem), 2 a usage error, 130 interrupted by the user.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import PatchdxError


def _synth(args: argparse.Namespace) -> int:
    out = Path(args.out)
    t0 = time.perf_counter()
    if args.kind == "wsi":
        from .data.synth_wsi import make_slide, make_wsi_cohort

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
        from .data.synth_cxr import make_cxr_cohort

        n = args.n if args.n is not None else 40
        cohort = make_cxr_cohort(out, n=n, seed=args.seed, size=args.size or 1024, dicom=not args.no_dicom)
        print(
            f"wrote {len(cohort.images)} chest X-rays, {cohort.labels_csv.name} and {cohort.lesions_csv.name} to {out}"
        )
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .io.detect import detect_kind

    for raw in args.paths:
        path = Path(raw)
        kind = detect_kind(path)
        if kind == "slide":
            from .io.slides import open_slide

            with open_slide(path, mpp=args.mpp) as slide:
                summary = slide.metadata()
        elif kind == "cxr":
            from .io.cxr import read_cxr

            cxr = read_cxr(path)
            summary = {"path": str(path), "shape": list(cxr.image.shape), "spacing_mm": cxr.spacing, **cxr.meta}
        elif kind == "annotations":
            from .io.annotations import read_annotations

            ann = read_annotations(path)
            labels: dict[str, int] = {}
            for region in ann.regions:
                labels[region.label] = labels.get(region.label, 0) + 1
            summary = {"path": str(path), "regions": len(ann.regions), "labels": labels}
        else:
            from .errors import InputFileError

            problem = "no such file" if not path.exists() else "not a slide, chest X-ray or annotation file we read"
            raise InputFileError(path, problem)
        print(json.dumps(summary, indent=2, default=str))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), view=args.view, seed=args.seed)
    return 0


def _froc(args: argparse.Namespace) -> int:
    from .evaluate import froc_from_dirs

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="napari-patchdx",
        description="Train and run lesion detectors on whole-slide images and chest X-rays.",
    )
    parser.add_argument("--version", action="version", version=f"napari-patchdx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="run the pipeline on the built-in synthetic cohorts")
    p.add_argument("--out", default="patchdx-demo", help="output folder (default: ./patchdx-demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--view", action="store_true", help="open napari with every layer afterwards")
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
    """Entry point of the ``napari-patchdx`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (PatchdxError, OSError) as exc:  # bad input, or a file in the way / unwritable output
        print(f"napari-patchdx: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("napari-patchdx: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
