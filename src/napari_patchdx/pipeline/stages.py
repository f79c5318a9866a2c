"""The five stages of a run (sample, train, infer, evaluate, report) as jobs, and clearing a stage's outputs.

Each stage is a function of a :class:`StageContext` returning a :class:`~napari_patchdx.progress.Job` whose
reports count in units of 1/:data:`SCALE` of the stage and whose result is the list of files it wrote (training:
the files and whether it was stopped). :mod:`napari_patchdx.pipeline.runner` decides which stages run.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .._fsutil import atomic_write_text
from ..errors import InputFileError
from ..io.names import cam_paths, heatmap_paths
from ..progress import SCALE, Job, Progress, relay
from ..sampling.cxr_lesions import CxrLesionSampler, load_cxr_cohort
from ..sampling.job import sample_slides_job
from ..sampling.patches import PatchGeometry
from ..sampling.tables import write_patch_table
from ..training.config import DEFAULT_PATCH_SIZE
from ..training.inputs import TrainData
from ..training.job import train_job
from .config import RunConfig
from .inputs import RunInputs
from .manifest import REPORT_NAME

STAGES: tuple[str, ...] = ("sample", "train", "infer", "evaluate", "report")
"""The stages of a run, in order."""


@dataclass
class StageContext:
    """What every stage works from: the configuration, the run folder, the inputs, the device and ``stop``."""

    config: RunConfig
    run_dir: Path
    inputs: RunInputs
    device: str
    stop: Callable[[], bool] | None


def _sample_stage(ctx: StageContext) -> Job[list[Path]]:
    config, t = ctx.config, ctx.config.training
    out = ctx.run_dir / "sample"
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "name": it.name,
            "split": it.split,
            "label": int(it.positive),
            "path": str(it.path.resolve()),
            "truth": "" if it.truth is None else str(it.truth.resolve()),
            **({"mpp": ctx.inputs.mpp[it.name]["mpp"]} if config.track == "slides" else {}),
        }
        for it in ctx.inputs.items
    ]
    splits_csv = out / "splits.csv"
    atomic_write_text(splits_csv, pd.DataFrame(rows).to_csv(index=False, lineterminator="\n"))
    table_path = out / "patches.csv"
    if config.track == "slides":
        patch = t.patch_size or DEFAULT_PATCH_SIZE["slide"]
        geometry = PatchGeometry(patch, t.center_size or min(128, patch), t.mpp)
        parts = []
        for k, split in enumerate(("train", "val")):
            chosen = ctx.inputs.split(split)
            pairs = [(it.path, it.truth) for it in chosen]
            method = config.sample.method if split == "train" else "balanced"
            n = config.sample.n if split == "train" else t.val_patches
            job = sample_slides_job(
                pairs,
                method=method,
                n=n,
                geometry=geometry,
                seed=config.seed,
                jitter=t.jitter,
                min_tissue=config.sample.min_tissue,
                splits={it.name: split for it in chosen},
                mpp=config.mpp,
            )
            parts.append((yield from relay(job, 0.5 * k, 0.5 * (k + 1), prefix=f"{split} patches: ")))
        write_patch_table(pd.concat(parts, ignore_index=True), table_path)
        return [splits_csv, table_path]
    if config.sample.n == 0:
        return [splits_csv]
    yield Progress(0, SCALE, "reading lesion masks")
    splits = {it.name: it.split for it in ctx.inputs.items}
    sources = [s for s in load_cxr_cohort(ctx.inputs.root, splits) if s.split == "train"]
    sampler = CxrLesionSampler(
        sources,
        patch_size=t.patch_size or min(DEFAULT_PATCH_SIZE["cxr"], t.working_size),
        working_size=t.working_size,
        seed=config.seed,
    )
    chunks = []
    n = config.sample.n
    for start in range(0, n, 64):
        chunks.append(sampler.table(min(64, n - start), start=start))
        done = start + len(chunks[-1])
        yield Progress(int(SCALE * done / n), SCALE, f"sampled {done} of {n} lesion / normal-lung patches")
    write_patch_table(pd.concat(chunks, ignore_index=True), table_path)
    return [splits_csv, table_path]


def _train_stage(ctx: StageContext) -> Job[tuple[list[Path], bool]]:
    config = ctx.config
    out = ctx.run_dir / "train"
    if config.track == "slides":
        data = TrainData(patch_table=str(ctx.run_dir / "sample" / "patches.csv"), mpp=config.mpp)
    else:
        data = TrainData(cxr_root=str(ctx.inputs.root), splits={it.name: it.split for it in ctx.inputs.items})
    if config.track == "slides" and config.training.hard_negatives:
        from ..training.hard_negatives import hard_negative_train_job

        train_slides = [(it.path, it.truth) for it in ctx.inputs.split("train")]
        job = hard_negative_train_job(
            config.training, data, train_slides, out, resume=True, stop=ctx.stop, device=ctx.device
        )
    else:
        job = train_job(config.training, data, out, resume=True, stop=ctx.stop)
    result = yield from relay(job, 0.0, 1.0)
    files = [p for p in sorted(out.iterdir()) if p.is_file() and p.suffix in (".safetensors", ".json", ".csv")]
    return files, bool(result.cancelled)


def _checkpoint(ctx: StageContext) -> Path:
    path = ctx.run_dir / "train" / f"{ctx.config.infer.checkpoint}.safetensors"
    if not path.is_file():
        raise InputFileError(path, "no such checkpoint: the training stage has not written it")
    return path


def _infer_stage(ctx: StageContext) -> Job[list[Path]]:
    config = ctx.config
    out = ctx.run_dir / "infer"
    out.mkdir(parents=True, exist_ok=True)
    items = ctx.inputs.split(*config.infer.splits)
    checkpoint = _checkpoint(ctx)
    if config.track == "slides":
        from ..inference.distributed_heatmaps import heatmaps_job

        job = heatmaps_job(
            [it.path for it in items],
            [checkpoint],
            out,
            device=ctx.device,
            mpp=config.mpp,
            **config.distributed.job_options(),
            **config.infer.heatmap_options(),
        )
        yield from relay(job, 0.0, 1.0)
        return [heatmap_paths(out, it.name)[key] for it in items for key in ("final", "sidecar")]
    from ..inference.xray_job import XrayInput, predict_xrays_job

    job = predict_xrays_job(
        [XrayInput(it.path, it.name) for it in items], checkpoint, out, device=ctx.device, resume=True
    )  # resuming: predictions kept from the last attempt are read back, not recomputed
    yield from relay(job)
    return [cam_paths(out, it.name)[key] for it in items for key in ("final", "sidecar")]


def _evaluate_stage(ctx: StageContext) -> Job[list[Path]]:
    from .. import evaluation as ev

    config = ctx.config
    out = ctx.run_dir / "evaluate"
    out.mkdir(parents=True, exist_ok=True)
    items = ctx.inputs.split(*config.infer.splits)
    settings = config.evaluate
    if config.track == "slides":
        job = ev.evaluate_slides_job(
            [it.path for it in items],
            ctx.run_dir / "infer",
            out,
            annotations={it.name: it.truth for it in items},
            mpp=config.mpp,
            seed=config.seed,
            **settings.slide_options(),
        )
    else:
        from ..models.checkpoint import checkpoint_thresholds

        thresholds = checkpoint_thresholds(_checkpoint(ctx))
        job = ev.evaluate_cxr_job(
            ctx.run_dir / "infer",
            ctx.inputs.root,
            out,
            images=[it.name for it in items],
            thresholds=thresholds,
            n_boot=settings.n_boot,
            seed=config.seed,
        )
    yield from relay(job, 0.0, 1.0)
    return sorted(p for p in out.rglob("*") if p.is_file())


def _report_stage(ctx: StageContext) -> Job[list[Path]]:
    from ..reporting.build import build_report

    yield Progress(0, SCALE, "writing the report")
    path = Path(build_report(ctx.run_dir, ctx.run_dir / REPORT_NAME, title=ctx.config.report.title))
    yield Progress(SCALE, SCALE, f"wrote {path.name}")
    return [path, path.parent / "metrics.json"]


STAGE_JOBS: dict[str, Callable[[StageContext], Job[Any]]] = {
    "sample": _sample_stage,
    "train": _train_stage,
    "infer": _infer_stage,
    "evaluate": _evaluate_stage,
    "report": _report_stage,
}
"""Stage name -> the function making its job; the job returns the files it wrote (training: ``(files, cancelled)``)."""


def _stage_dir(run_dir: Path, stage: str) -> Path | None:
    return None if stage == "report" else run_dir / stage


def clear_stage(run_dir: Path, stage: str) -> None:
    """Delete what ``stage`` wrote into ``run_dir`` (its folder; for the report, the report and its metrics)."""
    folder = _stage_dir(run_dir, stage)
    if folder is not None and folder.exists():
        shutil.rmtree(folder)
    if stage == "report":
        for name in (REPORT_NAME, "metrics.json"):
            with contextlib.suppress(FileNotFoundError):
                (run_dir / name).unlink()
