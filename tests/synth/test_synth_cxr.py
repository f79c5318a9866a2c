"""Synthetic chest X-rays: determinism, exact lesion masks, plausible anatomy, and the cohort on disk."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from napari_patchdx import ConfigError, InputFileError, read_cxr
from napari_patchdx.io.cohort import read_labels, read_lesions
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


# --------------------------------------------------------------------------------------------------------------
# Each class is visible on its own labels: one simple image feature per class, measured on a cohort read back from
# disk (so labels.csv, the PNG writer and reader, and the lung masks all take part)
# --------------------------------------------------------------------------------------------------------------

FEATURE_SIZE = 128  # the demo's working size: the features' scales (pixels) are set for it


def lung_sides(lung: np.ndarray) -> list[np.ndarray]:
    """The image-left and image-right lung fields (the mediastinum lies on the image's middle column)."""
    right = np.arange(lung.shape[1])[None, :] >= lung.shape[1] // 2
    return [lung & ~right, lung & right]


def lung_zone(half: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The rows of one lung field from ``lo`` to ``hi`` (fractions of its height from the apex)."""
    rows = np.flatnonzero(half.any(axis=1))
    top, height = int(rows[0]), int(rows[-1] - rows[0])
    zone = half.copy()
    zone[: top + int(lo * height)] = False
    zone[top + int(hi * height) + 1 :] = False
    return zone


def robust_top(values: np.ndarray, k: int = 2) -> float:
    """The k-th largest of ``values`` in robust z-scores (median, MAD) of their own distribution."""
    med = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - med))) + 1e-12
    return float(np.sort(values)[-k] - med) / mad


def nodule_feature(image: np.ndarray, lung: np.ndarray) -> float:
    """A small round opacity: the strongest bright blob (scale-normalised Hessian determinant, 1-3 px) in the lungs."""
    x = image.astype(np.float64)
    inner = ndimage.binary_erosion(lung, iterations=2)
    best = -np.inf
    for s in (1.0, 1.5, 2.0, 3.0):
        rr = ndimage.gaussian_filter(x, s, order=(2, 0))
        cc = ndimage.gaussian_filter(x, s, order=(0, 2))
        rc = ndimage.gaussian_filter(x, s, order=(1, 1))
        det = np.where(rr + cc < 0, (rr * cc - rc * rc) * s**4, 0.0)  # both curvatures negative: a bright blob
        best = max(best, robust_top(det[inner]))
    return best


def consolidation_feature(image: np.ndarray, lung: np.ndarray) -> float:
    """A large patchy opacity: the strongest bright Laplacian-of-Gaussian blob of 3-6 px scale in the lungs."""
    x = image.astype(np.float64)
    inner = ndimage.binary_erosion(lung, iterations=2)
    return max(robust_top(-ndimage.gaussian_laplace(x, s)[inner] * s * s, k=3) for s in (3.0, 4.5, 6.0))


def interstitial_feature(image: np.ndarray, lung: np.ndarray) -> float:
    """A reticular texture over a zone: the largest median local variance (5 x 5) of a lung third."""
    x = image.astype(np.float64)
    mean = ndimage.uniform_filter(x, 5)
    var = ndimage.uniform_filter(x * x, 5) - mean * mean
    inner = ndimage.binary_erosion(lung, iterations=3)
    zones = [lung_zone(h, a, a + 1 / 3) & inner for h in lung_sides(lung) for a in (0.0, 1 / 3, 2 / 3)]
    return max(float(np.median(var[z])) for z in zones if z.any())


def side_scores(image: np.ndarray, lung: np.ndarray) -> tuple[list[float], list[float]]:
    """Per lung field (image left, right): how much brighter its lowest quarter is than the whole field (fluid at
    the base), and how much darker its outer rim (within 5 px of its border, upper 70 %) is than its core (over
    10 px in): air without lung markings along the chest wall."""
    base, rim = [], []
    for half in lung_sides(lung):
        base.append(float(image[lung_zone(half, 0.75, 1.0)].mean() - image[half].mean()))
        depth = ndimage.distance_transform_edt(half)
        band = lung_zone(half, 0.0, 0.7) & (depth <= 5)
        rim.append(float(image[depth > 10].mean() - image[band].mean()))
    return base, rim


def effusion_feature(image: np.ndarray, lung: np.ndarray) -> float:
    """Fluid at a lung base: the larger lower-zone brightening of the two lung fields."""
    return max(side_scores(image, lung)[0])


def pneumothorax_feature(image: np.ndarray, lung: np.ndarray) -> float:
    """A pneumothorax: the larger rim darkening of the two lung fields."""
    return max(side_scores(image, lung)[1])


FEATURES = {
    "nodule": nodule_feature,
    "consolidation": consolidation_feature,
    "interstitial_opacity": interstitial_feature,
    "pleural_effusion": effusion_feature,
    "pneumothorax": pneumothorax_feature,
}

#: The least AUROC each class's feature must reach on the cohort's own labels (measured on 120 images of seeds 1, 2
#: and 5: 0.81-0.83, 0.96-0.98, 0.96-0.97, 0.98-0.99, 0.92-0.97; the effusion's was 0.73 before its fix, seed 5).
FEATURE_AUROC = {
    "nodule": 0.7,
    "consolidation": 0.9,
    "interstitial_opacity": 0.9,
    "pleural_effusion": 0.9,
    "pneumothorax": 0.85,
}


@dataclass
class FeatureCohort:
    """A cohort written to disk and read back, with the simple features of its images."""

    classes: list[str]
    values: dict[str, np.ndarray]  # class -> feature per image
    labels: np.ndarray  # (images, classes) 0/1 from labels.csv
    sides: dict[str, list[tuple[int, int]]]  # class -> (side of its lesions.csv box, side the pixels say)


@pytest.fixture(scope="module")
def feature_cohort(tmp_path_factory: pytest.TempPathFactory) -> FeatureCohort:
    """120 images of 128 px written to disk and read back (PNG, lungs/, labels.csv, lesions.csv)."""
    made = make_cxr_cohort(tmp_path_factory.mktemp("cxr_features") / "c", n=120, seed=5, size=FEATURE_SIZE, dicom=False)
    table, classes = read_labels(made.root)
    boxes = read_lesions(made.lesions_csv, classes)
    values: dict[str, list[float]] = {c: [] for c in classes}
    sides: dict[str, list[tuple[int, int]]] = {"pleural_effusion": [], "pneumothorax": []}
    for image_id in table["image"]:
        image = read_cxr(made.png_path(image_id)).image
        lung = imagecodecs.png_decode(made.lung_path(image_id).read_bytes()) > 0
        for c in classes:
            values[c].append(FEATURES[c](image, lung))
        base, rim = side_scores(image, lung)
        for box in boxes.get(image_id, []):
            if box.cls in sides and len({b.cls for b in boxes[image_id]} & set(sides)) == 1:
                box_side = int((box.x0 + box.x1) / 2 >= FEATURE_SIZE // 2)
                sides[box.cls].append((box_side, int(np.argmax(base if box.cls == "pleural_effusion" else rim))))
    labels = table[list(classes)].to_numpy(np.int64)
    return FeatureCohort(list(classes), {c: np.array(v) for c, v in values.items()}, labels, sides)


def test_every_class_is_found_by_a_simple_feature_on_its_own_labels(feature_cohort: FeatureCohort) -> None:
    fc = feature_cohort
    assert fc.classes == list(CXR_CLASSES)
    assert all(fc.labels.sum(axis=0) >= 12), fc.labels.sum(axis=0)
    auroc = {c: roc_auc_score(fc.labels[:, k], fc.values[c]) for k, c in enumerate(fc.classes)}
    low = {c: round(a, 3) for c, a in auroc.items() if a < FEATURE_AUROC[c]}
    assert not low, f"classes a simple feature no longer finds on their own labels: {low} (all: {auroc})"


def test_lesion_boxes_lie_on_the_side_the_pixels_change(feature_cohort: FeatureCohort) -> None:
    """lesions.csv's boxes and the image read back from disk agree on the side (no mirroring, no row / column swap):
    the lung base that brightens holds the effusion's box, the rim that darkens the pneumothorax's (measured: all
    15 of 15 effusions, 10 of 12 pneumothoraces, whose rim competes with the lungs' own asymmetry and other lesions;
    a mirrored image would agree on about one in five)."""
    for cls, pairs in feature_cohort.sides.items():
        assert len(pairs) >= 8, cls
        agree = np.mean([box == pixels for box, pixels in pairs])
        assert agree >= 0.75, (cls, agree, pairs)


def test_effusion_is_told_from_other_basal_opacities() -> None:
    """A pleural effusion makes a lung base denser than a basal reticular or patchy opacity does, and it fills the
    costophrenic angle. Before the fix the effusion was a wedge of 1-8 % of its lung (median 3 %) in the lateral
    angle, and basal reticular opacities raised the lower-zone density as much (AUROC 0.52 against them here, 0.72
    against consolidation): the feature a whole-image model can learn for it ranked other basal opacities with it."""
    n, size = 40, FEATURE_SIZE
    scores: dict[str, list[float]] = {}
    fractions = []
    for cls in ("pleural_effusion", "interstitial_opacity", "consolidation"):
        scores[cls] = []
        for seed in range(n):
            image, lesions, info = render_cxr(1000 + seed, size, lesions=[cls])
            lung = info["lung_mask"]
            scores[cls].append(effusion_feature(image, lung))
            if cls == "pleural_effusion":
                mask = lesions[0].mask
                half = next(h for h in lung_sides(lung) if (h & mask).any())
                assert not (mask & lung_sides(lung)[0]).any() or not (mask & lung_sides(lung)[1]).any()  # one side
                fractions.append((mask & half).sum() / half.sum())
                lowest = np.flatnonzero(half.any(axis=1))[-1]
                assert (mask[lowest] & half[lowest]).any(), seed  # the costophrenic angle is filled
    effusion = scores["pleural_effusion"]
    for other in ("interstitial_opacity", "consolidation"):
        auc = roc_auc_score([1] * n + [0] * n, effusion + scores[other])
        assert auc > 0.85, (other, auc)
    assert min(fractions) > 0.03 and np.median(fractions) > 0.08, fractions
