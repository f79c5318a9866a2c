"""Slides whose files do not say their microns per pixel go through run() with the configuration's ``mpp``: refused
with a message naming the files and the fix without it; with it, the same patches as slides that carry the value in
their files, every stage using it, the manifest recording it, the fingerprints following it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_patchdx.errors import ConfigError, MissingMetadataError
from napari_patchdx.inference.heatmap_files import read_heatmap
from napari_patchdx.pipeline.config import RunConfig, config_reference
from napari_patchdx.pipeline.fingerprints import stage_fingerprints
from napari_patchdx.pipeline.inputs import resolve_inputs
from napari_patchdx.pipeline.runner import run, run_job
from napari_patchdx.progress import run_job as drive
from napari_patchdx.sampling.sources import SlideSource, check_slide_mpp, slide_mpp
from napari_patchdx.training.config import TrainConfig
from napari_patchdx.training.inputs import TrainData
from napari_patchdx.training.inputs import resolve_inputs as resolve_train_inputs

from ..no_mpp import copy_without_mpp
from .test_pipeline import slide_config

# tiny models: one intra-op thread (see conftest.one_torch_thread)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

MPP = 1.0
NAMES = ("normal_000", "tumor_000", "tumor_001", "tumor_002")


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``with``: three tumour slides and one normal slide, 1536 x 1536 px at 1 um/px said in their files, with ASAP
    XML beside them (as test_pipeline's); ``without``: the same files saying no microns per pixel."""
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

    root = tmp_path_factory.mktemp("mpp")
    make_wsi_cohort(root / "with", n_tumor=3, n_normal=1, seed=1, height=1536, width=1536, mpp=MPP)
    return {"with": root / "with", "without": copy_without_mpp(root / "with", root / "without")}


def test_slides_without_mpp_are_refused_before_any_work(cohorts: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        run_job(slide_config(cohorts["without"], tmp_path / "run"))
    message = str(info.value)
    assert "microns per pixel unknown for 4 slide(s)" in message
    for name in NAMES:  # every slide listed with its file, at once
        assert f"{name}: {cohorts['without'] / name}.tif" in message
    assert "`mpp: <um/px>`" in message and "--mpp" in message and "um/px field" in message
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def mpp_run(cohorts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """run() over the slides without mpp, the configuration giving them 1 um/px."""
    run_dir = tmp_path_factory.mktemp("mpp_run") / "run"
    return run(slide_config(cohorts["without"], run_dir, mpp=MPP))


def test_run_with_the_configurations_mpp(mpp_run, cohorts: dict[str, Path], tmp_path: Path) -> None:
    run_dir = mpp_run.run_dir
    assert all(mpp_run.stages[s] == "ran" for s in ("sample", "train", "infer", "evaluate", "report"))
    assert RunConfig.load(run_dir / "config.yaml").mpp == MPP
    splits = pd.read_csv(run_dir / "sample" / "splits.csv")
    assert sorted(splits["name"]) == list(NAMES) and (splits["mpp"] == MPP).all()
    # the heatmaps and the FROC are at the given microns per pixel
    for name in ("tumor_002", "normal_000"):
        _, grid, _ = read_heatmap(run_dir / "infer" / f"{name}.heatmap.ome.tif")
        assert grid.mpp == MPP
    metrics = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert metrics["froc"]["mpp"] == MPP and metrics["settings"]["mpp_source"] == "argument"
    assert metrics["inputs"]["mpp"] == {n: {"mpp": MPP, "source": "argument"} for n in ("tumor_002", "normal_000")}
    # the known answer: the same patches as the same slides saying 1 um/px in their files
    reference = run(slide_config(cohorts["with"], tmp_path / "ref"), stages=["sample"])
    assert reference.stages["sample"] == "ran"
    ours = pd.read_csv(run_dir / "sample" / "patches.csv")
    theirs = pd.read_csv(tmp_path / "ref" / "sample" / "patches.csv")
    assert len(ours) == 48 + 32
    pd.testing.assert_frame_equal(ours.drop(columns="slide"), theirs.drop(columns="slide"))
    assert [Path(p).name for p in ours["slide"]] == [Path(p).name for p in theirs["slide"]]


def test_manifest_records_each_slides_mpp_and_its_source(mpp_run) -> None:
    manifest = json.loads((mpp_run.run_dir / "manifest.json").read_text())
    assert manifest["config"]["mpp"] == MPP
    assert manifest["mpp"] == {n: {"mpp": MPP, "source": "configuration"} for n in NAMES}


def test_changing_an_override_reruns_the_stages_it_affects(mpp_run, cohorts: dict[str, Path]) -> None:
    run_dir = mpp_run.run_dir
    # the same values as a mapping: nothing changed
    same = {n: MPP for n in NAMES}
    again = run(slide_config(cohorts["without"], run_dir, mpp=same))
    assert set(again.stages.values()) == {"skipped"}
    # another value for the predicted slides only: sampling and training stay, inference and what follows re-run
    moved = {**same, "tumor_002": 0.98, "normal_000": 0.98}
    later = run(slide_config(cohorts["without"], run_dir, mpp=moved))
    assert (later.stages["sample"], later.stages["train"]) == ("skipped", "skipped")
    assert later.stages["infer"] == later.stages["evaluate"] == later.stages["report"] == "ran"
    _, grid, _ = read_heatmap(run_dir / "infer" / "tumor_002.heatmap.ome.tif")
    assert grid.mpp == 0.98 and later.metrics["froc"]["mpp"] == 0.98
    # a training slide's value changes the sample stage's fingerprint, hence every stage's
    fingerprints = []
    for mpp in (moved, {**moved, "tumor_000": 1.01}):
        config = RunConfig.from_dict(slide_config(cohorts["without"], run_dir, mpp=mpp))
        fingerprints.append(stage_fingerprints(config, resolve_inputs(config), []))
    before, after = fingerprints
    assert all(before[s] != after[s] for s in before)


def test_a_given_mpp_is_recorded_and_noted_where_it_overrides_the_file(cohorts: dict[str, Path]) -> None:
    config = RunConfig.from_dict(slide_config(cohorts["with"], Path("unused"), mpp={"tumor_000": 0.5}))
    inputs = resolve_inputs(config)
    assert inputs.mpp["tumor_000"] == {"mpp": 0.5, "source": "configuration"}
    assert inputs.mpp["tumor_001"] == {"mpp": MPP, "source": "file"}
    assert "tumor_000: the configuration's mpp 0.5 um/px overrides the file's 1" in inputs.notes
    plain = resolve_inputs(RunConfig.from_dict(slide_config(cohorts["with"], Path("unused"))))
    assert plain.mpp == {n: {"mpp": MPP, "source": "file"} for n in NAMES} and not plain.notes


@pytest.mark.parametrize(
    ("mpp", "message"),
    [
        (-1, "mpp must be the slides' level-0 microns per pixel: a number > 0 for every slide"),
        ("half", "mpp must be the slides' level-0 microns per pixel"),
        (float("nan"), "mpp must be the slides' level-0 microns per pixel"),
        ({"tumor_000": 0}, "mpp['tumor_000'] must be a finite number > 0.0, got 0"),
        ({}, "mpp: the mapping of slide names to microns per pixel is empty"),
    ],
)
def test_bad_mpp_values_name_the_key(mpp: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"track": "slides", "input": "slides", "mpp": mpp})
    assert message in str(info.value)


def test_unknown_slide_names_and_the_old_evaluate_key_are_refused(cohorts: dict[str, Path]) -> None:
    config = RunConfig.from_dict(slide_config(cohorts["without"], Path("unused"), mpp={"tumr_000": 1.0}))
    with pytest.raises(ConfigError, match=r"mpp names slides that are not among the inputs: tumr_000 \(did you mean "
                       r"'tumor_000'\?\)"):  # fmt: skip
        resolve_inputs(config)
    with pytest.raises(ConfigError, match=r"evaluate\.mpp: .*the top-level 'mpp' gives \(for every stage\); write it"):
        RunConfig.from_dict({"track": "slides", "input": "x", "evaluate": {"mpp": 0.243}})
    # the key is documented, and the X-ray track ignores it
    assert "mpp" in {row["key"] for row in config_reference()}
    assert RunConfig.from_dict({"track": "cxr", "input": "x", "mpp": 0.5}).mpp == 0.5


def test_the_one_rule_and_the_training_data(cohorts: dict[str, Path]) -> None:
    slide = cohorts["without"] / "tumor_000.tif"
    assert slide_mpp(None, slide) is None and slide_mpp(0.5, slide) == 0.5
    assert slide_mpp({"tumor_000": 2.0}, slide) == 2.0 and slide_mpp({"tumor_001": 2.0}, slide) is None
    assert check_slide_mpp({"a": 1}) == {"a": 1.0} and check_slide_mpp(np.float32(0.25)) == 0.25
    # preparing a slide for sampling: the error names the file and the fix; a mapping gives it by name
    with pytest.raises(MissingMetadataError) as info:
        SlideSource.prepare(slide)
    assert str(info.value).startswith(f"{slide}: microns per pixel unknown") and "--mpp" in str(info.value)
    assert SlideSource.prepare(slide, mpp={"tumor_000": MPP}).slide.mpp == MPP
    # the training data: the same rule, round-tripped through JSON
    other = cohorts["without"] / "tumor_001.tif"
    data = TrainData(
        slides=[(slide, slide.with_suffix(".xml"), "train"), (other, other.with_suffix(".xml"), "val")],
        mpp={"tumor_000": MPP, "tumor_001": MPP},
    )
    assert TrainData.from_dict(json.loads(json.dumps(data.to_dict()))).to_dict() == data.to_dict()
    config = TrainConfig(arch="small", patch_size=32, center_size=16, val_patches=4, device="cpu")
    inputs = drive(resolve_train_inputs(config, data, samplers=False))
    assert [s.slide.mpp for s in inputs.train_stream.sources] == [MPP]
    assert inputs.slide_mpp == {str(slide): MPP, str(other): MPP}
    with pytest.raises(MissingMetadataError, match=r"tumor_001\.tif: microns per pixel unknown"):
        drive(resolve_train_inputs(config, TrainData(slides=data.slides, mpp={"tumor_000": MPP}), samplers=False))
    with pytest.raises(ConfigError, match=r"data\.mpp must be the slides' level-0 microns per pixel"):
        TrainData.from_dict({"mpp": "fine"})
