"""A synthetic chest X-ray cohort on disk: balanced findings, PNG / DICOM / mask files, labels and lesions CSVs."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..._fsutil import atomic_write_bytes
from ...errors import ConfigError, InputFileError
from .data_model import CXR_CLASSES, CxrCohort, check_contrast
from .dicom import VENDORS, write_cxr_dicom
from .png import png_bytes
from .render import render_cxr


def _image_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index), 0xC5]).generate_state(1, np.uint32)[0])


def _cohort_plan(n: int, seed: int) -> tuple[list[list[str]], list[dict[str, Any]]]:
    """Per image: the classes to draw and the DICOM variant, balanced over the cohort."""
    rng = np.random.default_rng([int(seed), 0xC0])
    normal = set(rng.permutation(n)[: n // 2].tolist())
    used = np.zeros(len(CXR_CLASSES))
    plan: list[list[str]] = []
    for i in range(n):
        if i in normal:
            plan.append([])
            continue
        k = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
        weights = 1.0 / (1.0 + used)
        picks = rng.choice(len(CXR_CLASSES), size=k, replace=False, p=weights / weights.sum())
        used[picks] += 1
        plan.append([CXR_CLASSES[j] for j in sorted(picks)])
    mono = rng.permutation(n)
    spacing_mode = rng.permutation(n)
    rescale_mode = rng.permutation(n)
    variants = []
    for i in range(n):
        modality = "CR" if rng.random() < 0.5 else "DX"
        rescale = None
        if rescale_mode[i] % 3 == 0:
            rescale = [(1.0, -1024.0), (0.5, 0.0), (2.0, -4096.0), (1.0, 100.0)][int(rng.integers(0, 4))]
        variants.append(
            {
                "modality": modality,
                "bits_stored": int(rng.choice([12, 14, 15, 16])),
                "monochrome1": bool(mono[i] % 3 == 0),
                "rescale": rescale,
                "spacing_tag": ("PixelSpacing", "ImagerPixelSpacing/ERMF", "ImagerPixelSpacing")[
                    int(spacing_mode[i] % 3)
                ],
                "magnification": float(rng.uniform(1.05, 1.2)),
                "window": str(rng.choice(["LINEAR", "LINEAR", "LINEAR_EXACT", "MULTI"])),
                "vendor": int(rng.integers(0, len(VENDORS))),
            }
        )
    return plan, variants


def _csv_text(rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def make_cxr_cohort(
    out_dir: str | os.PathLike[str],
    n: int = 40,
    seed: int = 0,
    size: int = 1024,
    dicom: bool = True,
    *,
    contrast: Mapping[str, float] | None = None,
    overwrite: bool = False,
) -> CxrCohort:
    """Write a synthetic chest X-ray cohort: half normal images, half with 1-3 lesions, classes balanced.

    Layout under ``out_dir``:

    * ``images/<id>.png``: 16-bit grayscale PNG, bright = dense, with the pixel spacing in its pHYs chunk;
    * ``images/<id>.dcm`` (when ``dicom``): the same image as a DICOM Part-10 CR or DX file with varied
      bits stored (12-16), rescale slope/intercept on about a third, window centre/width (LINEAR,
      LINEAR_EXACT or two windows), MONOCHROME1 on about a third (stored inverted), and the spacing given as
      PixelSpacing, ImagerPixelSpacing with EstimatedRadiographicMagnificationFactor, or ImagerPixelSpacing;
    * ``masks/<id>.png``: uint8 bitmask, bit k set where a lesion of class ``CXR_CLASSES[k]`` is;
    * ``lungs/<id>.png``: uint8 lung-field mask (255 = lung), where negative "normal lung" patches come from;
    * ``labels.csv``: ``image``, one 0/1 column per class in :data:`CXR_CLASSES` order, ``png``, ``dcm``
      (paths relative to ``out_dir``; ``dcm`` empty without DICOM);
    * ``lesions.csv``: ``image, lesion, class, y0, x0, y1, x1`` (half-open native-pixel boxes);
    * ``cohort.json``: the parameters (n, seed, size, dicom, classes, contrast, spacing per image).

    Every file is written atomically, the CSVs and ``cohort.json`` last; the same arguments give the same
    bytes.

    Args:
        out_dir: the cohort folder (created).
        n: number of images (>= 1).
        seed: cohort seed (>= 0).
        size: image side in pixels.
        dicom: also write the DICOM files.
        contrast: per-class lesion strength overriding :data:`DEFAULT_CONTRAST`.
        overwrite: replace a cohort already in ``out_dir`` that was made with other parameters (one made with
            the same parameters is always rewritten, identically).

    Returns:
        The :class:`CxrCohort`.

    Raises:
        ConfigError: bad n, seed, size or contrast.
        InputFileError: ``out_dir`` holds a different cohort and ``overwrite`` is False.
    """
    n, seed, size = int(n), int(seed), int(size)
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    strength = check_contrast(contrast)
    root = Path(out_dir)
    params = {
        "generator": "napari_patchdx.synth.cxr",
        "format": 2,
        "n": n,
        "seed": seed,
        "size": size,
        "dicom": bool(dicom),
        "classes": list(CXR_CLASSES),
        "contrast": strength,
    }
    manifest = root / "cohort.json"
    if root.exists() and not root.is_dir():
        raise InputFileError(root, "exists and is not a folder")
    if manifest.exists() and not overwrite:
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        same = isinstance(old, dict) and {k: old.get(k) for k in params} == params
        if not same:
            raise InputFileError(
                root, "already holds a synthetic cohort made with other parameters; pass overwrite=True"
            )
    elif (root / "labels.csv").exists() and not manifest.exists() and not overwrite:
        raise InputFileError(root, "already holds a labels.csv that is not ours; pass overwrite=True")

    plan, variants = _cohort_plan(n, seed)
    ids = [f"cxr_{i:04d}" for i in range(n)]
    label_rows: list[list[Any]] = [["image", *CXR_CLASSES, "png", "dcm"]]
    lesion_rows: list[list[Any]] = [["image", "lesion", "class", "y0", "x0", "y1", "x1"]]
    spacings: dict[str, float] = {}
    for i, image_id in enumerate(ids):
        image, lesions, info = render_cxr(_image_seed(seed, i), size, lesions=plan[i], contrast=strength)
        spacing = float(info["spacing_mm"][0])
        spacings[image_id] = round(spacing, 6)
        png_rel = f"images/{image_id}.png"
        atomic_write_bytes(root / png_rel, png_bytes(np.rint(image * 65535.0).astype(np.uint16), spacing), mkdir=True)
        dcm_rel = ""
        if dicom:
            dcm_rel = f"images/{image_id}.dcm"
            write_cxr_dicom(
                root / dcm_rel,
                image,
                spacing_mm=spacing,
                uid_entropy=[str(seed), image_id],
                instance=i + 1,
                patient_id=f"SYNTH{seed:04d}{i:04d}",
                **variants[i],
            )
        bits = np.zeros((size, size), dtype=np.uint8)
        for j, les in enumerate(lesions):
            bits[les.mask] |= np.uint8(1 << CXR_CLASSES.index(les.cls))
            lesion_rows.append([image_id, j, les.cls, *les.box])
        atomic_write_bytes(root / "masks" / f"{image_id}.png", png_bytes(bits), mkdir=True)
        lungs = np.where(info["lung_mask"], np.uint8(255), np.uint8(0))
        atomic_write_bytes(root / "lungs" / f"{image_id}.png", png_bytes(lungs), mkdir=True)
        label_rows.append([image_id, *(info["labels"][c] for c in CXR_CLASSES), png_rel, dcm_rel])

    atomic_write_bytes(root / "lesions.csv", _csv_text(lesion_rows), mkdir=True)
    atomic_write_bytes(root / "labels.csv", _csv_text(label_rows), mkdir=True)
    manifest_data = {**params, "images": ids, "spacing_mm": spacings}
    atomic_write_bytes(manifest, (json.dumps(manifest_data, indent=2) + "\n").encode("utf-8"), mkdir=True)
    return CxrCohort(
        root=root,
        labels_csv=root / "labels.csv",
        lesions_csv=root / "lesions.csv",
        images=tuple(ids),
        dicom=bool(dicom),
    )
