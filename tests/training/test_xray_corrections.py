"""Retraining with corrections, X-ray track (training.xray_corrections), tiny: rounds in <run>/rounds/<k>/, the
corrected images found against the previous state, weighted up in a view of the cohort (both curriculum stages),
fine-tuned from the checkpoint, resumable, never overwritten."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_patchdx.errors import ConfigError
from napari_patchdx.io.cohort import read_labels, read_lesions, save_image_truth, write_image_labels
from napari_patchdx.progress import run_job
from napari_patchdx.training import TrainConfig, TrainData, train
from napari_patchdx.training.xray_corrections import changed_images, xray_corrections_job

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CXR = {
    "track": "cxr",
    "stage": "curriculum",
    "arch": "small",
    "epochs": 1,
    "batch_size": 4,
    "steps_per_epoch": 2,
    "patch_size": 48,
    "working_size": 128,
    "val_patches": 8,
    "num_workers": 0,
    "deterministic": True,
    "device": "cpu",
}
# the synthetic cohort (n=6, seed 0): cxr_0000 pneumothorax, cxr_0001 consolidation, cxr_0002 pleural effusion
SPLITS = {"cxr_0000": "train", "cxr_0001": "train", "cxr_0002": "val", "cxr_0003": "train", "cxr_0004": "train",
          "cxr_0005": "val"}  # fmt: skip


def _quiet(job):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one-class warnings of a six-image cohort
        return run_job(job)


def test_rounds_weight_the_corrected_images_and_resume(tmp_path: Path) -> None:
    from napari_patchdx.sampling.cxr_lesions import CxrLesionSampler, load_cxr_cohort
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    cohort = make_cxr_cohort(tmp_path / "cxr", n=6, size=128, dicom=False)
    root, run = cohort.root, tmp_path / "run"
    config = TrainConfig(**CXR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = train(config, TrainData(cxr_root=root, splits=SPLITS), run / "train")
    assert first.best is not None
    with pytest.raises(ConfigError, match="no earlier state"):  # nothing saved yet: no .bak to compare with
        _quiet(xray_corrections_job(config, root, first.best, run))

    # the user's corrections: a nodule drawn on a healthy training image, a label ticked on a validation image
    save_image_truth(root, "cxr_0003", [("nodule", 20, 30, 44, 60)])
    write_image_labels(root, "cxr_0002", {"pneumothorax": True})
    one = _quiet(xray_corrections_job(config, root, first.best, run, weight=3))
    assert (one.number, one.status, one.folder) == (1, "complete", run / "rounds" / "1")
    assert one.checkpoint == run / "rounds" / "1" / "train" / "best.safetensors" and one.checkpoint.is_file()
    assert {i: (v["split"], v["weight"]) for i, v in one.images.items()} == {
        "cxr_0003": ("train", 3),  # the splits the first run was given (its train_manifest.json)
        "cxr_0002": ("val", 1),  # validation images are corrected, not weighted up
    }
    _, classes = read_labels(root)
    for record in one.images.values():
        assert set(record["before"]) == set(record["after"]) == set(classes)
        assert record["before"] != record["after"]  # the fine-tuned model is another model
    manifest = json.loads((one.folder / "train" / "train_manifest.json").read_text())
    assert manifest["config"]["init_checkpoint"] == str(first.best)
    assert manifest["data"]["cxr_root"] == str(one.folder / "cohort")
    saved = json.loads((one.folder / "round.json").read_text())
    assert saved["status"] == "complete" and saved["images"]["cxr_0003"]["labels"]["nodule"] == 1

    # the weighted view: the corrected training image three times (its box, mask and lungs with each copy)
    view = one.folder / "cohort"
    table, view_classes = read_labels(view)
    assert view_classes == classes
    assert table["image"].tolist() == [
        "cxr_0000", "cxr_0001", "cxr_0002", "cxr_0003", "cxr_0003~copy2", "cxr_0003~copy3", "cxr_0004", "cxr_0005",
    ]  # fmt: skip
    assert dict(zip(table["image"], table["split"], strict=True))["cxr_0003~copy3"] == "train"
    assert len(set(table["png"][table["image"].str.startswith("cxr_0003")])) == 1
    boxes = read_lesions(view / "lesions.csv", classes)
    assert [(b.cls, b.y0, b.x0, b.y1, b.x1) for b in boxes["cxr_0003~copy2"]] == [("nodule", 20, 30, 44, 60)]
    assert (view / "masks" / "cxr_0003~copy3.png").is_file() and (view / "lungs" / "cxr_0003~copy3.png").is_file()
    assert changed_images(one.folder / "truth", one.folder / "before") == ["cxr_0002", "cxr_0003"]
    # the patch stage: negatives pick an image uniformly, so the corrected one is drawn about 3 / 6 of the time
    sources = [s for s in load_cxr_cohort(view) if s.split == "train"]
    sampler = CxrLesionSampler(sources, patch_size=48, working_size=128, positive_fraction=0.0)
    drawn = sampler.table(400)["slide"]
    share = float(np.mean(drawn == str(cohort.png_path("cxr_0003").resolve())))
    assert 0.4 < share < 0.6  # 0.25 unweighted
    nodules = CxrLesionSampler(sources, patch_size=48, working_size=128, positive_fraction=1.0).table(60)
    assert set(nodules.loc[nodules["label_nodule"] == 1, "slide"]) == {str(cohort.png_path("cxr_0003").resolve())}

    # nothing changed since round 1: no round 2 (and no folder left behind)
    with pytest.raises(ConfigError, match="no image's labels or boxes changed"):
        _quiet(xray_corrections_job(config, root, one.checkpoint, run))
    assert not (run / "rounds" / "2").exists()

    # round 2 from round 1's checkpoint, stopped, then resumed in the same folder
    save_image_truth(root, "cxr_0004", [("consolidation", 60, 60, 90, 100)])
    stopped = _quiet(xray_corrections_job(config, root, one.checkpoint, run, stop=lambda: True))
    assert (stopped.number, stopped.status) == (2, "cancelled")
    two = _quiet(xray_corrections_job(config, root, one.checkpoint, run))
    assert (two.number, two.status, list(two.images)) == (2, "complete", ["cxr_0004"])  # against round 1's truth
    assert (two.images["cxr_0004"]["split"], two.images["cxr_0004"]["weight"]) == ("train", 4)  # round 1's splits
    assert two.start_checkpoint == one.checkpoint and two.train is not None and two.train.global_step > 0
    views = [read_labels(r.folder / "cohort")[0]["image"].tolist() for r in (one, two)]
    assert "cxr_0003~copy2" not in views[1] and "cxr_0004~copy4" in views[1]  # each round weights its own
    # a round is never overwritten; the slide track and a bad weight are refused
    with pytest.raises(ConfigError, match="a round is never overwritten"):
        _quiet(xray_corrections_job(config, root, first.best, run, number=1, images=["cxr_0001"]))
    with pytest.raises(ConfigError, match="weight must be an integer >= 1"):
        _quiet(xray_corrections_job(config, root, first.best, run, weight=0))
    with pytest.raises(ConfigError, match="track 'cxr'"):
        _quiet(xray_corrections_job(TrainConfig(arch="small"), root, first.best, run))
