"""Stain augmentation and normalisation (napari_patchdx.transforms.stain): HED jitter, Macenko normalisation, stain
references, the settings that select them, and a model trained with Macenko normalisation seeing normalised
patches at inference.

Patches are Beer-Lambert renderings, as the synthetic slide generator draws them (``RGB = 240 exp(-OD) - 1``, the
optical density a sum of stain vectors times concentrations), of one synthetic tissue with glass, nuclei
(haematoxylin only), stroma (eosin only) and mixed regions. Stained with the generator's reference vectors
(Macenko's) or with another centre's vectors and intensities, every estimate has a known answer.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage.color import deltaE_ciede2000, rgb2lab
from torch import nn

from napari_patchdx import transforms as A
from napari_patchdx.errors import ConfigError, InputFileError
from napari_patchdx.geometry import Grid
from napari_patchdx.inference.ensemble import fingerprint, load_models, predict_patches, stain_normalize_batch
from napari_patchdx.inference.heatmaps import slide_heatmap_job
from napari_patchdx.models.checkpoint import (
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    slide_normalization,
    stain_normalizer,
)
from napari_patchdx.models.factory import build_model
from napari_patchdx.pipeline.config import config_reference
from napari_patchdx.progress import run_job
from napari_patchdx.sampling.balanced import BalancedSampler
from napari_patchdx.sampling.datasets import PatchReader, PatchTableDataset
from napari_patchdx.sampling.patches import PatchGeometry
from napari_patchdx.sampling.sources import SlideSource
from napari_patchdx.sampling.tissue_mask import TissueMask
from napari_patchdx.synth.wsi.cohort import make_wsi_cohort
from napari_patchdx.training.config import TrainConfig
from napari_patchdx.training.inputs import TrainData
from napari_patchdx.training.job import train

from ..conftest import write_pyramid

# ----------------------------------------------------------------------------------------------- helpers


def unit(v: list[float]) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


H_REF = unit([0.5626, 0.7201, 0.4062])  # the synthetic slide generator's reference vectors (Macenko's)
E_REF = unit([0.2159, 0.8012, 0.5581])
H_B = unit([0.68, 0.68, 0.28])  # another centre: more purple haematoxylin, more orange eosin ...
E_B = unit([0.30, 0.85, 0.43])
H_SCALE_B, E_SCALE_B = 1.3, 0.7  # ... stronger haematoxylin, weaker eosin


def tissue(size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin and eosin concentrations: glass, nuclei (H only), stroma (E only) and mixed regions."""
    rng = np.random.default_rng(seed)

    def field(sigma: float) -> np.ndarray:
        f = ndimage.gaussian_filter(rng.random((size, size)), sigma)
        return (f - f.min()) / (f.max() - f.min())

    region = np.digitize(field(8.0), [0.3, 0.45, 0.6])  # 0 glass, 1 nuclei, 2 stroma, 3 mixed
    t1, t2 = field(1.5), field(2.5)
    h = np.where(region == 1, 0.4 + 1.2 * t1, 0.0) + np.where(region == 3, 0.2 + 0.8 * t1, 0.0)
    e = np.where(region == 2, 0.3 + 0.8 * t2, 0.0) + np.where(region == 3, 0.2 + 0.6 * t2, 0.0)
    return h, e


def stained(h: np.ndarray, e: np.ndarray, hv: np.ndarray, ev: np.ndarray, io: float = 240.0) -> np.ndarray:
    """uint8 RGB of concentrations ``h``, ``e`` under stain vectors ``hv``, ``ev`` (Beer-Lambert)."""
    od = h[..., None] * hv + e[..., None] * ev
    return (np.clip(io * np.exp(-od) - 1.0, 0.0, 255.0) + 0.5).astype(np.uint8)


def centre_a(size: int = 128, seed: int = 0) -> np.ndarray:
    h, e = tissue(size, seed)
    return stained(h, e, H_REF, E_REF)


def centre_b(size: int = 128, seed: int = 0) -> np.ndarray:
    h, e = tissue(size, seed)
    return stained(h * H_SCALE_B, e * E_SCALE_B, H_B, E_B)


def as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


def angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two vectors, degrees."""
    return float(np.degrees(np.arccos(np.clip(np.dot(unit(a), unit(b)), -1.0, 1.0))))


def levels(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference, 0..255 levels (float images are taken as [0, 1])."""
    a = a * 255.0 if a.dtype.kind == "f" else a.astype(np.float64)
    b = b * 255.0 if b.dtype.kind == "f" else b.astype(np.float64)
    return float(np.abs(a - b).mean())


def glass(size: int = 64, seed: int = 0) -> np.ndarray:
    """Empty glass (240 with a little noise), uint8."""
    rng = np.random.default_rng(seed)
    return np.clip(240 + rng.normal(0, 2, (size, size, 3)), 0, 255).round().astype(np.uint8)


# ----------------------------------------------------------------------------------------------- HED jitter


def test_hed_round_trip_is_exact_and_zero_jitter_is_the_identity() -> None:
    x = as_float(centre_a())
    np.testing.assert_allclose(A.stain.hed_to_rgb(A.stain.rgb_to_hed(x)), x, atol=1e-5)
    neutral = A.HEDJitterParams(alpha=(1.0, 1.0, 1.0), beta=(0.0, 0.0, 0.0))
    out = A.HEDJitter(sigma=0.05).apply(x, neutral)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert np.abs(out - x).max() * 255 < 0.01  # the round trip, within float32 rounding
    zero = A.HEDJitter(sigma=0.0)(x, np.random.default_rng(0))
    assert zero is not x and np.array_equal(zero, x)


def test_hed_jitter_shifts_along_the_stain_axes() -> None:
    x = as_float(centre_a())
    hed = A.stain.rgb_to_hed(x)
    # an offset is a shift along one axis of HED space, a multiplier scales one axis
    for alpha, beta in (((1.0, 1.0, 1.0), (0.03, 0.0, 0.0)), ((1.04, 0.97, 1.0), (0.0, -0.02, 0.01))):
        out = A.hed_jitter(x, alpha, beta)
        inside = ((out > 0) & (out < 1)).all(axis=-1)  # pixels the final clip did not touch
        assert inside.mean() > 0.8
        expected = hed * np.asarray(alpha, np.float32) + np.asarray(beta, np.float32)
        np.testing.assert_allclose(A.stain.rgb_to_hed(out)[inside], expected[inside], atol=1e-4)
    # more haematoxylin darkens every channel, red and green (which it absorbs) more than blue
    more_h = A.hed_jitter(x, (1, 1, 1), (0.05, 0, 0)).reshape(-1, 3).mean(axis=0) - x.reshape(-1, 3).mean(axis=0)
    assert (more_h < 0).all() and more_h[0] < more_h[2] and more_h[1] < more_h[2]
    # more eosin takes mostly green: the patch turns pinker
    more_e = A.hed_jitter(x, (1, 1, 1), (0, 0.05, 0)).reshape(-1, 3).mean(axis=0) - x.reshape(-1, 3).mean(axis=0)
    assert more_e[1] < more_e[0] and more_e[1] < more_e[2] and more_e[1] < -0.05


def test_hed_jitter_draws_from_the_seed_and_light_is_light() -> None:
    x = as_float(centre_a())
    t = A.HEDJitter(sigma=0.05)
    a, b = t(x, np.random.default_rng(7)), t(x, np.random.default_rng(7))
    assert np.array_equal(a, b) and not np.array_equal(a, t(x, np.random.default_rng(8)))
    u = 2.0 * np.random.default_rng(3).random(6) - 1.0  # the documented draw: one rng.random(6)
    params = t.sample_params(np.random.default_rng(3))
    np.testing.assert_allclose(params.alpha, 1.0 + 0.05 * u[:3])
    np.testing.assert_allclose(params.beta, 0.05 * u[3:])
    # a patch outside the cutoff (glass) comes back unchanged and uses the same draws
    rng, twin = np.random.default_rng(5), np.random.default_rng(5)
    white = as_float(glass())
    assert np.array_equal(t(white, rng), white)
    twin.random(6)
    assert rng.random() == twin.random()
    # HED-light moves an H&E patch by a few levels on average; HED-strong by more
    light = [levels(t(x, np.random.default_rng(i)), x) for i in range(12)]
    strong = [levels(A.HEDJitter(sigma=0.2)(x, np.random.default_rng(i)), x) for i in range(12)]
    assert 2.0 < np.mean(light) < 25.0 and np.mean(strong) > 2.5 * np.mean(light)


def test_hed_jitter_settings_are_checked() -> None:
    for sigma in (-0.1, 1.0, float("nan")):
        with pytest.raises(ConfigError, match="sigma"):
            A.HEDJitter(sigma=sigma)
    with pytest.raises(ConfigError, match="cutoff"):
        A.HEDJitter(cutoff=(0.9, 0.1))
    with pytest.raises(TypeError, match="floating-point"):
        A.HEDJitter()(centre_a(), np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        A.HEDJitter()(as_float(np.stack([centre_a(), centre_a()])), np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------- Macenko


@pytest.mark.parametrize("centre", ["a", "b"])
def test_estimate_recovers_the_stain_vectors_and_maxima(centre: str) -> None:
    h, e = tissue()
    hv, ev, hs, es = (H_REF, E_REF, 1.0, 1.0) if centre == "a" else (H_B, E_B, H_SCALE_B, E_SCALE_B)
    estimate = A.estimate_stains(stained(h * hs, e * es, hv, ev))
    assert estimate is not None
    assert angle(estimate.hematoxylin, hv) < 1.0 and angle(estimate.eosin, ev) < 1.0
    expected = [np.percentile(h * hs, 99), np.percentile(e * es, 99)]  # 99th percentiles over all pixels
    np.testing.assert_allclose(estimate.max_concentrations, expected, rtol=0.03)


def test_macenko_maps_another_centre_onto_the_reference() -> None:
    reference = A.fit_reference([centre_a()])
    source, target = centre_b(), centre_a()  # the same tissue stained in two centres
    out = A.macenko_normalize(as_float(source), reference)
    assert out.dtype == np.float32 and out.shape == source.shape
    assert levels(source, target) > 10.0 and levels(out, target) < 1.0
    before = deltaE_ciede2000(rgb2lab(source), rgb2lab(target)).mean()
    after = deltaE_ciede2000(rgb2lab(out), rgb2lab(target)).mean()
    assert before > 5.0 and after < 0.5
    # other tissue from centre B lands on how centre A stains it
    other_b, other_a = centre_b(seed=5), centre_a(seed=5)
    assert levels(A.macenko_normalize(as_float(other_b), reference), other_a) < 0.1 * levels(other_b, other_a)
    # the transform is the function, and draws nothing
    rng = np.random.default_rng(0)
    assert np.array_equal(A.MacenkoNormalize(reference)(as_float(source), rng), out)
    assert rng.random() == np.random.default_rng(0).random()


def test_normalising_a_patch_to_its_own_stains_changes_nothing() -> None:
    patch = centre_b()
    out = A.macenko_normalize(as_float(patch), A.estimate_stains(patch))
    assert np.abs(out * 255.0 - patch).max() < 1.0


def test_white_and_nearly_white_patches_are_left_unchanged() -> None:
    white = as_float(glass())
    assert A.stain.tissue_fraction(white) == 0.0 and A.estimate_stains(white) is None
    out = A.MacenkoNormalize()(white)
    assert out is not white and np.array_equal(out, white)
    # 2 % tissue is under min_tissue (5 %): unchanged; 20 % is normalised
    for share, changed in ((0.02, False), (0.2, True)):
        patch = glass(128)
        rows = round(share * 128)
        patch[:rows] = centre_b()[:rows]
        assert (A.stain.tissue_fraction(patch) >= 0.05) is changed  # the default min_tissue
        out = A.MacenkoNormalize(A.fit_reference([centre_a()]))(as_float(patch))
        assert (not np.array_equal(out, as_float(patch))) is changed


def test_matches_torchstain_normalize() -> None:
    import torchstain

    reference = A.fit_reference([centre_a()])
    source = centre_b(seed=2)
    normalizer = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
    normalizer.HERef, normalizer.maxCRef = reference.matrix(), np.asarray(reference.max_concentrations)
    theirs, _, _ = normalizer.normalize(source, stains=False)
    ours = A.macenko_normalize(as_float(source), reference) * 255.0 + 1.0  # they keep the +1 of the OD
    unclipped = ours < 254.0
    difference = ours[unclipped] - theirs[unclipped]  # they truncate to uint8
    assert unclipped.mean() > 0.9 and difference.min() > -0.01 and difference.max() < 1.01


def test_fit_reference_pools_patches_and_needs_tissue() -> None:
    reference = A.fit_reference([centre_a(seed=1), centre_a(96, seed=2), as_float(centre_a(seed=3))])
    assert angle(reference.hematoxylin, H_REF) < 1.0 and angle(reference.eosin, E_REF) < 1.0
    with pytest.raises(ConfigError, match="stained tissue"):
        A.fit_reference([glass(), glass(seed=1)])
    with pytest.raises(ConfigError, match="no image"):
        A.fit_reference([])


def test_reference_files(tmp_path: Path) -> None:
    reference = A.fit_reference([centre_a()])
    path = A.write_reference(tmp_path / "ref.json", reference)
    assert A.load_reference(path) == reference
    assert json.loads(path.read_text())["max_concentrations"] == list(reference.max_concentrations)
    Image.fromarray(centre_a()).save(tmp_path / "ref.png")
    assert A.load_reference(tmp_path / "ref.png") == reference
    sidecar = tmp_path / "model.json"
    sidecar.write_text(json.dumps({"normalization": slide_normalization(A.MacenkoNormalize(reference))}))
    assert A.load_reference(sidecar) == reference
    (tmp_path / "unit.json").write_text(json.dumps({"normalization": slide_normalization(None)}))
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "wrong.json").write_text(json.dumps({"hematoxylin": [1, 0, 0]}))
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    Image.fromarray(glass()).save(tmp_path / "glass.png")
    problems = {
        "missing.json": "not found",
        "unit.json": "without a stain reference",
        "broken.json": "not a readable JSON",
        "wrong.json": "keys hematoxylin, eosin, max_concentrations",
        "notes.txt": "expected a .json file or an image",
        "bad.png": "not a readable image",
        "glass.png": "stained tissue",
    }
    for name, problem in problems.items():
        with pytest.raises(InputFileError, match=problem) as info:
            A.load_reference(tmp_path / name)
        assert info.value.path == tmp_path / name
    with pytest.raises(ConfigError, match="positive"):
        A.StainReference((1, 0, 0), (0, 1, 0), (1.0, 0.0))


def test_stain_transforms_round_trip_through_dicts_and_pickle() -> None:
    reference = A.fit_reference([centre_a()])
    for t in (A.HEDJitter(0.1, cutoff=(0.1, 0.9)), A.MacenkoNormalize(reference, min_tissue=0.2)):
        config = json.loads(json.dumps(t.to_dict()))
        again = A.transform_from_dict(config)
        assert again == t and repr(again) == repr(t)
        assert pickle.loads(pickle.dumps(t)) == t
    assert A.MacenkoNormalize(reference).reference == reference
    assert A.MacenkoNormalize().reference == A.MACENKO_REFERENCE
    for kwargs in ({"io": 0}, {"alpha": 50}, {"beta": 0}, {"min_tissue": 1.5}):
        with pytest.raises(ConfigError):
            A.MacenkoNormalize(**kwargs)


# ----------------------------------------------------------------------------------------------- settings


def test_slide_train_transforms_by_stain() -> None:
    reference = A.fit_reference([centre_a()])
    liu = A.slide_train_transforms()
    assert liu == A.Compose([A.RandomOrientation(copy=False), A.ColorJitterTF()])  # the default is unchanged
    assert A.slide_train_transforms(stain="none") == A.Compose([A.RandomOrientation()])
    hed = A.slide_train_transforms(stain="hed", hed_sigma=0.1)
    assert hed == A.Compose([A.RandomOrientation(copy=False), A.HEDJitter(0.1)])
    mac = A.slide_train_transforms(stain="macenko", reference=reference)
    assert mac == A.Compose([A.MacenkoNormalize(reference), A.RandomOrientation()])
    x = as_float(centre_b())
    out = mac(x, np.random.default_rng(0))
    k = A.RandomOrientation().sample_params(np.random.default_rng(0))
    np.testing.assert_array_equal(out, A.orient(A.macenko_normalize(x, reference), k))  # normalised as read
    assert A.slide_eval_transforms("macenko", reference) == A.Compose([A.MacenkoNormalize(reference)])
    assert A.slide_eval_transforms("hed") is None and A.slide_eval_transforms() is None
    with pytest.raises(ConfigError, match="stain must be one of"):
        A.slide_train_transforms(stain="reinhard")
    with pytest.raises(ConfigError, match="stain='liu' only"):
        A.slide_train_transforms(A.ColorJitterTF(), stain="hed")


def test_train_config_stain_settings(tmp_path: Path) -> None:
    config = TrainConfig(stain="macenko", stain_reference=tmp_path / "ref.json")
    assert config.stain_reference == str(tmp_path / "ref.json")
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and TrainConfig().stain == "liu" and TrainConfig().hed_sigma == 0.05
    assert TrainConfig(stain="hed", hed_sigma=0.2).hed_sigma == 0.2
    bad = [
        ({"stain": "hde"}, "did you mean 'hed'"),
        ({"stain": "hed", "hed_sigma": 1.0}, "hed_sigma must be in"),
        ({"stain": "hed", "hed_sigma": -0.1}, "hed_sigma"),
        ({"stain": "liu", "stain_reference": "ref.json"}, "stain='macenko' only"),
        ({"stain": "macenko", "stain_reference": ""}, "stain_reference must be a non-empty string"),
        ({"track": "cxr", "stain": "hed"}, "slide setting"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(**kwargs)
    keys = {row["key"]: row for row in config_reference()}
    assert "slides only" in keys["train.stain"]["help"] and "Tellez" in keys["train.hed_sigma"]["help"]
    assert "image of stained tissue" in keys["train.stain_reference"]["help"]


# ----------------------------------------------------------------------------------------------- inference

PATCH = 48
UNIT_META = {"input_size": PATCH, "center_size": 32, "mpp": None, "classes": ["tumor"]}


def _crops(image: np.ndarray, n: int = 6) -> torch.Tensor:
    """``n`` uint8 (N, 3, PATCH, PATCH) patches cut along the diagonal of ``image``."""
    step = (image.shape[0] - PATCH) // (n - 1)
    crops = np.stack([image[i * step : i * step + PATCH, i * step : i * step + PATCH] for i in range(n)])
    return torch.from_numpy(crops).permute(0, 3, 1, 2)


def test_checkpoint_carries_the_reference_and_inference_applies_it(tmp_path: Path) -> None:
    reference = A.fit_reference([centre_a()])
    torch.manual_seed(0)
    model = build_model("small", 1).eval()
    meta = dict(UNIT_META, normalization=slide_normalization(A.slide_eval_transforms("macenko", reference)))
    save_checkpoint(tmp_path / "macenko", model, meta)
    stored = read_checkpoint_meta(tmp_path / "macenko")
    assert stored["normalization"]["mode"] == "macenko"
    assert stain_normalizer(stored) == A.MacenkoNormalize(reference)
    loaded, loaded_meta = load_checkpoint(tmp_path / "macenko")

    batch = _crops(centre_b(160))
    by_checkpoint = predict_patches(load_models(tmp_path / "macenko.json", "cpu"), batch, tta=True)
    by_hand = torch.from_numpy(
        np.stack(
            [
                (A.MacenkoNormalize(reference)(as_float(p)) * 255.0 + 0.5).astype(np.uint8)
                for p in batch.permute(0, 2, 3, 1).numpy()
            ]
        )
    ).permute(0, 3, 1, 2)
    assert torch.equal(stain_normalize_batch(batch, A.MacenkoNormalize(reference)), by_hand)
    unit = dict(UNIT_META, normalization=slide_normalization(None))
    np.testing.assert_allclose(by_checkpoint, predict_patches([(model, unit)], by_hand, tta=True), rtol=1e-5)
    assert not np.allclose(by_checkpoint, predict_patches([(model, unit)], batch, tta=True), atol=1e-6)
    # an ensemble may mix a normalising model and a plain one: each gets its own input
    mixed = predict_patches([(loaded, loaded_meta), (model, unit)], batch, tta=False)
    alone = [predict_patches([spec], batch, tta=False) for spec in ((loaded, loaded_meta), (model, unit))]
    np.testing.assert_allclose(mixed, (alone[0] + alone[1]) / 2, rtol=1e-6)
    # the heatmap cache key changes with the reference, not only with the weights
    assert fingerprint(loaded, loaded_meta) != loaded_meta["weights_sha256"]
    assert fingerprint(model, unit) != fingerprint(model, meta)

    # a broken stain entry is refused when the sidecar is read or written
    sidecar = json.loads((tmp_path / "macenko.json").read_text())
    sidecar["normalization"]["transform"] = {"type": "ColorJitterTF"}
    (tmp_path / "macenko.json").write_text(json.dumps(sidecar))
    with pytest.raises(InputFileError, match="MacenkoNormalize"):
        read_checkpoint_meta(tmp_path / "macenko")
    with pytest.raises(ConfigError, match="MacenkoNormalize"):
        save_checkpoint(tmp_path / "bad", model, dict(UNIT_META, normalization={"mode": "macenko"}))
    with pytest.raises(ConfigError, match=r"'unit'.*'macenko'"):
        predict_patches([(model, dict(UNIT_META, normalization={"mode": "standardize"}))], batch)


class Recorder(nn.Module):
    """Keeps every patch it is given (uint8 NHWC) and returns 0 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[np.ndarray] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
        return torch.zeros(x.shape[0], 1)


def test_heatmap_of_a_macenko_model_reads_reference_coloured_patches(tmp_path: Path) -> None:
    """A tiny slide from centre B: the heatmap hands a Macenko model its patches in the reference's colours."""
    slide = write_pyramid(tmp_path / "b.tif", centre_b(512, seed=4), tile=128, compression="zlib", min_size=128)
    mask = TissueMask(np.ones((16, 16), bool), Grid((16, 16), (32.0, 32.0), (0.0, 0.0), 0.5), 0.1)
    reference = A.fit_reference([centre_a(256, seed=4)])
    seen = {}
    for name, normalization in (("raw", None), ("macenko", A.MacenkoNormalize(reference))):
        recorder = Recorder()
        meta = dict(UNIT_META, normalization=slide_normalization(normalization))
        run_job(slide_heatmap_job(slide, (recorder, meta), tmp_path / name, tta=False, tissue=mask, batch_size=64))
        seen[name] = np.concatenate(recorder.seen)
    raw, normalized = seen["raw"], seen["macenko"]
    assert len(raw) == len(normalized) > 50
    expected = stain_normalize_batch(torch.from_numpy(raw).permute(0, 3, 1, 2), A.MacenkoNormalize(reference))
    np.testing.assert_array_equal(normalized, expected.permute(0, 2, 3, 1).numpy())
    # the slide is centre B's staining of a tissue whose centre-A staining we know: find each patch's window
    # (cells lie on a 32 px grid) and compare the patches with the centre-A staining of the same window
    image_b, image_a = centre_b(512, seed=4), centre_a(512, seed=4)
    starts = [32 * r - 8 for r in range(16) if 0 <= 32 * r - 8 <= 512 - PATCH]
    before, after = [], []
    for i in range(len(raw)):
        if A.stain.tissue_fraction(raw[i]) < 0.5:
            continue
        window = next(
            ((y, x) for y in starts for x in starts if np.array_equal(image_b[y : y + PATCH, x : x + PATCH], raw[i])),
            None,
        )
        if window is not None:
            target = image_a[window[0] : window[0] + PATCH, window[1] : window[1] + PATCH]
            before.append(levels(raw[i], target))
            after.append(levels(normalized[i], target))
    assert len(before) > 20
    assert np.mean(before) > 10.0 and np.mean(after) < 0.35 * np.mean(before)  # per 48 px patch: 17.6 -> 3.8


# ----------------------------------------------------------------------------------------------- training

SLIDE = {
    "track": "slide",
    "arch": "small",
    "batch_size": 4,
    "steps_per_epoch": 2,
    "patch_size": 48,
    "center_size": 16,
    "val_patches": 8,
    "num_workers": 0,
    "deterministic": True,
    "epochs": 1,
}


@pytest.fixture(scope="module")
def patch_table(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """16 training patches from one tumour slide, 8 validation patches from another (1024 px, 1 um/px)."""
    root = tmp_path_factory.mktemp("wsi")
    cohort = make_wsi_cohort(root, n_tumor=2, n_normal=0, seed=2, height=1024, width=1024, mpp=1.0)
    sources = {s.path.stem: SlideSource.prepare(s.path, s.annotation_path) for s in cohort.slides}
    geometry = PatchGeometry(48, 16)
    train_part = BalancedSampler([sources["tumor_000"]], geometry, seed=1).table(16).assign(split="train")
    val_part = BalancedSampler([sources["tumor_001"]], geometry, seed=2).table(8).assign(split="val")
    return pd.concat([train_part, val_part], ignore_index=True)


@pytest.mark.parametrize("stain", ["macenko", "macenko-file", "hed"])
def test_training_records_the_stain_treatment(tmp_path: Path, patch_table: pd.DataFrame, stain: str) -> None:
    given = A.fit_reference([centre_a()])
    settings = {"stain": "hed", "hed_sigma": 0.1} if stain == "hed" else {"stain": "macenko"}
    if stain == "macenko-file":
        settings["stain_reference"] = str(A.write_reference(tmp_path / "ref.json", given))
    config = TrainConfig(**SLIDE, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        train(config, TrainData(patch_table=patch_table), tmp_path / "run")
    meta = read_checkpoint_meta(tmp_path / "run" / "last")
    assert meta["config"]["stain"] == settings["stain"]
    if stain == "hed":
        assert meta["normalization"]["mode"] == "unit" and meta["config"]["hed_sigma"] == 0.1
        assert stain_normalizer(meta) is None
        return
    reference = stain_normalizer(meta).reference
    if stain == "macenko-file":
        assert reference == given
        return
    # fitted to the training patches the trainer draws with the seed
    train_rows = patch_table[patch_table["split"] == "train"].reset_index(drop=True)
    rows = train_rows.sample(n=min(len(train_rows), A.stain.REFERENCE_PATCHES), random_state=config.seed)
    reader = PatchReader(48)
    expected = A.fit_reference(reader.read(r.slide, r.x, r.y, r.level, r.size) for r in rows.itertuples(index=False))
    np.testing.assert_allclose(reference.matrix(), expected.matrix(), atol=1e-6)
    np.testing.assert_allclose(reference.max_concentrations, expected.max_concentrations, rtol=1e-6)
    assert angle(reference.hematoxylin, reference.eosin) > 5.0  # two distinct stains in the synthetic slides


def test_training_and_validation_patches_are_normalised_as_at_inference(patch_table: pd.DataFrame) -> None:
    """Bit for bit: a training patch is the inference input in one of the 8 orientations, a validation patch is it."""
    reference = A.fit_reference([centre_a()])
    rows = patch_table[patch_table["split"] == "train"].reset_index(drop=True).head(6)
    reader = PatchReader(48)
    raw = np.stack([reader.read(r.slide, r.x, r.y, r.level, r.size) for r in rows.itertuples(index=False)])
    at_inference = stain_normalize_batch(torch.from_numpy(raw).permute(0, 3, 1, 2), A.MacenkoNormalize(reference))
    at_inference = at_inference.permute(0, 2, 3, 1).numpy()
    assert levels(at_inference, raw) > 1.0  # the normalisation changes these patches
    training = PatchTableDataset(rows, 48, A.slide_train_transforms(stain="macenko", reference=reference), seed=3)
    validation = PatchTableDataset(rows, 48, A.slide_eval_transforms("macenko", reference), seed=3)
    for i in range(len(rows)):
        k = A.RandomOrientation().sample_params(np.random.default_rng([3, 0, i]))  # the dataset's draw for item i
        np.testing.assert_array_equal(training[i][0].permute(1, 2, 0).numpy(), A.orient(at_inference[i], k))
        np.testing.assert_array_equal(validation[i][0].permute(1, 2, 0).numpy(), at_inference[i])
