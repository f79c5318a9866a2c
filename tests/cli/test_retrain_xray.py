"""``napari-patchdx retrain RUN_DIR`` and ``napari_patchdx.retrain`` on an X-ray pipeline run: the corrections are the
cohort's own lesions.csv / labels.csv (edited in place with .bak files, as the napari widget saves them), compared
with the run's version, then with the starting round's; the corrected training image is weighted up in the round's
view on the run's splits; before -> after printed; errors name the file or the setting."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

import napari_patchdx
from napari_patchdx.cli import main
from napari_patchdx.io.cohort import read_labels, read_lesions, save_image_truth, write_image_labels
from napari_patchdx.io.names import round_paths
from napari_patchdx.pipeline.results import splits_table
from napari_patchdx.pipeline.runner import run
from napari_patchdx.training.xray_corrections import XrayRound, validation_auroc

from ..pipeline.test_pipeline import cxr_config

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore::UserWarning"),  # one-class AUROC warnings of a twelve-image cohort
]

BOX = ("nodule", 10, 12, 30, 36)  # (class, y0, x0, y1, x1): native pixels of a 64 px X-ray


@pytest.fixture
def xray_run(tmp_path: Path) -> tuple[Path, Path]:
    """Twelve 64 px synthetic X-rays and a pipeline run of them whose sample and train stages are done (curriculum,
    one epoch per stage); made per test, since the tests correct the cohort in place."""
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    cohort = make_cxr_cohort(tmp_path / "cxr", n=12, seed=4, size=64, dicom=False).root
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run(cxr_config(cohort, tmp_path / "run"), stages=("sample", "train"))
    return cohort, tmp_path / "run"


def _split(run_dir: Path, split: str, healthy: bool = True) -> str:
    """The first image of ``split`` (healthy: with no class present)."""
    table = splits_table(run_dir)
    rows = table[(table["split"] == split) & ((table["label"] == 0) | (not healthy))]
    return str(rows["name"].iloc[0])


def test_xray_rounds_from_the_cohort_tables(xray_run, capsys: pytest.CaptureFixture[str]) -> None:
    cohort, run_dir = xray_run
    stage_best = run_dir / "train" / "best.safetensors"
    trained, validated = _split(run_dir, "train"), _split(run_dir, "val", healthy=False)
    _, classes = read_labels(cohort)

    # the user draws a nodule on a healthy training image (as the X-ray ground truth widget saves it: .bak kept)
    save_image_truth(cohort, trained, [BOX])
    assert (cohort / "labels.csv.bak").is_file() and (cohort / "lesions.csv.bak").is_file()
    assert main(["retrain", str(run_dir), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert f"round 1: {round_paths(run_dir, 1)['folder']} (started from {stage_best})" in out
    assert "new checkpoint:" in out and "validation AUROC (mean)" in out
    nodule_row = next(line for line in out.splitlines() if line.startswith(trained) and " nodule " in line)
    assert nodule_row.split()[1:5] == ["train", "4", "nodule", "1"] and "->" in nodule_row

    one = XrayRound.read(run_dir, 1)
    assert one is not None and (one.status, one.start_checkpoint) == ("complete", stage_best)
    assert one.checkpoint == round_paths(run_dir, 1)["train"] / "best.safetensors" and one.checkpoint.is_file()
    assert list(one.images) == [trained]
    record = one.images[trained]
    assert (record["split"], record["weight"], record["labels"]["nodule"]) == ("train", 4, 1)
    assert set(record["before"]) == set(record["after"]) == set(classes)
    assert record["before"] != record["after"]
    # before -> after: the validation AUROC each checkpoint's training recorded
    assert one.metrics["val_auroc"]["before"] == validation_auroc(stage_best)
    assert one.metrics["val_auroc"]["after"] == validation_auroc(one.checkpoint)
    assert set(one.metrics["val_auroc"]["after"]) == {*classes, "mean"}

    # the round's view: the corrected training image four times (its box with each copy), on the run's splits
    view = one.folder / "cohort"
    table, _ = read_labels(view)
    ids = table["image"].tolist()
    assert [i for i in ids if i.startswith(trained)] == [trained, *(f"{trained}~copy{k}" for k in (2, 3, 4))]
    assert len(ids) == 12 + 3
    run_splits = {str(r.name): str(r.split) for r in splits_table(run_dir).itertuples(index=False)}
    view_splits = dict(zip(table["image"], table["split"], strict=True))
    assert {i: view_splits[i] for i in run_splits} == run_splits  # validated as the run was
    assert view_splits[f"{trained}~copy4"] == "train"
    boxes = read_lesions(view / "lesions.csv", classes)
    assert [(b.cls, b.y0, b.x0, b.y1, b.x1) for b in boxes[f"{trained}~copy3"]] == [BOX]
    manifest = json.loads((one.folder / "train" / "train_manifest.json").read_text())
    assert manifest["config"]["init_checkpoint"] == str(stage_best)
    assert manifest["config"]["stage"] == "curriculum"  # the run's training: lesion patches, then whole images
    assert manifest["data"]["cxr_root"] == str(view)

    # round 2: a label of a validation image corrected; compared with round 1's tables, so only that image
    labels, _ = read_labels(cohort)
    row = labels[labels["image"] == validated].iloc[0]
    absent = next(c for c in classes if not int(row[c]))
    write_image_labels(cohort, validated, {absent: True})
    two = napari_patchdx.retrain(run_dir, epochs=1)
    assert isinstance(two, XrayRound) and (two.number, two.status) == (2, "complete")
    assert two.start_checkpoint == one.checkpoint
    assert {i: (v["split"], v["weight"]) for i, v in two.images.items()} == {validated: ("val", 1)}

    # nothing changed since round 2: refused, naming the cohort and the tables compared; no round folder left
    assert main(["retrain", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert f"no image of {cohort.resolve()} changed since round 2" in err
    assert str(round_paths(run_dir, 2)["folder"] / "truth" / "labels.csv") in err
    assert not round_paths(run_dir, 3)["folder"].exists()

    # going back to the train stage: labels.csv was saved twice since the run, so its .bak is not the run's version
    assert main(["retrain", str(run_dir), "--from-round", "0"]) == 1
    err = capsys.readouterr().err
    assert f"{cohort / 'labels.csv'}: changed since the run" in err and "--image ID" in err
    # ... then the corrected images are named
    argv = ["retrain", str(run_dir), "--from-round", "0", "--image", trained, "--image", validated, "--epochs", "1"]
    assert main(argv) == 0
    three = XrayRound.read(run_dir, 3)
    assert three is not None and three.status == "complete" and three.start_checkpoint == stage_best
    assert {i: v["weight"] for i, v in three.images.items()} == {trained: 4, validated: 1}
    capsys.readouterr()


def test_xray_retrain_errors_and_a_corrected_copy(xray_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cohort, run_dir = xray_run
    trained = _split(run_dir, "train")
    with pytest.raises(napari_patchdx.ConfigError, match=r"no image of .* changed since the run") as caught:
        napari_patchdx.retrain(run_dir)
    assert f"equal {cohort / 'labels.csv'}, {cohort / 'lesions.csv'}" in str(caught.value)
    assert main(["retrain", str(run_dir), "--fraction", "0.3"]) == 2
    assert "retrain setting 'fraction' applies to slide runs" in capsys.readouterr().err
    with pytest.raises(napari_patchdx.ConfigError, match="give the corrected cohort folder"):
        napari_patchdx.retrain(run_dir, {trained: tmp_path / "x.xml"})
    assert main(["retrain", str(run_dir), "--truth", str(tmp_path)]) == 1
    assert f"{tmp_path / 'labels.csv'}: no such file" in capsys.readouterr().err
    with pytest.raises(napari_patchdx.ConfigError, match="images is empty"):
        napari_patchdx.retrain(run_dir, images=[])
    with pytest.raises(napari_patchdx.ConfigError, match="from_round must be a round number >= 0"):
        napari_patchdx.retrain(run_dir, from_round=-1)
    assert not (run_dir / "rounds").exists()  # nothing was written

    # a corrected copy of the cohort (truth=FOLDER), compared with the run's cohort, which stays as it was
    copy = tmp_path / "corrected"
    shutil.copytree(cohort, copy)
    save_image_truth(copy, trained, [BOX])
    one = napari_patchdx.retrain(run_dir, copy, epochs=1, steps_per_epoch=1)
    assert isinstance(one, XrayRound) and one.status == "complete" and list(one.images) == [trained]
    recorded = json.loads((one.folder / "round.json").read_text())
    assert recorded["cohort"] == str(copy.resolve())
    assert (one.folder / "before" / "labels.csv").read_bytes() == (cohort / "labels.csv").read_bytes()
