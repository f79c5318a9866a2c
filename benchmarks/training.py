"""Training throughput: is the data ever the bottleneck?

Measures, in one run, augmented slide patches per second delivered by the loader alone (PatchTableDataset through
a DataLoader with 2 workers), the pure model step (forward + backward + optimizer step of the small network on
preloaded tensors) and the full training loop (loader feeding the model). On 2 CPU cores loading and compute share
the CPU, so full / pure is reported too. ``--device cuda`` runs the GPU variant (bf16 autocast, channels_last,
pinned memory) for a lent device; its target is full / pure >= 0.9.

Run: .venv/bin/python benchmarks/training.py [--patches 768] [--device cpu|cuda]
Prints a table and, as its last line, one JSON object with ``loader_patches_per_s``, ``model_patches_per_s`` and
``pipeline_ratio`` (loader / model; target >= 1.5).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from napari_patchdx.models.factory import build_model
from napari_patchdx.models.nets import count_parameters
from napari_patchdx.sampling.balanced import BalancedSampler
from napari_patchdx.sampling.datasets import PatchTableDataset, to_float
from napari_patchdx.sampling.patches import PatchGeometry
from napari_patchdx.sampling.sources import SlideSource
from napari_patchdx.synth.wsi.cohort import make_wsi_cohort
from napari_patchdx.transforms.compose import slide_train_transforms


def _step(model, optimizer, loss_fn, x, y, device, amp: bool) -> None:
    x = to_float(x.to(device, non_blocking=True))
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    y = y.to(device, non_blocking=True)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
    with ctx:
        loss = loss_fn(model(x).float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patches", type=int, default=768, help="patches per measurement")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = device.type == "cuda"

    with tempfile.TemporaryDirectory() as tmp:
        cohort = make_wsi_cohort(Path(tmp) / "c", n_tumor=2, n_normal=2, height=4096, width=4096, mpp=0.5, seed=2)
        sources = [SlideSource.prepare(s.path, s.annotation_path) for s in cohort.slides]
        table = BalancedSampler(sources, PatchGeometry(299, 128), seed=0).table(args.patches)
        dataset = PatchTableDataset(table, patch_size=299, transforms=slide_train_transforms(), seed=0)

        def loader() -> DataLoader:
            return DataLoader(
                dataset,
                batch_size=args.batch,
                num_workers=args.workers,
                shuffle=True,
                pin_memory=amp,
                persistent_workers=False,
                drop_last=True,
            )

        t0 = time.perf_counter()
        n = sum(len(x) for x, _ in loader())
        loader_rate = n / (time.perf_counter() - t0)

        model = build_model("small", 1).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.RMSprop(model.parameters(), lr=0.05 * args.batch / 32, alpha=0.9, momentum=0.9, eps=1.0)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        batches = [(x, y) for x, y in loader()]  # preloaded, identical data for the pure step
        _step(model, optimizer, loss_fn, *batches[0], device, amp)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for x, y in batches:
            _step(model, optimizer, loss_fn, x, y, device, amp)
        if device.type == "cuda":
            torch.cuda.synchronize()
        model_rate = sum(len(x) for x, _ in batches) / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        n = 0
        for x, y in loader():
            _step(model, optimizer, loss_fn, x, y, device, amp)
            n += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        full_rate = n / (time.perf_counter() - t0)

    rows = [
        ("device", f"{device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'})"),
        ("model", f"small, {count_parameters(model):,} parameters, 299 x 299 RGB, batch {args.batch}"),
        ("loader alone (augmented), patches/s", f"{loader_rate:,.1f}"),
        ("pure model step on preloaded tensors, patches/s", f"{model_rate:,.1f}"),
        ("full training loop, patches/s", f"{full_rate:,.1f}"),
        ("loader / model (target >= 1.5)", f"{loader_rate / model_rate:.2f}"),
        ("full / pure", f"{full_rate / model_rate:.2f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(
        json.dumps(
            {
                "device": str(device),
                "loader_patches_per_s": round(loader_rate, 1),
                "model_patches_per_s": round(model_rate, 1),
                "full_patches_per_s": round(full_rate, 1),
                "pipeline_ratio": round(loader_rate / model_rate, 3),
                "full_over_pure": round(full_rate / model_rate, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
