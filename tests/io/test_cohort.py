"""A chest X-ray cohort's tables (io.cohort): labels.csv and lesions.csv read back exactly, every bad file refused
with an InputFileError that names the file (and the line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_patchdx.errors import InputFileError
from napari_patchdx.io.cohort import LABELS_NAME, LESIONS_NAME, LesionBox, read_labels, read_lesions

LABELS = "image,nodule,mass,png,dcm,split\n001,1,0,images/001.png,,train\n002,0,1,images/002.png,images/002.dcm,val\n"
LESIONS = "image,lesion,class,y0,x0,y1,x1\n001,0,nodule,1,2,10,12.5\n002,0,mass,0,0,5,5\n001,1,mass,3,3,4,4\n"


def _cohort(root: Path, labels: str = LABELS, lesions: str | None = LESIONS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / LABELS_NAME).write_text(labels, encoding="utf-8")
    if lesions is not None:
        (root / LESIONS_NAME).write_text(lesions, encoding="utf-8")
    return root


def test_good_tables_round_trip(tmp_path: Path) -> None:
    root = _cohort(tmp_path / "c")
    table, classes = read_labels(root)
    assert classes == ("nodule", "mass")
    assert table["image"].tolist() == ["001", "002"]  # ids are text: leading zeros kept, as in lesions.csv
    assert table["png"].tolist() == ["images/001.png", "images/002.png"]
    assert table[list(classes)].to_numpy().tolist() == [[1, 0], [0, 1]]
    assert table["split"].tolist() == ["train", "val"]

    boxes = read_lesions(root / LESIONS_NAME, classes)
    assert boxes == {
        "001": [LesionBox("001", "nodule", 0, 1.0, 2.0, 10.0, 12.5), LesionBox("001", "mass", 1, 3.0, 3.0, 4.0, 4.0)],
        "002": [LesionBox("002", "mass", 1, 0.0, 0.0, 5.0, 5.0)],
    }
    # whitespace around cells and a UTF-8 byte order mark (spreadsheet exports) are tolerated
    (root / LESIONS_NAME).write_text("\ufeffimage, class, y0, x0, y1, x1\n001, nodule, 1, 2, 10, 12.5\n")
    assert read_lesions(root / LESIONS_NAME, classes) == {"001": [LesionBox("001", "nodule", 0, 1, 2, 10, 12.5)]}
    # a header-only table has no boxes
    (root / LESIONS_NAME).write_text("image,class,y0,x0,y1,x1\n")
    assert read_lesions(root / LESIONS_NAME, classes) == {}


def test_synthetic_cohort_reads_back(tmp_path: Path) -> None:
    import csv

    from napari_patchdx.synth.cxr import make_cxr_cohort

    cohort = make_cxr_cohort(tmp_path / "cxr", n=4, seed=3, size=96, dicom=False)
    table, classes = read_labels(cohort.root)
    assert table["image"].tolist() == list(cohort.images)
    boxes = read_lesions(cohort.lesions_csv, classes)
    with open(cohort.lesions_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sum(len(v) for v in boxes.values()) == len(rows) > 0
    for box, row in zip((b for v in boxes.values() for b in v), sorted(rows, key=lambda r: r["image"]), strict=True):
        assert (box.image, box.cls, classes[box.class_index]) == (row["image"], row["class"], row["class"])
        assert (box.y0, box.x0, box.y1, box.x1) == tuple(float(row[k]) for k in ("y0", "x0", "y1", "x1"))


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ("image,nodule\n001,1\n", r"labels\.csv: missing column 'png'"),
        ("png,nodule\nimages/001.png,1\n", r"labels\.csv: missing column 'image'"),
        ("image,png\n001,images/001.png\n", r"labels\.csv: has no class columns"),
        ("image,png,nodule\n001,a.png,1\n002,b.png,2\n", r"labels\.csv: line 3: class 'nodule' is '2'"),
        ("image,png,nodule\n001,a.png,yes\n002,b.png,no\n", r"labels\.csv: line 2: class 'nodule' is 'yes'"),
        ("image,png,nodule\n001,a.png,1\n002,b.png,\n", r"labels\.csv: line 3: class 'nodule' is empty"),
        ("image,png,nodule\n001,a.png,1\n,b.png,0\n", r"labels\.csv: line 3: empty 'image'"),
        ("image,png,nodule\n001,,1\n", r"labels\.csv: line 2: empty 'png'"),
    ],
)
def test_bad_labels_are_refused_naming_the_file(tmp_path: Path, labels: str, match: str) -> None:
    root = _cohort(tmp_path / "c", labels=labels, lesions=None)
    with pytest.raises(InputFileError, match=match) as info:
        read_labels(root)
    assert info.value.path == root / LABELS_NAME


def test_missing_labels_csv(tmp_path: Path) -> None:
    tmp_path.joinpath("c").mkdir()
    with pytest.raises(InputFileError, match=r"labels\.csv: no such file") as info:
        read_labels(tmp_path / "c")
    assert info.value.path == tmp_path / "c" / LABELS_NAME


@pytest.mark.parametrize(
    ("lesions", "match"),
    [
        ("image,class,y0,x0,y1\n001,nodule,1,2,3\n", r"lesions\.csv: missing columns x1 \(has image, class"),
        ("image,class,y0,x0,y1,x1\n001,nodule,1,2,3,4\n001,effusion,1,2,3,4\n", r"line 3: unknown class 'effusion'"),
        ("image,class,y0,x0,y1,x1\n001,nodule,1,2,three,4\n", r"line 2: box coordinates must be numbers"),
        ("image,class,y0,x0,y1,x1\n001,nodule,1,2,3\n", r"line 2: box coordinates must be numbers"),  # short row
        ("image,class,y0,x0,y1,x1\n001,nodule,5,2,5,4\n", r"line 2: box \(5, 2, 5, 4\) is empty"),
        ("image,class,y0,x0,y1,x1\n001,nodule,1,4,3,2\n", r"line 2: box \(1, 4, 3, 2\) is empty"),
        ("image,class,y0,x0,y1,x1\n001,nodule,1,2,inf,4\n", r"line 2: box .* not finite"),
        ("image,class,y0,x0,y1,x1\n,nodule,1,2,3,4\n", r"line 2: empty 'image'"),
    ],
)
def test_bad_lesions_are_refused_naming_the_file_and_line(tmp_path: Path, lesions: str, match: str) -> None:
    root = _cohort(tmp_path / "c", lesions=lesions)
    with pytest.raises(InputFileError, match=match) as info:
        read_lesions(root / LESIONS_NAME, ("nodule", "mass"))
    assert info.value.path == root / LESIONS_NAME
    assert str(info.value).startswith(f"{root / LESIONS_NAME}: ")


def test_missing_or_unreadable_lesions_csv(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file") as info:
        read_lesions(tmp_path / LESIONS_NAME, ("nodule",))
    assert info.value.path == tmp_path / LESIONS_NAME
    (tmp_path / LESIONS_NAME).write_bytes(b"image,class,y0,x0,y1,x1\n\xff\xfe,nodule,1,2,3,4\n")
    with pytest.raises(InputFileError, match="not a readable lesion table") as info:
        read_lesions(tmp_path / LESIONS_NAME, ("nodule",))
    assert info.value.path == tmp_path / LESIONS_NAME
