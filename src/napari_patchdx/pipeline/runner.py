"""Running a pipeline: :func:`run_job` (the checks, then the stages as one job) and :func:`run`.

The runner checks the configuration, the inputs and the run folder, checksums the inputs, skips every stage
whose recorded outputs are current, resumes or re-runs the others, and keeps ``manifest.json`` up to date
(see :mod:`napari_patchdx.pipeline` for the rules).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._config import closest
from ..devices import resolve_device
from ..errors import ConfigError
from ..progress import Job, Progress, Stopped, relay
from ..versions import package_versions
from .config import RunConfig
from .fingerprints import stage_fingerprints
from .inputs import RunInputs, resolve_inputs
from .manifest import (
    CONFIG_NAME,
    MANIFEST_KIND,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    describe_device,
    input_records,
    read_manifest,
    write_manifest,
)
from .results import RunResult, fill_result, read_metrics
from .stages import SCALE, STAGE_JOBS, STAGES, StageContext, clear_stage

# share of the overall progress bar each stage takes
_WEIGHTS = {"sample": 0.08, "train": 0.6, "infer": 0.2, "evaluate": 0.08, "report": 0.04}
# stages that resume an interrupted attempt with the same fingerprint instead of starting over
_RESUMABLE = ("train", "infer")


def _current(entry: Any, fingerprint: str, run_dir: Path) -> bool:
    """A stage's recorded outputs are complete, of this fingerprint, and all still there."""
    if not isinstance(entry, Mapping) or entry.get("status") != "complete" or entry.get("fingerprint") != fingerprint:
        return False
    return all((run_dir / p).exists() for p in entry.get("artifacts", []))


def _check_run_dir(run_dir: Path) -> dict[str, Any] | None:
    """The folder's previous manifest; refuse a folder that holds other things than a run of ours."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir {run_dir} exists and is not a folder")
    if not run_dir.is_dir():
        return None
    manifest = read_manifest(run_dir / MANIFEST_NAME)
    if manifest is None:
        others = [p.name for p in run_dir.iterdir() if p.name != CONFIG_NAME]
        if others:
            raise ConfigError(
                f"run_dir {run_dir} holds files that are not a napari-patchdx run ({', '.join(sorted(others)[:5])}); "
                "choose an empty or new folder"
            )
    return manifest


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _prepare(
    config: RunConfig | Mapping[str, Any] | str | os.PathLike[str], run_dir: str | os.PathLike[str] | None
) -> tuple[RunConfig, Path, Mapping[str, Any] | None]:
    source_manifest = None
    if isinstance(config, str | os.PathLike) and Path(config).is_file():
        source_manifest = read_manifest(Path(config))
    cfg = RunConfig.load(config)
    target = run_dir if run_dir is not None else cfg.run_dir
    if target is None:
        raise ConfigError("say where the run goes: run_dir in the configuration, or run(..., run_dir=DIR)")
    path = Path(target).expanduser().resolve()
    cfg = RunConfig.load(cfg, run_dir=str(path), input=str(Path(cfg.input).expanduser().resolve()))
    return cfg, path, source_manifest


def run_job(
    config: RunConfig | Mapping[str, Any] | str | os.PathLike[str],
    *,
    run_dir: str | os.PathLike[str] | None = None,
    stop: Callable[[], bool] | None = None,
    force: bool = False,
    stages: Sequence[str] | None = None,
) -> Job[RunResult]:
    """The pipeline as a job: a generator of :class:`~napari_patchdx.progress.Progress` returning a
    :class:`RunResult` (what :func:`run`, the command line and the "Run pipeline" widget drive).

    The configuration, the input files, the splits and the run folder are checked when this is called, before
    the job is returned (so errors come before any progress bar); the job then checksums the inputs and runs.

    Progress ``done`` / ``total`` are thousandths of the whole run (stages weighted by their usual cost); the
    message starts with the stage; ``partial`` is ``{"stage": name, "event": "start" | "progress" | "skipped" |
    "done", "data": the stage's own partial result}`` (e.g. the trainer's epoch records).

    Args:
        config: a :class:`RunConfig`, a mapping, a YAML / JSON configuration file or a run's ``manifest.json``.
        run_dir: the run directory (default: the configuration's ``run_dir``).
        stop: polled at every progress report; when it returns True the current stage stops (training saves a
            resumable checkpoint), its state is recorded and the job returns with ``cancelled=True``.
        force: re-run every stage, even those whose artifacts are current.
        stages: run only these stages (default: all); the stages before them must be complete and current.

    Raises:
        ConfigError: invalid settings, missing input files (all listed in one message), unusable splits, a run
            folder holding other files, or (with ``stages``) an earlier stage that is not done.
        InputFileError: an unreadable input.
    """
    cfg, root, source_manifest = _prepare(config, run_dir)
    selected = list(STAGES) if stages is None else [str(s) for s in stages]
    for s in selected:
        if s not in STAGES:
            raise ConfigError(f"unknown stage {s!r}; did you mean {closest(s, STAGES)!r}?")
    last = max(STAGES.index(s) for s in selected)
    inputs = resolve_inputs(cfg)
    device_record = describe_device(cfg.device)
    previous = _check_run_dir(root)
    recorded = (previous or {}).get("stages") or {}
    for s in STAGES[:last]:  # the cheap part of the check now; whether it is current needs the checksums
        if s not in selected and (recorded.get(s) or {}).get("status") != "complete":
            raise _not_done(s, root, selected)
    return _execute(cfg, root, source_manifest, selected, last, inputs, device_record, previous, stop, force)


def _not_done(stage: str, root: Path, selected: Sequence[str]) -> ConfigError:
    later = next(x for x in STAGES[STAGES.index(stage) + 1 :] if x in selected)
    return ConfigError(
        f"the {stage} stage of {root} is not done (or its settings or inputs changed), and {later} needs it: "
        f"run `napari-patchdx {stage} CONFIG` or `napari-patchdx run CONFIG` first"
    )


def _execute(
    cfg: RunConfig,
    root: Path,
    source_manifest: Mapping[str, Any] | None,
    selected: list[str],
    last: int,
    inputs: RunInputs,
    device_record: dict[str, Any],
    previous: dict[str, Any] | None,
    stop: Callable[[], bool] | None,
    force: bool,
) -> Job[RunResult]:
    """The body of :func:`run_job`, after the checks that need no work."""
    yield Progress(0, SCALE, "checking inputs (sha256)", {"stage": "sample", "event": "checksums", "data": None})
    old_inputs = (previous or {}).get("inputs") or (source_manifest or {}).get("inputs") or []
    records = input_records(inputs.files, old_inputs)
    if source_manifest is not None:
        recorded = {r.get("path"): r.get("sha256") for r in source_manifest.get("inputs") or []}
        changed = [r["path"] for r in records if r["path"] in recorded and recorded[r["path"]] != r["sha256"]]
        gone = sorted(set(recorded) - {r["path"] for r in records})
        if changed or gone:
            warnings.warn(
                "repeating a run whose inputs changed since its manifest was written: "
                + "; ".join(
                    [*(f"{p}: checksum differs" for p in changed), *(f"{p}: no longer an input" for p in gone)]
                ),
                UserWarning,
                stacklevel=2,
            )
    fps = stage_fingerprints(cfg, inputs, records)

    for s in STAGES[:last]:
        if s not in selected and not _current(((previous or {}).get("stages") or {}).get(s), fps[s], root):
            raise _not_done(s, root, selected)

    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = dict(previous or {})
    manifest.update(
        {
            "kind": MANIFEST_KIND,
            "format_version": MANIFEST_VERSION,
            "created": manifest.get("created") or _now(),
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "versions": package_versions(),
            "device": device_record,
            "inputs": records,
            "input_bytes": int(sum(r["size"] for r in records)),
            "splits": {it.name: it.split for it in inputs.items},
            "mpp": inputs.mpp,
            "notes": inputs.notes,
        }
    )
    manifest.setdefault("stages", {})
    session: dict[str, Any] = {
        "started": _now(),
        "argv": list(sys.argv),
        "force": bool(force),
        "versions": manifest["versions"],
        "device": device_record["resolved"],
        "stages": {},
        "seconds": {},
    }
    manifest.setdefault("sessions", []).append(session)
    manifest_path = root / MANIFEST_NAME
    cfg.to_yaml(root / CONFIG_NAME)
    write_manifest(manifest_path, manifest)

    ctx = StageContext(cfg, root, inputs, str(resolve_device(cfg.device)), stop)
    result = RunResult(root, cfg.track, cfg, manifest_path, notes=list(inputs.notes))
    base = 0.0
    for s in STAGES:
        weight = _WEIGHTS[s]
        entry = manifest["stages"].get(s)
        action: str
        if s not in selected or STAGES.index(s) > last:
            action = "skipped" if STAGES.index(s) < last else "not run"
        elif s == "report" and not cfg.report.enabled:
            action = "disabled"
        elif not force and _current(entry, fps[s], root):
            action = "skipped"
            yield Progress(
                int(SCALE * (base + weight)), SCALE, f"{s}: up to date, skipped", {"stage": s, "event": "skipped"}
            )
        else:
            resume = (
                not force
                and s in _RESUMABLE
                and isinstance(entry, Mapping)
                and entry.get("fingerprint") == fps[s]
                and entry.get("status") in ("running", "cancelled", "failed")
            )
            if not resume:
                clear_stage(root, s)
            for later in STAGES[STAGES.index(s) + 1 :]:  # their inputs are about to change
                if isinstance(manifest["stages"].get(later), dict):
                    manifest["stages"][later]["status"] = "stale"
            entry = {"fingerprint": fps[s], "status": "running", "started": _now(), "artifacts": []}
            manifest["stages"][s] = entry
            write_manifest(manifest_path, manifest)
            yield Progress(
                int(SCALE * base),
                SCALE,
                f"{s}: {'resuming' if resume else 'starting'}",
                {"stage": s, "event": "start"},
            )
            t0 = time.perf_counter()
            try:
                outcome = yield from _guarded(s, STAGE_JOBS[s](ctx), base, weight, stop)
            except BaseException as exc:
                entry["status"] = "cancelled" if isinstance(exc, GeneratorExit | KeyboardInterrupt) else "failed"
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["seconds"] = round(time.perf_counter() - t0, 3)
                session["stages"][s] = entry["status"]
                session["finished"] = _now()
                if s not in _RESUMABLE:  # nothing half-done stays behind
                    with contextlib.suppress(OSError):
                        clear_stage(root, s)
                with contextlib.suppress(Exception):
                    write_manifest(manifest_path, manifest)
                raise
            seconds = time.perf_counter() - t0
            files, cancelled = outcome
            entry["seconds"] = round(seconds, 3)
            entry["finished"] = _now()
            entry["artifacts"] = [p.resolve().relative_to(root).as_posix() for p in files]
            result.timings[s] = round(seconds, 3)
            session["seconds"][s] = round(seconds, 3)
            if cancelled:
                entry["status"] = "cancelled"
                session["stages"][s] = "cancelled"
                session["finished"] = _now()
                write_manifest(manifest_path, manifest)
                result.stages[s] = "cancelled"
                result.cancelled = True
                for rest in STAGES[STAGES.index(s) + 1 :]:
                    result.stages[rest] = "not run"
                fill_result(result, manifest, root)
                yield Progress(int(SCALE * base), SCALE, f"{s}: stopped", {"stage": s, "event": "cancelled"})
                return result
            entry["status"] = "complete"
            action = "resumed" if resume else "ran"
            if s == "evaluate":
                manifest["metrics"] = read_metrics(root)
            write_manifest(manifest_path, manifest)
            yield Progress(int(SCALE * (base + weight)), SCALE, f"{s}: done", {"stage": s, "event": "done"})
        result.stages[s] = action
        session["stages"][s] = action
        base += weight
    session["finished"] = _now()
    if (root / "evaluate" / "metrics.json").is_file():
        manifest["metrics"] = read_metrics(root)
    write_manifest(manifest_path, manifest)
    fill_result(result, manifest, root)
    yield Progress(SCALE, SCALE, "done", {"stage": None, "event": "finished"})
    return result


def _guarded(
    stage: str, job: Job[Any], base: float, weight: float, stop: Callable[[], bool] | None
) -> Job[tuple[list[Path], bool]]:
    """Forward a stage's reports onto the run's scale; stop it at a report when ``stop()`` says so.

    Returns ``(files, cancelled)``. Training polls ``stop`` itself (it saves a resumable state first).
    """
    try:
        value = yield from relay(
            job,
            base,
            base + weight,
            prefix=f"{stage}: ",
            wrap=lambda data: {"stage": stage, "event": "progress", "data": data},
            stop=None if stage == "train" else stop,
        )
    except Stopped:
        return [], True
    return value if stage == "train" else (value, False)


def run(
    config: RunConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    stop: Callable[[], bool] | None = None,
    force: bool = False,
    stages: Sequence[str] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    **settings: Any,
) -> RunResult:
    """Run the pipeline (sample -> train -> infer -> evaluate -> report) over a run directory; see
    :mod:`napari_patchdx.pipeline` for the layout, the tracks and how stages are skipped.

    Args:
        config: a :class:`RunConfig`, a mapping, a YAML / JSON file, or a run's ``manifest.json`` (repeats that
            run); None: the configuration is given as keyword ``settings`` (``run(track="slides", input=...,
            train={"epochs": 2}, run_dir=...)``).
        run_dir: the run directory (default: the configuration's ``run_dir``; for a manifest, its folder).
        stop: polled at every progress report; True stops the run cleanly (see :func:`run_job`).
        force: re-run every stage.
        stages: run only these stages (the earlier ones must be done).
        on_progress: called with every :class:`~napari_patchdx.progress.Progress` report.
        **settings: configuration keys, when ``config`` is None (or overriding top-level keys of ``config``).

    Returns:
        A :class:`RunResult` with the artifact paths, the metrics and what each stage did; ``result.layers()`` are
        its result layers as napari layer data (in napari's console,
        ``napari_patchdx._napari.viewer.add_run_layers(viewer, result)`` adds them to the viewer).
    """
    from ..progress import run_job as drive

    if config is None:
        if not settings:
            raise ConfigError("run() needs a configuration: a RunConfig, a YAML file, a manifest or keyword settings")
        config = RunConfig.from_dict(settings)
    elif settings:
        config = RunConfig.load(config, **settings)
    return drive(run_job(config, run_dir=run_dir, stop=stop, force=force, stages=stages), on_progress)
