"""Synthetic chest X-rays: determinism, exact lesion masks, plausible anatomy, and the cohort on disk."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from napari_patchdx import ConfigError, InputFileError, read_cxr
from napari_patchdx.synth.cxr.cohort import make_cxr_cohort
from napari_patchdx.synth.cxr.data_model import CXR_CLASSES, DEFAULT_CONTRAST, CxrCohort, Lesion
from napari_patchdx.synth.cxr.dicom import write_cxr_dicom
from napari_patchdx.synth.cxr.render import render_cxr

SIZE = 256


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> CxrCohort:
    return make_cxr_cohort(tmp_path_factory.mktemp("cxr") / "cohort", n=8, seed=3, size=SIZE)


# --------------------------------------------------------------------------------------------------------------
# render_cxr
# --------------------------------------------------------------------------------------------------------------


def test_render_is_deterministic_by_seed() -> None:
    a, la, ia = render_cxr(7, SIZE, lesions=list(CXR_CLASSES))
    b, lb, ib = render_cxr(7, SIZE, lesions=list(CXR_CLASSES))
    assert a.dtype == np.float32 and a.shape == (SIZE, SIZE)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    np.testing.assert_array_equal(a, b)
    assert [(x.cls, x.box) for x in la] == [(x.cls, x.box) for x in lb]
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x.mask, y.mask)
    assert ia["spacing_mm"] == ib["spacing_mm"]
    c, _, _ = render_cxr(8, SIZE, lesions=list(CXR_CLASSES))
    assert float(np.abs(a - c).mean()) > 0.01


def test_lesions_change_exactly_their_masks() -> None:
    for seed in (1, 2, 3):
        image, lesions, info = render_cxr(seed, SIZE, lesions=list(CXR_CLASSES))
        normal, none, normal_info = render_cxr(seed, SIZE, lesions=[])
        assert none == [] and normal_info["normal"] and not info["normal"]
        assert [les.cls for les in lesions] == list(CXR_CLASSES)
        union = np.zeros((SIZE, SIZE), bool)
        for les in lesions:
            union |= les.mask
            diff = image[les.mask].astype(np.float64) - normal[les.mask]
            assert (diff != 0).mean() > 0.85, les.cls  # nearly every marked pixel changes
            if les.cls == "pneumothorax":
                assert diff.mean() < -0.01  # darker: air without lung markings
            else:
                assert diff.mean() > 0.005, les.cls  # opacities are brighter
        np.testing.assert_array_equal(image[~union], normal[~union])  # nothing else changes
        np.testing.assert_array_equal(info["lung_mask"], normal_info["lung_mask"])


def test_masks_lie_in_their_boxes_and_in_the_lungs() -> None:
    for seed in range(6):
        image, lesions, info = render_cxr(seed, SIZE, lesions=["nodule", "pleural_effusion", "pneumothorax"])
        r = info["mask_dilation_px"] + info["lung_edge_px"]
        near_lung = ndimage.binary_dilation(info["lung_mask"], np.ones((2 * r + 1, 2 * r + 1), bool))
        for les in lesions:
            assert isinstance(les, Lesion) and les.cls in CXR_CLASSES
            assert les.mask.shape == image.shape and les.mask.dtype == bool
            y0, x0, y1, x1 = les.box
            assert 0 <= y0 < y1 <= SIZE and 0 <= x0 < x1 <= SIZE
            rows, cols = np.nonzero(les.mask)
            assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == les.box  # tight, half-open
            assert not (les.mask & ~near_lung).any()
        effusion = next(les for les in lesions if les.cls == "pleural_effusion")
        nodule = next(les for les in lesions if les.cls == "nodule")
        assert (effusion.box[0] + effusion.box[2]) / 2 > (nodule.box[0] + nodule.box[2]) / 2 - SIZE * 0.2
        assert effusion.box[2] > SIZE * 0.55  # at the lung base


def test_random_findings_are_about_half_normal_and_multilabel() -> None:
    draws = [render_cxr(seed, 64)[2] for seed in range(60)]
    normal = sum(info["normal"] for info in draws)
    assert 18 <= normal <= 42
    assert any(sum(info["labels"].values()) >= 2 for info in draws)
    assert {c for info in draws for c, v in info["labels"].items() if v} == set(CXR_CLASSES)


def test_anatomy_is_plausible() -> None:
    for seed in range(8):
        image, _, info = render_cxr(seed, SIZE, lesions=[])
        lung = info["lung_mask"]
        n = SIZE
        # Two lung fields, the patient's right one (image left) larger: the heart takes room on the left.
        left, right = lung[:, : n // 2].sum(), lung[:, n // 2 :].sum()
        assert 0.04 * n * n < right < left < 0.2 * n * n
        # Lungs are darker than the mediastinum / spine column in the middle.
        central = image[int(0.2 * n) : int(0.6 * n), int(0.47 * n) : int(0.53 * n)].mean()
        assert image[lung].mean() + 0.2 < central
        # The heart shadow lies to the image's right of the midline, lung to its left, at the same level.
        rows = slice(int(0.55 * n), int(0.68 * n))
        assert image[rows, int(0.56 * n) : int(0.64 * n)].mean() > image[rows, int(0.36 * n) : int(0.44 * n)].mean()
        # Diaphragm: the abdomen below the lung bases is bright.
        assert image[int(0.9 * n) :, int(0.3 * n) : int(0.7 * n)].mean() > image[lung].mean() + 0.2
        assert 300 / n < info["spacing_mm"][0] < 460 / n


def test_contrast_parameter_scales_the_lesion() -> None:
    faint, lf, _ = render_cxr(4, SIZE, lesions=["nodule"], contrast={"nodule": 0.04})
    strong, ls, _ = render_cxr(4, SIZE, lesions=["nodule"], contrast={"nodule": 0.2})
    normal, _, _ = render_cxr(4, SIZE, lesions=[])
    np.testing.assert_array_equal(lf[0].mask, ls[0].mask)
    m = lf[0].mask
    assert (strong[m] - normal[m]).mean() > 2 * (faint[m] - normal[m]).mean() > 0
    assert set(DEFAULT_CONTRAST) == set(CXR_CLASSES)


def test_render_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="unknown lesion class"):
        render_cxr(0, 64, lesions=["tumour"])
    with pytest.raises(ConfigError, match="unknown lesion class"):
        render_cxr(0, 64, contrast={"mass": 0.1})
    with pytest.raises(ConfigError, match="size"):
        render_cxr(0, 16)
    with pytest.raises(ConfigError, match="seed"):
        render_cxr(-1, 64)


# --------------------------------------------------------------------------------------------------------------
# DICOM writer
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        {"modality": "DX", "monochrome1": True, "bits_stored": 12, "window": "LINEAR"},
        {"modality": "CR", "monochrome1": True, "bits_stored": 14, "rescale": (2.0, -4096.0), "window": "MULTI"},
        {"modality": "DX", "bits_stored": 16, "rescale": (0.5, 0.0), "window": "LINEAR_EXACT"},
        {"modality": "CR", "bits_stored": 15, "rescale": (1.0, -1024.0), "spacing_tag": "ImagerPixelSpacing"},
        {"modality": "DX", "bits_stored": 12, "spacing_tag": "ImagerPixelSpacing/ERMF", "magnification": 1.15},
    ],
)
def test_write_cxr_dicom_variants_read_back(tmp_path: Path, variant: dict) -> None:
    image, _, info = render_cxr(9, 96, lesions=["consolidation"])
    spacing = info["spacing_mm"][0]
    path = write_cxr_dicom(tmp_path / "x.dcm", image, spacing_mm=spacing, uid_entropy=["t", "x"], **variant)
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID in ("1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1")
    assert ds.Modality == variant["modality"] and ds.BitsStored == variant["bits_stored"]
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    cxr = read_cxr(path)
    step = 1.0 / (2 ** variant["bits_stored"] - 1)
    np.testing.assert_allclose(cxr.image, image, atol=step / 2 + 1e-6)
    assert cxr.spacing == pytest.approx((spacing, spacing), rel=1e-5)
    assert cxr.meta["inverted"] is bool(variant.get("monochrome1", False))


# --------------------------------------------------------------------------------------------------------------
# make_cxr_cohort
# --------------------------------------------------------------------------------------------------------------


def test_cohort_files_and_tables(cohort: CxrCohort) -> None:
    root = cohort.root
    assert cohort.images == tuple(f"cxr_{i:04d}" for i in range(8))
    labels = read_csv(cohort.labels_csv)
    lesions = read_csv(cohort.lesions_csv)
    with open(cohort.labels_csv) as f:
        assert f.readline().strip().split(",") == ["image", *CXR_CLASSES, "png", "dcm"]
    with open(cohort.lesions_csv) as f:
        assert f.readline().strip().split(",") == ["image", "lesion", "class", "y0", "x0", "y1", "x1"]
    assert [row["image"] for row in labels] == list(cohort.images)
    assert sum(all(row[c] == "0" for c in CXR_CLASSES) for row in labels) == 4
    for row in labels:
        image_id = row["image"]
        assert (root / row["png"]).is_file() and (root / row["dcm"]).is_file()
        assert root / row["png"] == cohort.png_path(image_id) and root / row["dcm"] == cohort.dcm_path(image_id)
        mine = [les for les in lesions if les["image"] == image_id]
        bits = imagecodecs.png_decode(cohort.mask_path(image_id).read_bytes())
        assert bits.dtype == np.uint8 and bits.shape == (SIZE, SIZE)
        for k, cls in enumerate(CXR_CLASSES):
            boxes = [les for les in mine if les["class"] == cls]
            has_bit = (bits & (1 << k)) > 0
            assert row[cls] == ("1" if boxes else "0")
            assert has_bit.any() == bool(boxes)
            inside = np.zeros_like(has_bit)
            for les in boxes:
                y0, x0, y1, x1 = (int(les[key]) for key in ("y0", "x0", "y1", "x1"))
                assert 0 <= y0 < y1 <= SIZE and 0 <= x0 < x1 <= SIZE
                assert has_bit[y0:y1, x0:x1].any()
                inside[y0:y1, x0:x1] = True
            assert not (has_bit & ~inside).any()  # every marked pixel lies in a box of its class
        assert bits.max() < (1 << len(CXR_CLASSES))
    manifest = json.loads((root / "cohort.json").read_text())
    assert manifest["n"] == 8 and manifest["seed"] == 3 and manifest["classes"] == list(CXR_CLASSES)


def test_cohort_png_and_dicom_agree(cohort: CxrCohort) -> None:
    manifest = json.loads((cohort.root / "cohort.json").read_text())
    photometrics = set()
    for image_id in cohort.images:
        png = read_cxr(cohort.png_path(image_id))
        dcm = read_cxr(cohort.dcm_path(image_id))
        assert png.meta["bits_stored"] == 16 and png.image.shape == dcm.image.shape == (SIZE, SIZE)
        step = 1.0 / (2 ** dcm.meta["bits_stored"] - 1)
        np.testing.assert_allclose(dcm.image, png.image, atol=step / 2 + 1.0 / 65535 + 1e-6)
        spacing = manifest["spacing_mm"][image_id]
        assert dcm.spacing == pytest.approx((spacing, spacing), rel=1e-4)
        assert png.spacing == pytest.approx((spacing, spacing), rel=2e-3)  # pHYs holds whole pixels per metre
        assert dcm.meta["view_position"] == "PA" and dcm.meta["modality"] in ("CR", "DX")
        photometrics.add(dcm.meta["photometric_interpretation"])
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}


def test_cohort_is_deterministic_and_seeded(tmp_path: Path, cohort: CxrCohort) -> None:
    again = make_cxr_cohort(tmp_path / "again", n=8, seed=3, size=SIZE)
    for path in sorted(cohort.root.rglob("*")):
        if path.is_file():
            assert (again.root / path.relative_to(cohort.root)).read_bytes() == path.read_bytes(), path.name
    other = make_cxr_cohort(tmp_path / "other", n=8, seed=4, size=SIZE, dicom=False)
    assert not any(other.root.rglob("*.dcm"))
    assert all(row["dcm"] == "" for row in read_csv(other.labels_csv))
    assert other.png_path("cxr_0000").read_bytes() != cohort.png_path("cxr_0000").read_bytes()
    assert not list(tmp_path.rglob("*.tmp"))


def test_cohort_of_twenty_is_half_normal_with_every_class(tmp_path: Path) -> None:
    made = make_cxr_cohort(tmp_path / "c20", n=20, seed=11, size=64, dicom=False)
    labels = read_csv(made.labels_csv)
    assert len(labels) == 20
    assert sum(all(row[c] == "0" for c in CXR_CLASSES) for row in labels) == 10
    for cls in CXR_CLASSES:
        assert sum(row[cls] == "1" for row in labels) >= 1


def test_cohort_refuses_to_overwrite_another_cohort(tmp_path: Path) -> None:
    root = tmp_path / "c"
    make_cxr_cohort(root, n=2, seed=0, size=64, dicom=False)
    make_cxr_cohort(root, n=2, seed=0, size=64, dicom=False)  # same parameters: rewritten identically
    with pytest.raises(InputFileError, match="other parameters"):
        make_cxr_cohort(root, n=3, seed=0, size=64, dicom=False)
    replaced = make_cxr_cohort(root, n=3, seed=0, size=64, dicom=False, overwrite=True)
    assert len(read_csv(replaced.labels_csv)) == 3
    with pytest.raises(ConfigError):
        make_cxr_cohort(tmp_path / "d", n=0)
