"""``napari-patchdx retrain RUN_DIR --truth FOLDER`` and ``napari_patchdx.retrain``: numbered rounds on a pipeline
run (round 1, round 2 from round 1's checkpoint, going back to the train stage's), the run's ground truth as the
"before", and errors that name the file or the setting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import napari_patchdx
from napari_patchdx._fsutil import keep_backup
from napari_patchdx.cli import main
from napari_patchdx.io.annotations import AnnotationSet, Region, read_annotations, write_asap_xml, write_geojson
from napari_patchdx.io.names import round_paths
from napari_patchdx.pipeline.runner import run
from napari_patchdx.training.corrections import CorrectionRound

from ..pipeline.test_pipeline import slide_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--epochs", "1", "--steps-per-epoch", "2"]


def disc(y: float, x: float, radius: float, label: str = "normal") -> Region:
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    return Region(np.c_[y + radius * np.sin(t), x + radius * np.cos(t)], label=label)


@pytest.fixture(scope="module")
def slide_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Four 1536 px slides (three with tumour) and a tiny pipeline run whose sample and train stages are done."""
    from napari_patchdx.synth.wsi.cohort import make_wsi_cohort

    root = tmp_path_factory.mktemp("retrain_cli")
    slides = root / "slides"
    make_wsi_cohort(slides, n_tumor=3, n_normal=1, seed=1, height=1536, width=1536, mpp=1.0)
    run(slide_config(slides, root / "run"), stages=("sample", "train"))
    return slides, root / "run"


@pytest.fixture
def run_copy(slide_run: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """The run copied for one test (its rounds stay its own)."""
    slides, run_dir = slide_run
    shutil.copytree(run_dir, tmp_path / "run")
    return slides, tmp_path / "run"


def corrected(slides: Path, name: str, *regions: Region) -> AnnotationSet:
    truth = slides / f"{name}.xml"
    base = read_annotations(truth).regions if truth.is_file() else []
    return AnnotationSet([*base, *regions])


def test_retrain_writes_round_1_then_round_2(run_copy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slides, run_dir = run_copy
    first = tmp_path / "truth1"
    first.mkdir()
    write_asap_xml(corrected(slides, "tumor_002", disc(400, 400, 96)), first / "tumor_002.xml")
    assert main(["retrain", str(run_dir), "--truth", str(first), *FAST]) == 0
    out = capsys.readouterr().out
    assert f"round 1: {round_paths(run_dir, 1)['folder']}" in out and "new checkpoint:" in out
    assert "tumor_002" in out and "false positives per corrected slide" in out
    one = CorrectionRound.read(run_dir, 1)
    assert one is not None and one.status == "complete"
    assert one.start_checkpoint == run_dir / "train" / "best.safetensors"
    assert one.slides["tumor_002"]["corrections"]["normal"] == 1
    assert one.slides["tumor_002"]["corrections"]["tumour"] == 0

    # round 2: another slide corrected (GeoJSON, a missed lesion drawn as tumour too), from round 1's checkpoint
    second = tmp_path / "truth2"
    second.mkdir()
    write_geojson(AnnotationSet([disc(500, 900, 80), disc(760, 900, 60, "tumor")]), second / "normal_000.geojson")
    assert main(["retrain", str(run_dir), "--truth", str(second), *FAST, "--tumour-weight", "2"]) == 0
    two = CorrectionRound.read(run_dir, 2)
    assert two is not None and two.status == "complete" and two.start_checkpoint == one.checkpoint
    assert set(two.slides) == {"normal_000"}
    assert two.slides["normal_000"]["corrections"]["tumour"] == 1
    # the slide corrected in round 1 keeps training with its corrected ground truth
    data = json.loads((round_paths(run_dir, 2)["train"] / "train_manifest.json").read_text())["data"]
    annotations = {Path(s["slide"]).name: s["annotations"] for s in data["slides"]}
    assert annotations["tumor_002.tif"] == str(round_paths(run_dir, 1)["corrections"] / "tumor_002.xml")
    assert annotations["tumor_000.tif"] == str(slides / "tumor_000.xml")  # the run's training slide
    record = json.loads(round_paths(run_dir, 2)["record"].read_text())
    assert record["settings"]["tumour_weight"] == 2.0

    # going back: round 3 starts from the train stage's checkpoint, where round 1's region is new again
    assert main(["retrain", str(run_dir), "--truth", str(first), "--from-round", "0", *FAST]) == 0
    three = CorrectionRound.read(run_dir, 3)
    assert three is not None and three.start_checkpoint == run_dir / "train" / "best.safetensors"
    capsys.readouterr()


def test_retrain_reads_the_runs_truth_from_its_backup(run_copy) -> None:
    """The ground truth beside the slide, saved over (with a backup) in a viewer: the backup is the run's version."""
    slides, run_dir = run_copy
    truth = slides / "tumor_001.xml"
    original = truth.read_bytes()
    try:
        keep_backup(truth)
        write_asap_xml(corrected(slides, "tumor_001", disc(300, 300, 64)), truth)
        result = napari_patchdx.retrain(run_dir, slides, epochs=1, steps_per_epoch=2)
        assert result.number == 1 and set(result.slides) == {"tumor_001"}  # the other slides' truth is unchanged
        assert result.slides["tumor_001"]["corrections"]["normal"] == 1
        truth.with_name("tumor_001.xml.bak").unlink()
        with pytest.raises(napari_patchdx.InputFileError, match=r"tumor_001\.xml: changed since the run"):
            napari_patchdx.retrain(run_dir, slides, from_round=0, epochs=1)  # round 0: the run's own truth
    finally:
        truth.write_bytes(original)
        truth.with_name("tumor_001.xml.bak").unlink(missing_ok=True)


def test_retrain_errors_name_the_problem(run_copy, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slides, run_dir = run_copy
    folder = tmp_path / "truth"
    folder.mkdir()
    assert main(["retrain", str(tmp_path), "--truth", str(folder)]) == 2
    assert "not a napari-patchdx run folder" in capsys.readouterr().err
    assert main(["retrain", str(run_dir), "--truth", str(folder)]) == 2
    assert "holds no ground truth of the run's slides" in capsys.readouterr().err
    shutil.copy(slides / "tumor_002.xml", folder / "tumor_002.xml")  # unchanged
    assert main(["retrain", str(run_dir), "--truth", str(folder)]) == 2
    assert "no slide's ground truth changed" in capsys.readouterr().err
    write_asap_xml(AnnotationSet([disc(50, 50, 20)]), folder / "case_9.xml")
    assert main(["retrain", str(run_dir), "--truth", str(folder)]) == 2
    assert "ground truth of slides the run does not have: case_9.xml" in capsys.readouterr().err
    (folder / "case_9.xml").unlink()
    assert main(["retrain", str(run_dir), "--truth", str(folder), "--fraction", "2"]) == 2
    assert "--fraction must be in (0, 1]" in capsys.readouterr().err
    assert main(["retrain", str(run_dir), "--truth", str(folder), "--from-round", "4"]) == 2
    assert "holds no finished corrections round" in capsys.readouterr().err
    assert main(["retrain", str(run_dir), "--truth", str(tmp_path / "nowhere")]) == 1
    assert "nowhere: no such folder of corrected ground truth" in capsys.readouterr().err
    with pytest.raises(napari_patchdx.ConfigError, match="unknown retrain setting 'fractoin'; did you mean 'fraction'"):
        napari_patchdx.retrain(run_dir, {"tumor_002": slides / "tumor_002.xml"}, fractoin=0.2)
    with pytest.raises(napari_patchdx.ConfigError, match="the run has no slide 'tumor_02'"):
        napari_patchdx.retrain(run_dir, {"tumor_02": slides / "tumor_002.xml"})
    assert not (run_dir / "rounds").exists()  # nothing was written
