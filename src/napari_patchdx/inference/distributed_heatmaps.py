"""Heatmaps of many slides: :func:`heatmaps_job`, one :func:`~napari_patchdx.inference.slide_heatmap_job` per slide,
serially or as one task per slide on a dask cluster (:func:`napari_patchdx.distributed.map_job`).

In a worker the checkpoints are loaded once per process and kept for the following slides (the last ensemble only),
and each worker uses its own GPU (:func:`napari_patchdx.distributed.worker_device`). A heatmap task that is
resubmitted after its worker died resumes from the slide's partial store; see :mod:`napari_patchdx.distributed` for
progress, cancelling, retries and errors.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..distributed import check_device, check_where, map_job, worker_device
from ..errors import ConfigError
from ..io.names import file_name
from ..progress import Job, run_job

_MODEL_CACHE: dict[tuple[Any, ...], list[Any]] = {}
_MODEL_LOCK = threading.Lock()


def _checkpoint_key(path: Path) -> tuple[Any, ...]:
    """Identity of a checkpoint's two files (path, size, mtime) so that a changed file is loaded again."""
    from ..models.checkpoint import checkpoint_paths

    out: list[Any] = []
    for p in checkpoint_paths(path):
        try:
            st = p.stat()
            out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(p), None, None))
    return tuple(out)


def _load_models(models: Sequence[Path], device: str) -> list[Any]:
    """``(model, meta)`` pairs of the checkpoints on ``device``; the last ensemble is kept per process."""
    from ..models.checkpoint import load_checkpoint

    key = (device, *(_checkpoint_key(p) for p in models))
    with _MODEL_LOCK:
        specs = _MODEL_CACHE.get(key)
        if specs is None:
            _MODEL_CACHE.clear()  # one ensemble at a time: bounded memory on long-lived workers
            specs = [load_checkpoint(p, device=device) for p in models]
            _MODEL_CACHE[key] = specs
    return specs


def _heatmap_task(
    slide: Path,
    *,
    models: tuple[Path, ...],
    out_dir: Path,
    device: str,
    torch_threads: int | None,
    kwargs: dict[str, Any],
) -> Any:
    """One slide's heatmap, in a worker: checkpoints from the per-process cache, the worker's own GPU."""
    from . import heatmaps as infer

    if torch_threads:
        import torch

        torch.set_num_threads(torch_threads)
    dev = worker_device(device)
    specs = _load_models(models, dev)
    return run_job(infer.slide_heatmap_job(slide, specs, out_dir, device=dev, **kwargs))


def heatmaps_job(
    slides: Sequence[str | os.PathLike[str]],
    models: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 0,
    scheduler: str | None = None,
    retries: int = 2,
    device: str = "cpu",
    threads_per_worker: int = 1,
    heartbeat: float = 1.0,
    **heatmap_kwargs: Any,
) -> Job[list[Any]]:
    """Tumour-probability heatmaps of several slides: one :func:`~napari_patchdx.inference.slide_heatmap_job` each.

    Each slide's heatmap is written to ``out_dir`` as ``<stem>.heatmap.ome.tif`` + ``<stem>.heatmap.json``
    (a finished heatmap of the same configuration is reused, an interrupted one resumed, unless ``resume=False``).

    Args:
        slides: slide files; their stems must differ (they name the outputs).
        models: checkpoint paths (an ensemble; one path is allowed), loaded in each worker process once and kept
            there for the following slides.
        out_dir: the heatmaps' folder (created).
        workers, scheduler, retries, threads_per_worker, heartbeat: where and how to run, as in :func:`map_job`;
            serially (the default) every band report of each slide is forwarded.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:<index>"``, ``"mps"`` or ``"auto"``, resolved in each worker by
            :func:`worker_device` (several GPUs: one per worker).
        **heatmap_kwargs: passed to :func:`~napari_patchdx.inference.slide_heatmap_job` (``tta``, ``stride``,
            ``batch_size``, ``tissue`` (a :class:`~napari_patchdx.sampling.tissue.TissueConfig`: a ``TissueMask``
            belongs to a single slide), ``min_tissue``, ``resume``, ``mpp``, ``band_rows`` ...).

    Returns a job whose result is the :class:`~napari_patchdx.inference.HeatmapResult` of each slide, in order.

    Raises:
        ConfigError: no slide or no model, two slides with the same stem, a ``TissueMask`` for several slides, an
            unknown keyword, or an invalid setting (see :func:`map_job`).
        InputFileError: a checkpoint is missing or invalid (before anything runs); a slide that cannot be read
            is raised, naming it, after the other slides finished.
    """
    import inspect

    from ..models.checkpoint import read_checkpoint_meta
    from ..sampling.tissue_mask import TissueMask
    from .heatmaps import slide_heatmap_job

    check_where(workers, scheduler, retries, threads_per_worker)
    dev = check_device(device)
    slide_paths = [Path(s) for s in ([slides] if isinstance(slides, str | os.PathLike) else slides)]
    if not slide_paths:
        raise ConfigError("no slide given for the heatmaps")
    seen: dict[str, Path] = {}
    for p in slide_paths:
        stem = file_name(p)
        if stem in seen:
            raise ConfigError(
                f"{seen[stem]} and {p} would both write {stem}.heatmap.ome.tif; give slides distinct names"
            )
        seen[stem] = p
    given = [models] if isinstance(models, str | os.PathLike) else list(models)
    if not given:
        raise ConfigError("no model given for the heatmaps")
    for m in given:
        if not isinstance(m, str | os.PathLike):
            raise ConfigError(f"models must be checkpoint paths (loaded in each worker), got {type(m).__name__}")
        read_checkpoint_meta(m)  # a missing or broken checkpoint fails here, before any work
    model_paths = tuple(Path(m) for m in given)
    allowed = set(inspect.signature(slide_heatmap_job).parameters) - {"slide_path", "models", "out_dir", "device"}
    unknown = sorted(set(heatmap_kwargs) - allowed)
    if unknown:
        raise ConfigError(f"unknown heatmap setting(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    if isinstance(heatmap_kwargs.get("tissue"), TissueMask) and len(slide_paths) > 1:
        raise ConfigError("tissue: a TissueMask belongs to one slide; give a TissueConfig (settings) for several")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def name(path: Path) -> str:
        return path.name

    if workers == 0 and scheduler is None:
        loaded: list[Any] = []

        def one(path: Path) -> Job[Any]:
            resolved = worker_device(dev)
            if not loaded:
                loaded.extend(_load_serial(model_paths, resolved))
            return slide_heatmap_job(path, loaded, out, device=resolved, **heatmap_kwargs)

        return map_job(one, slide_paths, describe=name, heartbeat=heartbeat)

    from functools import partial

    # worker processes of a LocalCluster share this machine's cores: split torch's threads between them
    torch_threads = max(1, (os.cpu_count() or 1) // (workers * threads_per_worker)) if workers else None
    task = partial(
        _heatmap_task, models=model_paths, out_dir=out, device=dev, torch_threads=torch_threads, kwargs=heatmap_kwargs
    )
    return map_job(
        task,
        slide_paths,
        workers=workers,
        scheduler=scheduler,
        retries=retries,
        describe=name,
        threads_per_worker=threads_per_worker,
        heartbeat=heartbeat,
    )


def _load_serial(models: Sequence[Path], device: str) -> list[Any]:
    """The checkpoints for a serial run (not cached: they live as long as the job)."""
    from ..models.checkpoint import load_checkpoint

    return [load_checkpoint(p, device=device) for p in models]


def predict_slides(
    slides: Sequence[str | os.PathLike[str]],
    models: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    **kwargs: Any,
) -> list[Any]:
    """:func:`heatmaps_job` run to its end: the :class:`~napari_patchdx.inference.HeatmapResult` of each slide."""
    return run_job(heatmaps_job(slides, models, out_dir, **kwargs))
