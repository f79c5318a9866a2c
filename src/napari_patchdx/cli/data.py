"""The data commands: ``synth`` (synthetic cohorts), ``info`` (what we read from a file), ``froc`` (CAMELYON16 FROC
of detection CSVs) and ``demo`` (both tracks end to end)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .options import UsageError, mpp_from_args


def synth_command(args: argparse.Namespace) -> int:
    """``synth wsi|cxr``: write a synthetic cohort."""
    out = Path(args.out)
    t0 = time.perf_counter()
    if args.kind == "wsi":
        from ..synth.wsi.cohort import make_wsi_cohort
        from ..synth.wsi.slide import make_slide

        if args.large and args.profile != "default":
            raise UsageError("--profile hard writes a cohort; it cannot be combined with --large")
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
                profile=args.profile,
            )
            print(f"wrote {len(cohort.slides)} slides and {cohort.csv} to {out}")
    else:
        if args.profile != "default":
            raise UsageError("--profile is for synth wsi")
        from ..synth.cxr.cohort import make_cxr_cohort

        n = args.n if args.n is not None else 40
        cohort = make_cxr_cohort(out, n=n, seed=args.seed, size=args.size or 1024, dicom=not args.no_dicom)
        print(
            f"wrote {len(cohort.images)} chest X-rays, {cohort.labels_csv.name} and {cohort.lesions_csv.name} to {out}"
        )
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


def info_command(args: argparse.Namespace) -> int:
    """``info PATH ...``: print what napari-patchdx reads from slides, X-rays and annotation files."""
    from ..io.detect import detect_kind

    kinds = {Path(raw): detect_kind(raw) for raw in args.paths}
    mpp = mpp_from_args(args, [p for p, kind in kinds.items() if kind == "slide"])
    for path, kind in kinds.items():
        if kind == "slide":
            from ..io.slides.open import open_slide
            from ..sampling.sources import slide_mpp

            with open_slide(path, mpp=slide_mpp(mpp, path)) as slide:
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


def demo_command(args: argparse.Namespace) -> int:
    """``demo``: both tracks end to end on built-in synthetic cohorts."""
    from .demo import DEMO, QUICK, run_demo

    run_demo(Path(args.out), view=args.view, seed=args.seed, sizes=QUICK if args.quick else DEMO)
    return 0


def froc_command(args: argparse.Namespace) -> int:
    """``froc``: CAMELYON16 lesion-level FROC of detection CSVs against annotations."""
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
