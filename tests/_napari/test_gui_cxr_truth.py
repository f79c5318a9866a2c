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


def test_a_docked_widget_takes_the_readers_boxes_layer_or_adds_one(make_napari_viewer, qtbot, cohort) -> None:
    """Opening an X-ray with the widget docked: the widget chooses it while its layers are being inserted and takes
    the boxes layer the reader inserts next, never a second one; an X-ray layer added without boxes gets one after
    the insertion."""
    from napari_patchdx._napari.cxr_truth_widget import XrayTruthWidget

    viewer = make_napari_viewer()
    widget = XrayTruthWidget(viewer)
    xray, truth = _open(viewer, cohort, cohort.images[0])
    assert widget.xray.value == xray.name and widget.truth is truth
    assert [layer.name for layer in viewer.layers] == [xray.name, truth.name]
    viewer.layers.clear()
    image = viewer.add_image(np.asarray(xray.data), name="plain", metadata={"patchdx": dict(xray.metadata["patchdx"])})
    assert widget.xray.value == "plain" and widget.truth is None  # waits for a boxes layer ...
    qtbot.waitUntil(lambda: widget.truth is not None, timeout=5_000)  # ... and adds one after the insertion
    assert [layer.name for layer in viewer.layers] == ["plain", "plain lesion boxes"] and image in viewer.layers
    assert widget.truth.metadata["patchdx"]["image_id"] == cohort.images[0]


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


def test_retrain_with_corrections_in_the_xray_widget(make_napari_viewer, qtbot, tmp_path: Path) -> None:
    """Train (widget) on a tiny cohort -> one box saved, another drawn and left unsaved -> Retrain with corrections:
    the unsaved box is on disk before the round starts, both corrected training images are weighted up (the first
    one although labels.csv.bak no longer holds its old row), round 1 completes, its before -> after is shown and
    the new checkpoint is offered to Run inference."""
    from napari_patchdx._napari.cxr_truth_widget import XrayTruthWidget
    from napari_patchdx._napari.infer_widget import InferenceWidget
    from napari_patchdx._napari.session import session_of
    from napari_patchdx._napari.widgets import TrainWidget
    from napari_patchdx.io.names import round_paths
    from napari_patchdx.synth.cxr.cohort import make_cxr_cohort
    from napari_patchdx.training.xray_corrections import XrayRound

    cohort = make_cxr_cohort(tmp_path / "cxr", n=12, seed=4, size=64, dicom=False)
    # fixed splits (a split column), so the test knows which images train: four validation images, the rest train
    header, *rows = cohort.labels_csv.read_text().splitlines()
    splits = ["val" if k % 3 == 2 else "train" for k in range(len(rows))]
    cohort.labels_csv.write_text(
        "\n".join([f"{header},split", *(f"{r},{s}" for r, s in zip(rows, splits, strict=True))]) + "\n"
    )
    table, classes = read_labels(cohort.root)
    sick = table[list(classes)].astype(int).any(axis=1)
    first, second = table["image"][(table["split"] == "train") & ~sick].tolist()[:2]

    viewer = make_napari_viewer()
    train = TrainWidget(viewer)
    train.source.value = "X-ray cohort folder"
    train.cohort.value = cohort.root
    train.stage.value = "curriculum"
    train.epochs.value = 1
    train.batch_size.value = 8
    train.patch_size.value = 32
    train.working_size.value = 64
    train.device.value = "cpu"
    train.workers.value = 0
    train.out_dir.value = tmp_path / "run"
    train.runner.run_button.clicked.emit()
    qtbot.waitUntil(lambda: train.result is not None or train.runner.status.value.startswith("error"), timeout=120_000)
    assert train.result is not None and train.result.best is not None, train.runner.status.value
    qtbot.waitUntil(lambda: train.runner.worker is None, timeout=30_000)
    infer = InferenceWidget(viewer)
    assert [Path(p) for p in infer.checkpoints.value] == [train.result.best]

    widget = XrayTruthWidget(viewer)
    viewer.window.add_dock_widget(widget)
    retrain = widget.retrain
    assert retrain.checkpoint.value == train.result.best and retrain.run_dir.value == tmp_path / "run"  # from Train
    assert retrain.lr.value == pytest.approx(1e-4) and retrain.epochs.value == 0  # 0: the training's epochs
    xray, truth = _open(viewer, cohort, first)
    widget.xray.value = xray.name
    assert widget.truth is truth  # the docked widget took the reader's boxes layer (no second one)
    widget.draw_class.value = "nodule"
    truth.add_rectangles(np.array([[[20.0, 30.0], [40.0, 50.0]]]))
    assert widget.save() is not None and widget.corrected_images(cohort.root) == [first]
    other, other_truth = _open(viewer, cohort, second)
    widget.xray.value = other.name
    widget.draw_class.value = "consolidation"
    other_truth.add_rectangles(np.array([[[10.0, 10.0], [30.0, 24.0]]]))  # not saved: Retrain saves it

    retrain.epochs.value = 1
    retrain.device.value = "cpu"
    retrain.runner.run_button.clicked.emit()
    assert [b.cls for b in read_lesions(cohort.lesions_csv, classes)[second]] == ["consolidation"]  # on disk first
    qtbot.waitUntil(lambda: retrain.result is not None or retrain.runner.status.value.startswith("error"),
                    timeout=120_000)  # fmt: skip
    assert retrain.result is not None, retrain.runner.status.value
    qtbot.waitUntil(lambda: retrain.runner.worker is None, timeout=30_000)

    result = retrain.result
    assert (result.number, result.status, result.folder) == (1, "complete", tmp_path / "run" / "rounds" / "1")
    assert result.checkpoint == round_paths(tmp_path / "run", 1)["train"] / "best.safetensors"
    assert {i: (v["split"], v["weight"]) for i, v in result.images.items()} == {
        first: ("train", 4),
        second: ("train", 4),
    }
    assert result.images[second]["labels"]["consolidation"] == 1
    view, _ = read_labels(result.folder / "cohort")
    assert view["image"].tolist().count(f"{first}~copy4") == 1 and len(view) == 12 + 2 * 3
    assert XrayRound.read(tmp_path / "run", 1) is not None
    # before -> after shown; the new checkpoint offered to the next round and to Run inference
    summary = retrain.summary.value
    assert summary.startswith(f"round 1 done ({result.folder})") and "validation AUROC" in summary
    assert f"{first} (train, x4): p(nodule) " in summary and f"{second} (train, x4): p(consolidation) " in summary
    assert not retrain.table.native.isHidden() and retrain.table.shape == (2 * len(classes), 4)  # shown, filled
    assert session_of(viewer).get("checkpoint") == result.checkpoint
    assert retrain.checkpoint.value == result.checkpoint
    assert [Path(p) for p in infer.checkpoints.value] == [result.checkpoint]
    assert widget.corrected_images(cohort.root) == []  # the next round compares with this one's tables
