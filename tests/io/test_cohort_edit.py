"""Editing a chest X-ray cohort (io.cohort writers): one image's lesion boxes and labels replaced, every other row kept
byte for byte, backups kept, masks following the boxes, every bad input refused naming the file; and the one rule
between a napari rectangle and a lesions.csv box (layerdata.cxr_truth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_patchdx.errors import InputFileError
from napari_patchdx.io.cohort import (
    LABELS_NAME,
    LESIONS_NAME,
    LesionBox,
    box_pixels,
    cohort_image,
    mask_for_boxes,
    read_labels,
    read_lesions,
    save_image_truth,
    write_cohort_tables,
    write_image_labels,
    write_lesion_boxes,
)
from napari_patchdx.layerdata.cxr_truth import box_rectangle, cxr_truth_layer, layer_boxes, rectangle_box

# CRLF line ends, an id with leading zeros, a quoted cell, an extra column and a last line without a line end
LABELS = (
    "image,nodule,mass,png,dcm,split\r\n"
    "001,1,0,images/001.png,,train\r\n"
    '002,0,1,"images/002.png",images/002.dcm,val\r\n'
    "010,0,0,images/010.png,,train"
)
LESIONS = (
    "image,lesion,class,y0,x0,y1,x1,reader\r\n"
    "001,0,nodule,1,2,10,12.5,ann\r\n"
    "002,0,mass,0,0,5,5,bob\r\n"
    "001,1,mass,3.0,3,4,4,ann\r\n"
)


def _cohort(root: Path, labels: str = LABELS, lesions: str | None = LESIONS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / LABELS_NAME).write_bytes(labels.encode())
    if lesions is not None:
        (root / LESIONS_NAME).write_bytes(lesions.encode())
    return root


def test_lesion_boxes_replace_one_image_and_keep_every_other_byte(tmp_path: Path) -> None:
    root = _cohort(tmp_path / "c")
    written = write_lesion_boxes(root, "001", [("mass", 20, 21, 30, 40.5), LesionBox("x", "nodule", 0, 5, 6, 7, 8)])
    assert written == [root / LESIONS_NAME]
    assert (root / "lesions.csv.bak").read_bytes() == LESIONS.encode()  # the previous file, byte for byte
    text = (root / LESIONS_NAME).read_bytes().decode()
    assert text == (
        "image,lesion,class,y0,x0,y1,x1,reader\r\n"
        "001,0,mass,20,21,30,40.5,\r\n"  # the new rows where the image's first row was, numbered, extra cell empty
        "001,1,nodule,5,6,7,8,\r\n"
        "002,0,mass,0,0,5,5,bob\r\n"  # another image's row: untouched
    )
    _, classes = read_labels(root)
    boxes = read_lesions(root / LESIONS_NAME, classes)
    assert boxes["001"] == [LesionBox("001", "mass", 1, 20, 21, 30, 40.5), LesionBox("001", "nodule", 0, 5, 6, 7, 8)]
    assert boxes["002"] == [LesionBox("002", "mass", 1, 0, 0, 5, 5)]

    # an image without rows gets them at the end; no boxes removes an image's rows; the same boxes write nothing
    assert write_lesion_boxes(root, "010", [("nodule", 1, 1, 2, 2)]) == [root / LESIONS_NAME]
    assert (root / LESIONS_NAME).read_bytes().endswith(b"002,0,mass,0,0,5,5,bob\r\n010,0,nodule,1,1,2,2,\r\n")
    assert write_lesion_boxes(root, "002", []) == [root / LESIONS_NAME]
    assert "002" not in read_lesions(root / LESIONS_NAME, classes)
    before = (root / LESIONS_NAME).read_bytes()
    assert write_lesion_boxes(root, "010", [LesionBox("010", "nodule", 0, 1, 1, 2, 2)]) == []
    assert (root / LESIONS_NAME).read_bytes() == before
    assert (root / LABELS_NAME).read_bytes() == LABELS.encode()  # boxes alone never touch the labels


def test_lesions_csv_is_created_when_absent(tmp_path: Path) -> None:
    root = _cohort(tmp_path / "c", lesions=None)
    assert write_lesion_boxes(root, "010", [("mass", 0, 0, 3, 4)]) == [root / LESIONS_NAME]
    assert (root / LESIONS_NAME).read_text() == "image,lesion,class,y0,x0,y1,x1\n010,0,mass,0,0,3,4\n"
    assert not (root / "lesions.csv.bak").exists()  # there was nothing to keep


def test_image_labels_update_one_row(tmp_path: Path) -> None:
    root = _cohort(tmp_path / "c")
    assert write_image_labels(root, "010", {"mass": True}) == [root / LABELS_NAME]
    assert (root / "labels.csv.bak").read_bytes() == LABELS.encode()
    assert (root / LABELS_NAME).read_bytes().decode() == LABELS.replace(
        "010,0,0,images/010.png,,train", "010,0,1,images/010.png,,train"
    )  # no line end added to the last line, the quoted cell of 002 kept as it was
    table, classes = read_labels(root)
    assert table["image"].tolist() == ["001", "002", "010"]
    assert table[list(classes)].to_numpy().tolist() == [[1, 0], [0, 1], [0, 1]]
    write_image_labels(root, "002", {"nodule": True, "mass": False})
    assert (root / LABELS_NAME).read_bytes().decode().splitlines()[2] == "002,1,0,images/002.png,images/002.dcm,val"
    assert write_image_labels(root, "002", {"nodule": True}) == []  # unchanged: not rewritten


def test_save_image_truth_keeps_classes_with_boxes_present(tmp_path: Path) -> None:
    root = _cohort(tmp_path / "c")
    written = save_image_truth(root, "001", [("mass", 0, 0, 2, 2)], {"nodule": True, "mass": False})
    assert written == [root / LESIONS_NAME, root / LABELS_NAME]
    table, classes = read_labels(root)
    assert table[list(classes)].to_numpy().tolist()[0] == [1, 1]  # mass has a box: present despite the untick
    assert read_lesions(root / LESIONS_NAME, classes)["001"] == [LesionBox("001", "mass", 1, 0, 0, 2, 2)]


def test_bad_edits_name_the_file_and_change_nothing(tmp_path: Path) -> None:
    root = _cohort(tmp_path / "c")
    labels, lesions = root / LABELS_NAME, root / LESIONS_NAME
    cases = [
        (lambda: write_lesion_boxes(root, "999", []), labels, "lists no image '999'"),
        (lambda: write_lesion_boxes(root, "001", [("tumour", 0, 0, 1, 1)]), lesions, "unknown class 'tumour'"),
        (lambda: write_lesion_boxes(root, "001", [("mass", 5, 0, 5, 1)]), lesions, "is empty or not finite"),
        (lambda: write_lesion_boxes(root, "001", [("mass", 0, 0, "a", 1)]), lesions, "needs four numbers"),
        (lambda: write_image_labels(root, "001", {"effusion": True}), labels, "has no class column 'effusion'"),
        (lambda: write_image_labels(root, "003", {"mass": True}), labels, "lists no image '003'"),
        (lambda: save_image_truth(root, "001", [("mass", 0, 0, 1, 1), ("mass", 1, 1, 1, 1)]), lesions, "box 2"),
    ]
    for call, path, message in cases:
        with pytest.raises(InputFileError, match=message) as info:
            call()
        assert info.value.path == path
    assert labels.read_bytes() == LABELS.encode() and lesions.read_bytes() == LESIONS.encode()
    assert not list(root.glob("*.bak"))
    # a broken lesions.csv is refused before it is touched
    lesions.write_text("image,class,y0,x0,y1,x1\n001,nodule,1,1,0,0\n")
    with pytest.raises(InputFileError, match="line 2"):
        write_lesion_boxes(root, "001", [])
    assert lesions.read_text() == "image,class,y0,x0,y1,x1\n001,nodule,1,1,0,0\n"


def test_mask_follows_the_boxes() -> None:
    classes = ("nodule", "mass")
    bits = np.zeros((20, 20), np.uint8)
    bits[2:5, 2:6] = 1  # a nodule, its box (2, 2, 5, 6)
    bits[10:12, 10:12] = 2  # a mass, box (10, 10, 12, 12)
    bits[3, 3] |= 2  # a mass pixel inside the nodule's box, outside every mass box
    boxes = [
        LesionBox("a", "nodule", 0, 1, 1, 6, 7),  # kept (enlarged): the nodule's own outline stays
        LesionBox("a", "mass", 1, 15, 15, 18, 17.9),  # drawn: a new mass covering its box (truncated to pixels)
    ]  # the old mass box is deleted
    out = mask_for_boxes(bits, boxes, classes)
    expected = np.zeros_like(bits)
    expected[2:5, 2:6] = 1
    expected[15:18, 15:17] = 2
    np.testing.assert_array_equal(out, expected)
    assert box_pixels(LesionBox("a", "mass", 1, -3, 2.7, 4.2, 99), (10, 10)) == (slice(0, 4), slice(2, 10))


def test_synthetic_cohort_mask_and_image_lookup(tmp_path: Path) -> None:
    from napari_patchdx.synth.cxr import make_cxr_cohort

    cohort = make_cxr_cohort(tmp_path / "cxr", n=3, seed=0, size=64, dicom=False)
    image = cohort.images[2]
    assert cohort_image(cohort.png_path(image)) == (cohort.root.resolve(), image)
    assert cohort_image(tmp_path / "elsewhere.png") is None
    old = np.asarray(Image.open(cohort.mask_path(image)))
    written = write_lesion_boxes(cohort.root, image, [("nodule", 4, 5, 9, 11)])
    assert written == [cohort.lesions_csv, cohort.mask_path(image)]
    np.testing.assert_array_equal(np.asarray(Image.open(cohort.mask_path(image).with_suffix(".png.bak"))), old)
    expected = np.zeros_like(old)
    expected[4:9, 5:11] = 1  # nodule is bit 0; the image's old lesions are gone with their boxes
    np.testing.assert_array_equal(np.asarray(Image.open(cohort.mask_path(image))), expected)


def test_cohort_tables_written_whole(tmp_path: Path) -> None:
    import pandas as pd

    table = pd.DataFrame({"image": ["001", "002"], "mass": [1.0, 0.0], "nodule": [0, 1], "png": ["/a/1.png", "b.png"],
                          "split": ["train", "val"]})  # fmt: skip
    boxes = {"001": [LesionBox("001", "mass", 0, 1, 2, 3, 4.5)]}
    written = write_cohort_tables(tmp_path / "v", table, ("mass", "nodule"), boxes)
    assert written == [tmp_path / "v" / LABELS_NAME, tmp_path / "v" / LESIONS_NAME]
    assert (tmp_path / "v" / LABELS_NAME).read_text() == (
        "image,mass,nodule,png,split\n001,1,0,/a/1.png,train\n002,0,1,b.png,val\n"
    )
    back, classes = read_labels(tmp_path / "v")
    assert classes == ("mass", "nodule") and back["image"].tolist() == ["001", "002"]
    assert read_lesions(tmp_path / "v" / LESIONS_NAME, classes) == {"001": [LesionBox("001", "mass", 0, 1, 2, 3, 4.5)]}


# --------------------------------------------------------------------------------- napari rectangles <-> boxes


def test_rectangle_and_box_are_one_rule() -> None:
    box = (3, 4, 10, 12)
    rect = box_rectangle(*box)
    np.testing.assert_array_equal(rect, [[2.5, 3.5], [2.5, 11.5], [9.5, 11.5], [9.5, 3.5]])  # pixel centres at i
    assert rectangle_box(rect) == box
    assert rectangle_box(rect[::-1]) == box  # vertex order does not matter
    spacing = (0.4, 0.25)
    assert rectangle_box(rect * np.array(spacing), spacing=spacing) == box  # world millimetres
    # drawn by hand: edges rounded to the nearest pixel edge, clipped to the image; a polygon gives its bounding box
    assert rectangle_box([[2.3, 3.8], [9.6, 11.2]]) == (3, 4, 10, 12)
    assert rectangle_box([[10.0, 10.0], [20.0, 30.0]]) == (11, 11, 21, 31)  # edges at pixel centres: halves up
    assert rectangle_box([[10.0 - 1e-9, 10.0], [20.0, 30.0 - 1e-9]]) == (11, 11, 21, 31)  # also after a round trip
    assert rectangle_box([[-7.0, 49.5], [3.0, 80.0], [1.0, 60.0]], shape=(64, 64)) == (0, 50, 4, 64)
    with pytest.raises(ValueError, match="smaller than a pixel"):
        rectangle_box([[5.0, 5.0], [5.2, 9.0]])
    with pytest.raises(ValueError, match="outside the image"):
        rectangle_box([[70.0, 5.0], [80.0, 9.0]], shape=(64, 64))
    with pytest.raises(ValueError, match=r"box 2 \(mass\)"):
        layer_boxes([rect, rect[:1]], ["nodule", "mass"])


def test_truth_layer_round_trips_lesions_csv(tmp_path: Path) -> None:
    root = _cohort(tmp_path / "c")
    data, kwargs, kind = cxr_truth_layer(root, "001", spacing=(0.5, 0.5), shape=(20, 30), name="001 lesion boxes")
    assert kind == "shapes" and kwargs["name"] == "001 lesion boxes" and kwargs["scale"] == (0.5, 0.5)
    meta = kwargs["metadata"]["patchdx"]
    assert (meta["kind"], meta["role"], meta["image_id"], meta["cohort"]) == ("boxes", "cxr_truth", "001", str(root))
    assert list(kwargs["features"]["class"]) == ["nodule", "mass"]
    assert list(kwargs["features"]["class"].cat.categories) == ["nodule", "mass"]
    assert kwargs["feature_defaults"] == {"class": "nodule"}
    # back through the one rule: the rows of lesions.csv exactly (12.5 is no whole pixel: it rounds to 13 on the way)
    boxes = layer_boxes(data, list(kwargs["features"]["class"]))
    assert boxes == [("nodule", 1, 2, 10, 13), ("mass", 3, 3, 4, 4)]
    empty, kwargs, _ = cxr_truth_layer(root, "010")
    assert empty == [] and len(kwargs["features"]) == 0 and "scale" not in kwargs
