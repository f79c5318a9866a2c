"""Random 299 x 299 region reads: our slide API vs raw OpenSlide, and opening a 100,000 x 100,000 slide.

Run: .venv/bin/python benchmarks/read_regions.py [--size 8192] [--reads 2000] [--large 100000]
Prints a table and, as its last line, one JSON object with ``ratio_vs_openslide`` and ``open_100k_s``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import openslide
import psutil

from napari_patchdx.io.slides.open import open_slide
from napari_patchdx.io.slides.tiff import TiffSlide
from napari_patchdx.layerdata import slide_file_layers
from napari_patchdx.synth.wsi.slide import make_slide


def _time_reads(read, positions: np.ndarray) -> float:
    t0 = time.perf_counter()
    for y, x in positions:
        read(int(y), int(x))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=8192, help="side of the benchmark slide (px)")
    parser.add_argument("--reads", type=int, default=2000, help="random reads per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes per reader (best is kept)")
    parser.add_argument("--large", type=int, default=100_000, help="side of the large slide (px)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the slides (default: temp)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        small = make_slide(work / "bench.tif", height=args.size, width=args.size, mpp=0.5, seed=1)
        make_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        positions = rng.integers(0, args.size - 299, size=(args.reads, 2))

        ours_best = osr_best = nocache_best = float("inf")
        for _ in range(args.repeats):  # alternate so all see the same machine state
            slide = open_slide(small.path)
            ours_best = min(ours_best, _time_reads(lambda y, x, s=slide: s.read_region(y, x, 299, 299), positions))
            slide.close()
            slide = TiffSlide(small.path, cache_bytes=0)  # every read decodes its tiles again
            nocache_best = min(
                nocache_best, _time_reads(lambda y, x, s=slide: s.read_region(y, x, 299, 299), positions)
            )
            slide.close()
            osr = openslide.OpenSlide(str(small.path))
            osr_best = min(osr_best, _time_reads(lambda y, x, o=osr: o.read_region((x, y), 0, (299, 299)), positions))
            osr.close()
        ours_rate = args.reads / ours_best
        nocache_rate = args.reads / nocache_best
        osr_rate = args.reads / osr_best

        t0 = time.perf_counter()
        large = make_slide(
            work / "large.tif", height=args.large, width=args.large, mpp=0.25, seed=2, tissue_fraction=0.002
        )
        make_large_s = time.perf_counter() - t0
        rss0 = psutil.Process().memory_info().rss
        t0 = time.perf_counter()
        layers = slide_file_layers(large.path)
        open_s = time.perf_counter() - t0
        rss_open = (psutil.Process().memory_info().rss - rss0) / 2**20
        levels = len(layers[0][0])

    rows = [
        ("slide", f"{args.size} x {args.size} px synthetic, JPEG tiles 256, made in {make_s:.1f} s"),
        ("ours: reads/s (299 x 299, level 0)", f"{ours_rate:,.0f}"),
        ("ours without tile cache: reads/s", f"{nocache_rate:,.0f}"),
        ("openslide read_region: reads/s", f"{osr_rate:,.0f}"),
        ("ratio ours / openslide", f"{ours_rate / osr_rate:.2f}  (target >= 1.0)"),
        ("large slide", f"{args.large:,} x {args.large:,} px, made in {make_large_s:.1f} s"),
        ("napari layer data for it (s)", f"{open_s:.3f}  ({levels} levels, +{rss_open:.0f} MiB RSS, target < 1 s)"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(
        json.dumps(
            {
                "reads_per_s_ours": round(ours_rate, 1),
                "reads_per_s_ours_no_cache": round(nocache_rate, 1),
                "reads_per_s_openslide": round(osr_rate, 1),
                "ratio_vs_openslide": round(ours_rate / osr_rate, 3),
                "open_100k_s": round(open_s, 4),
                "large_side_px": args.large,
            }
        )
    )


if __name__ == "__main__":
    main()
