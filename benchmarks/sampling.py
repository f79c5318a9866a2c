"""Sampling and patch-loading speed: positions drawn per second on a 100,000 x 100,000 slide, and patches per
second delivered by our dataset through a DataLoader (2 workers) vs a naive loop of ``openslide.read_region`` over
the same coordinates, without and with augmentation; peak memory.

Run: .venv/bin/python benchmarks/sampling.py [--patches 1500]
Prints a table and, as its last line, one JSON object with ``positions_per_s`` and ``dataset_ratio_vs_naive``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import openslide
from torch.utils.data import DataLoader

from napari_patchdx.sampling.balanced import BalancedSampler
from napari_patchdx.sampling.datasets import PatchTableDataset
from napari_patchdx.sampling.patches import PatchGeometry
from napari_patchdx.sampling.sources import SlideSource
from napari_patchdx.synth.wsi.cohort import make_wsi_cohort
from napari_patchdx.synth.wsi.slide import make_slide
from napari_patchdx.transforms.compose import slide_train_transforms


def _loader_rate(table, transforms, workers: int, batch: int = 64) -> float:
    ds = PatchTableDataset(table, patch_size=299, transforms=transforms, seed=0)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, persistent_workers=False)
    t0 = time.perf_counter()
    n = sum(len(x) for x, _ in loader)
    return n / (time.perf_counter() - t0)


def _naive_rate(table) -> float:
    handles: dict[str, openslide.OpenSlide] = {}
    t0 = time.perf_counter()
    for row in table.itertuples(index=False):
        osr = handles.get(row.slide) or handles.setdefault(row.slide, openslide.OpenSlide(row.slide))
        np.asarray(osr.read_region((int(row.x), int(row.y)), int(row.level), (299, 299)).convert("RGB"))
    return len(table) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patches", type=int, default=1500, help="patches per loading measurement")
    parser.add_argument("--positions", type=int, default=5000, help="positions drawn on the 100k slide")
    parser.add_argument("--large", type=int, default=100_000, help="side of the large slide (px)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cohort = make_wsi_cohort(work / "cohort", n_tumor=3, n_normal=2, height=6144, width=6144, mpp=0.5, seed=4)
        sources = [SlideSource.prepare(s.path, s.annotation_path) for s in cohort.slides]
        table = BalancedSampler(sources, PatchGeometry(299, 128), seed=1).table(args.patches)

        naive = _naive_rate(table)
        ours = _loader_rate(table, None, workers=2)
        ours_aug = _loader_rate(table, slide_train_transforms(), workers=2)
        naive2 = _naive_rate(table)  # again, so both orders of cache warmth are seen
        naive = max(naive, naive2)

        # the 100k slide after the loaders, so their worker processes fork from a small parent
        big = make_slide(work / "big.tif", height=args.large, width=args.large, mpp=0.25, seed=11, tissue_fraction=0.01)
        t0 = time.perf_counter()
        big_source = SlideSource.prepare(big.path, big.annotation_path)
        prepare_s = time.perf_counter() - t0
        sampler = BalancedSampler([big_source], PatchGeometry(299, 128), seed=0)
        t0 = time.perf_counter()
        sampler.table(args.positions)
        positions_per_s = args.positions / (time.perf_counter() - t0)

    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows = [
        ("100k slide: prepare (tissue, tumour grid) s", f"{prepare_s:.2f}"),
        ("100k slide: balanced positions per s", f"{positions_per_s:,.0f}"),
        ("naive openslide.read_region loop, patches/s", f"{naive:,.0f}"),
        ("ours, DataLoader 2 workers, no augmentation, patches/s", f"{ours:,.0f}"),
        ("ratio ours / naive (target >= 1.5)", f"{ours / naive:.2f}"),
        ("ours, DataLoader 2 workers, with augmentation, patches/s", f"{ours_aug:,.0f}"),
        ("peak RSS main / largest worker (MiB)", f"{peak_self:.0f} / {peak_children:.0f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(
        json.dumps(
            {
                "positions_per_s": round(positions_per_s, 1),
                "naive_patches_per_s": round(naive, 1),
                "dataset_patches_per_s": round(ours, 1),
                "dataset_ratio_vs_naive": round(ours / naive, 3),
                "dataset_aug_patches_per_s": round(ours_aug, 1),
                "peak_rss_main_mib": round(peak_self),
                "peak_rss_worker_mib": round(peak_children),
            }
        )
    )


if __name__ == "__main__":
    main()
