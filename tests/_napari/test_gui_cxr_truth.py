"""X-ray ground truth in a real Viewer: an X-ray of a cohort opens with its lesion boxes, boxes drawn in napari and
labels ticked in the "X-ray ground truth" widget are saved into lesions.csv / labels.csv, the curriculum's patch
stage then samples the new box, and Run inference keeps the boxes above the CAMs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from napari_patchdx.io.annotations.model import class_color
from napari_patchdx.io.cohort import LesionBox, read_labels, read_lesions
from napari_patchdx.layerdata.cxr_truth import box_rectangle, rectangle_box

pytestmark = [pytest.mark.gui]


@pytest.fixture
def cohort(tmp_path: Path):
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort

    return make_cxr_cohort(tmp_path / "cxr", n=6, size=128, dicom=False)


def _open(viewer, cohort, image: str) -> list:
    return viewer.open(str(cohort.png_path(image)), plugin="napari-patchdx")


def test_boxes_drawn_in_napari_round_trip_and_feed_the_patch_stage(make_napari_viewer, cohort) -> None:
    from napari_patchdx._napari.cxr_truth_widget import XrayTruthWidget
    from napari_patchdx.progress import run_job
    from napari_patchdx.sampling.job import sample_cxr_job

    table, classes = read_labels(cohort.root)
    lesions = read_lesions(cohort.lesions_csv, classes)
    sick = [i for i in cohort.images if i in lesions]
    image, healthy = sick[0], next(i for i in cohort.images if i not in lesions)
    old = lesions[image]
    labels_before = cohort.labels_csv.read_text().splitlines()
    lesions_before = cohort.lesions_csv.read_text().splitlines()

    viewer = make_napari_viewer()
    xray, truth = _open(viewer, cohort, image)
    assert truth.name == f"{image} lesion boxes" and truth.metadata["patchdx"]["image_id"] == image
    assert tuple(truth.scale) == tuple(xray.scale) and xray.metadata["patchdx"]["spacing"] is not None  # in mm
    assert list(truth.features["class"]) == [b.cls for b in old]
    for shape, box in zip(truth.data, old, strict=True):
        np.testing.assert_allclose(shape, box_rectangle(box.y0, box.x0, box.y1, box.x1))
    other, empty = _open(viewer, cohort, healthy)  # an image without lesions: an empty layer framed like the X-ray
    assert len(empty.data) == 0 and tuple(empty.scale) == tuple(other.scale)

    widget = XrayTruthWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.xray.value = xray.name
    assert widget.truth is truth and list(widget.draw_class.choices) == list(classes)
    row = table[table["image"] == image].iloc[0]
    assert widget.labels() == {c: bool(int(row[c])) for c in classes}

    # draw a nodule box (data coordinates: the X-ray's pixels), delete the old boxes, untick their classes
    widget.draw_class.value = "nodule"
    truth.add_rectangles(np.array([[[20.0, 30.0], [40.0, 60.0]]]))
    assert truth.features["class"].iloc[-1] == "nodule" and widget.labels()["nodule"]  # ticked: it has a box
    np.testing.assert_allclose(truth.edge_color[-1], to_rgba(class_color("nodule")))
    truth.selected_data = set(range(len(old)))
    truth.remove_selected()
    for box in old:
        widget.checks[box.cls].value = False
    written = widget.save()
    assert written is not None and cohort.lesions_csv in written and cohort.labels_csv in written
    assert widget.status.value.startswith(f"saved {image}")

    new_box = rectangle_box(np.array([[20.0, 30.0], [40.0, 60.0]]))
    assert new_box == (21, 31, 41, 61)  # the edges at pixel centres 20 and 40 round up to pixel edges 21 and 41
    table_after, _ = read_labels(cohort.root)
    after = read_lesions(cohort.lesions_csv, classes)
    assert after[image] == [LesionBox(image, "nodule", classes.index("nodule"), *new_box)]
    assert {k: v for k, v in after.items() if k != image} == {k: v for k, v in lesions.items() if k != image}
    row = table_after[table_after["image"] == image].iloc[0]
    assert {c: int(row[c]) for c in classes} == {c: int(c == "nodule") for c in classes}
    # every other row byte for byte, the previous files kept
    assert [r for r in cohort.labels_csv.read_text().splitlines() if not r.startswith(image)] == [
        r for r in labels_before if not r.startswith(image)
    ]
    assert [r for r in cohort.lesions_csv.read_text().splitlines() if not r.startswith(image)] == [
        r for r in lesions_before if not r.startswith(image)
    ]
    assert (cohort.root / "labels.csv.bak").read_text().splitlines() == labels_before
    assert (cohort.root / "lesions.csv.bak").read_text().splitlines() == lesions_before

    # the curriculum's patch stage draws lesion patches from the new box, and none from the deleted lesions
    patches = run_job(sample_cxr_job(cohort.root, n=48, patch_size=32, working_size=128, positive_fraction=1.0))
    mine = patches[patches["slide"] == str(cohort.png_path(image))]
    y0, x0, y1, x1 = new_box
    over = (mine["y"] < y1) & (mine["y"] + mine["size"] > y0) & (mine["x"] < x1) & (mine["x"] + mine["size"] > x0)
    assert (mine["label_nodule"] == 1).any() and (over[mine["label_nodule"] == 1]).all()
    assert all((mine[f"label_{box.cls}"] == 0).all() for box in old if box.cls != "nodule")


def test_widget_errors_are_messages(make_napari_viewer, cohort, tmp_path: Path) -> None:
    from napari_patchdx._napari.cxr_truth_widget import XrayTruthWidget

    stray = tmp_path / "stray.png"
    shutil.copy(cohort.png_path(cohort.images[0]), stray)
    viewer = make_napari_viewer()
    layers = viewer.open(str(stray), plugin="napari-patchdx")
    assert len(layers) == 1  # not in a cohort: no boxes layer
    widget = XrayTruthWidget(viewer)
    widget.xray.value = layers[0].name
    assert widget.status.value.startswith("error:") and "no cohort's labels.csv" in widget.status.value
    assert widget.save() is None and widget.status.value.startswith("error: choose an X-ray of a cohort")

    xray, truth = _open(viewer, cohort, cohort.images[1])
    widget.xray.value = xray.name
    before = cohort.lesions_csv.read_bytes(), cohort.labels_csv.read_bytes()
    truth.add_rectangles(np.array([[[10.0, 10.0], [10.2, 30.0]]]))  # thinner than a pixel
    assert widget.save() is None
    assert "smaller than a pixel" in widget.status.value and "delete or redraw it" in widget.status.value
    assert (cohort.lesions_csv.read_bytes(), cohort.labels_csv.read_bytes()) == before
    assert not (cohort.root / "lesions.csv.bak").exists()


def test_run_inference_puts_the_boxes_above_the_cams(make_napari_viewer, qtbot, cohort, tmp_path: Path) -> None:
    import torch

    from napari_patchdx._napari.infer_widget import InferenceWidget
    from napari_patchdx.models.checkpoint import save_checkpoint
    from napari_patchdx.models.factory import build_model

    _, classes = read_labels(cohort.root)
    torch.manual_seed(0)
    meta = {"classes": list(classes), "input_size": 64, "normalization": {"mode": "standardize"}}
    _, checkpoint = save_checkpoint(tmp_path / "cxr", build_model("small", len(classes), in_channels=1), meta)
    viewer = make_napari_viewer()
    xray, truth = _open(viewer, cohort, cohort.images[0])
    widget = InferenceWidget(viewer)
    widget.xrays.value = [xray.name]
    widget.checkpoints.value = [checkpoint]
    widget.device.value = "cpu"
    widget.out_dir.value = tmp_path / "infer"
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.results is not None and widget.runner.worker is None, timeout=120_000)
    kinds = [layer.metadata["patchdx"]["kind"] for layer in viewer.layers]
    assert kinds == ["cxr", *["cam"] * len(classes), "boxes"] and viewer.layers[-1] is truth  # kept, moved up
    viewer.layers.remove(truth)  # a second run adds the boxes layer back, above the new CAMs
    widget.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.results is not None and widget.runner.worker is None, timeout=120_000)
    top = viewer.layers[-1]
    assert top.name == f"{xray.name} lesion boxes" and top.metadata["patchdx"]["role"] == "cxr_truth"
    assert len(top.data) == len(truth.data)
