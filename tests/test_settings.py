"""One settings object per stage: its fields are the configuration section, the command's options and the stage
job's defaults (each checked here against the settings object, so a default is named once). The corrections round's
settings (``RetrainSettings``) act on a finished run, not as a pipeline stage: they are the ``retrain`` command's
options and its job's defaults, not a configuration section."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from napari_patchdx.cli import build_parser, main
from napari_patchdx.evaluation.settings import EvaluateSettings
from napari_patchdx.evaluation.slide_files import evaluate_slides, evaluate_slides_job
from napari_patchdx.evaluation.slides import evaluate_slide_inputs_job
from napari_patchdx.evaluation.xrays import evaluate_cxr, evaluate_cxr_job
from napari_patchdx.inference.distributed_heatmaps import heatmaps_job
from napari_patchdx.inference.heatmaps import slide_heatmap_job
from napari_patchdx.inference.settings import DistributedSettings, InferSettings
from napari_patchdx.pipeline.config import SECTIONS, config_reference
from napari_patchdx.reporting.build import build_report
from napari_patchdx.reporting.settings import ReportSettings
from napari_patchdx.sampling.job import sample_slides_job
from napari_patchdx.sampling.settings import SampleSettings
from napari_patchdx.training.corrections import corrections_round_job
from napari_patchdx.training.retrain_settings import RetrainSettings

JOBS: dict[type, list[Callable[..., Any]]] = {
    SampleSettings: [sample_slides_job],
    InferSettings: [slide_heatmap_job],  # heatmaps_job and predict_slides pass these on to it
    DistributedSettings: [heatmaps_job],  # predict_slides passes these on to it
    EvaluateSettings: [evaluate_slides_job, evaluate_slides, evaluate_slide_inputs_job, evaluate_cxr_job, evaluate_cxr],
    ReportSettings: [build_report],
    RetrainSettings: [corrections_round_job],  # retrain / retrain_job pass them on to it
}
"""Each stage's settings object -> the public jobs and functions that take its settings as keyword arguments."""

NOT_SECTIONS: tuple[type, ...] = (RetrainSettings,)
"""Settings objects of commands that act on a finished run (not configuration sections)."""

COMMANDS: dict[str, list[tuple[type, tuple[str, ...]]]] = {
    "sample": [(SampleSettings, ("n", "method", "min_tissue"))],
    "infer": [
        (InferSettings, ("tta", "stride", "batch_size", "min_tissue")),
        (DistributedSettings, ("workers", "scheduler", "retries")),
    ],
    "evaluate": [(EvaluateSettings, ("nms_threshold", "nms_radius_um", "level", "score", "n_boot"))],
    "report": [(ReportSettings, ("title",))],
    "retrain": [(RetrainSettings, tuple(f.name for f in dataclasses.fields(RetrainSettings)))],
}
"""Command -> the settings whose fields are its options."""


def test_every_section_is_a_stage_settings_object_with_help() -> None:
    assert set(SECTIONS.values()) == set(JOBS) - set(NOT_SECTIONS)
    for cls in JOBS:
        for f in dataclasses.fields(cls):
            assert len(f.metadata.get("help", "")) > 10, f"{cls.__name__}.{f.name} has no help text"


@pytest.mark.parametrize("cls", list(JOBS), ids=lambda c: c.__name__)
def test_job_defaults_are_the_settings_defaults(cls: type) -> None:
    defaults = cls()
    for job in JOBS[cls]:
        shared = [n for n in inspect.signature(job).parameters if n in {f.name for f in dataclasses.fields(cls)}]
        assert shared, f"{job.__qualname__} takes none of {cls.__name__}'s settings"
        for name in shared:
            default = inspect.signature(job).parameters[name].default
            assert default == getattr(defaults, name), f"{job.__module__}.{job.__qualname__}({name}=...)"


def test_settings_objects_are_the_jobs_keyword_arguments() -> None:
    """What a stage passes on with ``**settings.<...>_options()`` is exactly parameters of its job."""
    for options, job in (
        (EvaluateSettings().slide_options(), evaluate_slides_job),
        (DistributedSettings().job_options(), heatmaps_job),
        (InferSettings().heatmap_options(), slide_heatmap_job),
        (RetrainSettings().job_options(), corrections_round_job),
    ):
        parameters = inspect.signature(job).parameters
        assert options and set(options) <= set(parameters), job.__qualname__
        assert all(parameters[k].default == v for k, v in options.items()), job.__qualname__
    assert set(EvaluateSettings().slide_options()) == {f.name for f in dataclasses.fields(EvaluateSettings)}
    assert set(RetrainSettings().job_options()) == {f.name for f in dataclasses.fields(RetrainSettings)}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_options_are_the_settings_fields(command: str) -> None:
    options = {a.dest: a for a in _subparser(command)._actions}
    for cls, names in COMMANDS[command]:
        defaults = cls()
        for f in dataclasses.fields(cls):
            if f.name not in names:
                continue
            action = options[f.name]
            assert action.default == getattr(defaults, f.name), f"{command} {action.option_strings}"
            assert f.metadata["help"] in action.help
            want = f"--no-{f.name.replace('_', '-')}" if getattr(defaults, f.name) is True else None
            assert action.option_strings == [want or "--" + f.name.replace("_", "-")]


def test_configuration_reference_lists_each_setting_with_its_default() -> None:
    rows = {r["key"]: r for r in config_reference()}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            row = rows[f"{section}.{f.name}"]
            assert row["help"] == f.metadata["help"]


def test_a_bad_option_value_names_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    heatmaps = tmp_path / "heat"
    heatmaps.mkdir()
    code = main(["evaluate", "--heatmaps", str(heatmaps), "--out", str(tmp_path / "o"), "--score", "mean", "x.tif"])
    err = capsys.readouterr().err
    assert code == 2 and "--score must be 'max' or 'top<k>'" in err and "evaluate.score" not in err
    assert not (tmp_path / "o").exists()  # checked before anything was written
    code = main(["report", str(tmp_path), "--title", " "])
    assert code == 2 and "--title must be a non-empty string" in capsys.readouterr().err
