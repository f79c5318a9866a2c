"""Inference: band reading (pixel-exact, each tile decoded once), TTA, heatmap geometry, resume, corrupt tiles, CAMs."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from napari_patchdx.data.augment import ORIENTATIONS, orient_torch
from napari_patchdx.data.dataset import resize_patch
from napari_patchdx.data.sampling import PatchGeometry, SlideSource, grid_table
from napari_patchdx.data.synth_wsi import make_slide
from napari_patchdx.data.tissue import TissueMask, detect_tissue
from napari_patchdx.geometry import Grid, level0_to_world
from napari_patchdx.infer import (
    cxr_predict,
    heatmap_paths,
    predict_patches,
    read_heatmap,
    slide_heatmap_job,
)
from napari_patchdx.io.slides import TiffSlide, open_slide
from napari_patchdx.models import PatchdxNet, build_model
from napari_patchdx.progress import run_job

from .conftest import write_pyramid

PATCH, CENTER = 48, 32
META = {
    "input_size": PATCH,
    "center_size": CENTER,
    "mpp": None,
    "classes": ["tumor"],
    "normalization": {"mode": "unit"},
}


class Projection(nn.Module):
    """A cheap model that is not rotation-invariant: logit = <patch, fixed random field>; counts its calls."""

    def __init__(self, size: int = PATCH, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("field", torch.randn(3, size, size, generator=g) / size)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (x * self.field).sum(dim=(1, 2, 3))[:, None]


class Recorder(nn.Module):
    """Keeps every patch it sees (as uint8 NHWC) and returns 0 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[np.ndarray] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
        return torch.zeros(x.shape[0], 1)


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("infer")
    slide = make_slide(root / "synth.tif", height=2048, width=2048, mpp=1.0, seed=3, tile=256)
    with open_slide(slide.path) as s:
        tissue = detect_tissue(s)
    return slide.path, tissue


def _cells(path: Path, tissue: TissueMask, geometry: PatchGeometry):
    with open_slide(path) as s:
        table = grid_table(SlideSource(path, s, tissue), geometry, min_tissue=1e-9, labels=False)
    return table.sort_values(["row", "col"], kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("patch_mpp", [None, 1.5])
def test_band_patches_equal_read_region_and_tiles_decode_once(synth, tmp_path, patch_mpp):
    path, tissue = synth
    geometry = PatchGeometry(PATCH, CENTER, patch_mpp)
    table = _cells(path, tissue, geometry)
    slide = TiffSlide(path, cache_bytes=1)  # no tile cache: a second read would decode again
    decoded: dict[tuple[int, int, int], int] = {}
    original = slide._decode_tile

    def counting(level: int, ty: int, tx: int) -> np.ndarray:
        decoded[(level, ty, tx)] = decoded.get((level, ty, tx), 0) + 1
        return original(level, ty, tx)

    slide._decode_tile = counting  # type: ignore[method-assign]
    rec = Recorder()
    meta = dict(META, mpp=patch_mpp)
    run_job(slide_heatmap_job(slide, (rec, meta), tmp_path, tta=False, tissue=tissue, band_rows=5, batch_size=50))
    seen = np.concatenate(rec.seen)
    assert len(seen) == len(table) > 100
    level, read_size, _ = geometry.plan(slide)
    reference = open_slide(path)
    for i in range(0, len(table), 7):
        row = table.iloc[i]
        patch = reference.read_region(int(row.y), int(row.x), read_size, read_size, level)
        if read_size != PATCH:
            patch = resize_patch(patch, PATCH)
        np.testing.assert_array_equal(seen[i], patch)
    # every tile is decoded at most once, and every tile a patch touches was decoded
    assert max(decoded.values()) == 1
    ds = slide.level_downsamples[level]
    th, tw = slide.tile_shapes[level]
    h, w = slide.level_shapes[level]
    touched = set()
    for y, x in zip(np.floor(table.y / ds).astype(int), np.floor(table.x / ds).astype(int), strict=True):
        for ty in range(max(y, 0) // th, (min(y + read_size, h) - 1) // th + 1):
            for tx in range(max(x, 0) // tw, (min(x + read_size, w) - 1) // tw + 1):
                touched.add((level, ty, tx))
    assert touched <= set(decoded)
    assert slide.tiles_decoded_per_level[level] == len([k for k in decoded if k[0] == level])
    reference.close()


def test_tta_is_mean_of_eight_orientations(synth, tmp_path):
    torch.manual_seed(0)
    model = build_model("small", 1).eval()
    x = torch.randint(0, 256, (3, 3, PATCH, PATCH), dtype=torch.uint8)
    with torch.no_grad():
        each = [torch.sigmoid(model(orient_torch(x.float() / 255, k)))[:, 0] for k in range(ORIENTATIONS)]
    each = torch.stack(each).numpy()
    assert each.std(axis=0).max() > 1e-4  # the model is not rotation-invariant
    got = predict_patches([(model, META)], x, tta=True)
    np.testing.assert_allclose(got, each.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict_patches([(model, META)], x, tta=False), each[0], rtol=1e-5, atol=1e-6)

    # the same through the job, cell by cell, with a cheap model and an ensemble of two
    path, tissue = synth
    models = [(Projection(seed=1), META), (Projection(seed=2), META)]
    result = run_job(slide_heatmap_job(path, models, tmp_path, tissue=tissue))
    table = _cells(path, tissue, PatchGeometry(PATCH, CENTER))
    with open_slide(path) as s:
        for i in range(0, len(table), 97):
            row = table.iloc[i]
            patch = torch.from_numpy(s.read_region(int(row.y), int(row.x), PATCH, PATCH).transpose(2, 0, 1).copy())
            x = patch[None].float() / 255
            want = np.mean(
                [torch.sigmoid(m(orient_torch(x, k)))[0, 0].item() for m, _ in models for k in range(ORIENTATIONS)]
            )
            assert result.heatmap[int(row.row), int(row.col)] == pytest.approx(want, abs=1e-5)


class CentreDarkness(nn.Module):
    """A "tumour detector": high logit where the patch's central region is dark."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c0 = (PATCH - CENTER) // 2
        centre = x[:, :, c0 : c0 + CENTER, c0 : c0 + CENTER].mean(dim=(1, 2, 3))
        return ((0.5 - centre) * 40)[:, None]


def test_heatmap_geometry_hot_cells_on_tumour(tmp_path):
    size, mpp = 1024, 0.5
    image = np.full((size, size, 3), (235, 170, 215), np.uint8)  # pink tissue everywhere
    ty0, ty1, tx0, tx1 = 300, 520, 610, 900  # a dark "tumour" rectangle, level-0 px
    image[ty0:ty1, tx0:tx1] = (40, 20, 60)
    path = write_pyramid(tmp_path / "rect.tif", image, mpp=mpp, compression="zlib")
    tissue = TissueMask(np.ones((32, 32), bool), Grid((32, 32), (32.0, 32.0), (0.0, 0.0), mpp), 0.1)
    result = run_job(slide_heatmap_job(path, (CentreDarkness(), META), tmp_path / "out", tta=False, tissue=tissue))
    grid = result.grid
    assert grid == Grid((32, 32), (32.0, 32.0), (0.0, 0.0), mpp)
    assert np.isfinite(result.heatmap).all()
    hot_r, hot_c = np.nonzero(result.heatmap > 0.5)
    ys, xs = grid.centres(hot_r, hot_c)
    stride = grid.spacing[0]
    assert ((ys > ty0 - stride) & (ys < ty1 + stride) & (xs > tx0 - stride) & (xs < tx1 + stride)).all()
    # every cell whose block lies inside the tumour is hot; every cell away from it is cold
    r, c = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    inside = (r * stride >= ty0) & ((r + 1) * stride <= ty1) & (c * stride >= tx0) & ((c + 1) * stride <= tx1)
    assert inside.sum() > 10 and (result.heatmap[inside] > 0.99).all()
    cy, cx = grid.centres(r, c)
    far = (cy < ty0 - stride) | (cy > ty1 + stride) | (cx < tx0 - stride) | (cx > tx1 + stride)
    assert (result.heatmap[far] < 0.01).all()
    # napari: a cell's centre lands on the centre of its level-0 block, in world (micrometre) units
    t = grid.napari()
    for rr, cc in [(0, 0), (5, 17), (31, 31)]:
        world = np.array([rr * t["scale"][0] + t["translate"][0], cc * t["scale"][1] + t["translate"][1]])
        block_centre = np.array([(rr + 0.5) * stride, (cc + 0.5) * stride])
        np.testing.assert_allclose(world, level0_to_world(block_centre, mpp))
    # the written file holds the same heatmap and geometry
    heatmap, saved, sidecar = read_heatmap(result.path)
    np.testing.assert_array_equal(heatmap, result.heatmap)
    assert saved == grid and sidecar["slide"] == str(path)


def test_resume_after_interruption(synth, tmp_path):
    path, tissue = synth
    full_model = Projection()
    full = run_job(slide_heatmap_job(path, (full_model, META), tmp_path / "a", tissue=tissue, band_rows=8))
    assert np.isnan(full.heatmap).any() and np.isfinite(full.heatmap).any()

    model = Projection()
    job = slide_heatmap_job(path, (model, META), tmp_path / "b", tissue=tissue, band_rows=8)
    for report in job:
        if report.partial is not None and np.isfinite(report.partial[1]).any():
            break
    job.close()  # interrupted after the first band with tissue
    first = model.calls
    assert 0 < first < full_model.calls
    paths = heatmap_paths(tmp_path / "b", path.stem)
    assert paths["partial"].is_file() and paths["record"].is_file() and not paths["final"].exists()

    resumed = run_job(slide_heatmap_job(path, (model, META), tmp_path / "b", tissue=tissue, band_rows=8))
    np.testing.assert_array_equal(resumed.heatmap, full.heatmap)
    assert model.calls == full_model.calls  # the finished band was not computed again
    assert not paths["partial"].exists() and not paths["record"].exists()

    again = run_job(slide_heatmap_job(path, (model, META), tmp_path / "b", tissue=tissue, band_rows=8))
    assert model.calls == full_model.calls  # finished: loaded, not recomputed
    np.testing.assert_array_equal(again.heatmap, full.heatmap)
    run_job(slide_heatmap_job(path, (model, META), tmp_path / "b", tissue=tissue, band_rows=8, resume=False))
    assert model.calls == 2 * full_model.calls


def test_corrupt_tile_leaves_its_cells_nan(synth, tmp_path):
    path, tissue = synth
    clean = run_job(slide_heatmap_job(path, (Projection(), META), tmp_path / "clean", tta=False, tissue=tissue))
    table = _cells(path, tissue, PatchGeometry(PATCH, CENTER))
    # break a level-0 tile under the tissue
    row = table.iloc[len(table) // 2]
    ty, tx = (int(row.y) + PATCH // 2) // 256, (int(row.x) + PATCH // 2) // 256
    broken = tmp_path / "broken.tif"
    shutil.copy(path, broken)
    with tifffile.TiffFile(broken) as tif:
        page = tif.pages[0]
        index = ty * (-(-page.imagewidth // 256)) + tx
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    with open(broken, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * count)
    with pytest.warns(UserWarning, match=rf"level 0 tile at \(y={ty * 256}, x={tx * 256}, h=256, w=256\)"):
        result = run_job(slide_heatmap_job(broken, (Projection(), META), tmp_path / "bad", tta=False, tissue=tissue))
    assert result.unreadable == ((0, ty * 256, tx * 256, 256, 256),)
    y, x = table.y.to_numpy(), table.x.to_numpy()
    touches = (y < (ty + 1) * 256) & (y + PATCH > ty * 256) & (x < (tx + 1) * 256) & (x + PATCH > tx * 256)
    rr, cc = table.row.to_numpy(), table.col.to_numpy()
    assert touches.sum() > 10
    assert np.isnan(result.heatmap[rr[touches], cc[touches]]).all()
    assert np.isfinite(clean.heatmap[rr[touches], cc[touches]]).all()
    mask = np.ones(clean.heatmap.shape, bool)
    mask[rr[touches], cc[touches]] = False
    # the same cells (batches differ, hence float rounding) and the same NaNs
    np.testing.assert_allclose(result.heatmap[mask], clean.heatmap[mask], rtol=0, atol=1e-6)


def _blob_net() -> PatchdxNet:
    """features = 8 x 8 average pooling of the (standardised) image; class 0 = brightness, class 1 = darkness."""
    features = nn.AvgPool2d(8)
    classifier = nn.Linear(1, 2)
    with torch.no_grad():
        classifier.weight[:] = torch.tensor([[1.0], [-1.0]])
        classifier.bias[:] = 0.0
    return PatchdxNet(features, classifier, "small", in_channels=1).eval()


def test_cxr_cam_peak_on_blob_and_aligned(tmp_path):
    model = _blob_net()
    meta = {"input_size": 64, "classes": ["bright", "dark"], "normalization": {"mode": "standardize"}}
    image = np.full((240, 200), 0.3, np.float32)
    yy, xx = np.mgrid[:240, :200]
    by, bx = 170.0, 50.0
    image += 0.6 * np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * 12.0**2)).astype(np.float32)
    (pred,) = cxr_predict([image], model, meta)
    assert pred.cams.shape == (2, 240, 200) and pred.shape == (240, 200) and pred.classes == ("bright", "dark")
    py, px = np.unravel_index(np.argmax(pred.cams[0]), pred.cams[0].shape)
    assert abs(py - by) <= 240 / 8 and abs(px - bx) <= 200 / 8  # within one CAM cell of the blob
    py, px = np.unravel_index(np.argmin(pred.cams[1]), pred.cams[1].shape)
    assert abs(py - by) <= 240 / 8 and abs(px - bx) <= 200 / 8
    # probabilities are the sigmoid of the model's logits on the standardised working-size image
    from PIL import Image

    work = np.asarray(Image.fromarray(image, mode="F").resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    x = torch.from_numpy(work - work.mean(dtype=np.float64).astype(np.float32))[None, None]
    with torch.no_grad():
        logits = model(x)[0]
        small = model.cam(x)[0].numpy()
    np.testing.assert_allclose(pred.probabilities, torch.sigmoid(logits).numpy(), rtol=1e-5)
    # alignment: CAM cell (r, c) covers native [r, r + 1) * H / h; with H = 3 h its centre is native pixel 3 r + 1
    native = np.kron(np.random.default_rng(0).random((8, 8)), np.ones((3, 3))).astype(np.float32)
    (pred,) = cxr_predict([native], model, meta)
    work = np.asarray(Image.fromarray(native, mode="F").resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    x = torch.from_numpy(work - work.mean(dtype=np.float64).astype(np.float32))[None, None]
    with torch.no_grad():
        small = model.cam(x)[0].numpy()
    np.testing.assert_allclose(pred.cams[:, 1::3, 1::3], small, rtol=1e-5, atol=1e-6)


def test_cxr_predict_reads_files(tmp_path):
    from PIL import Image

    image = (np.random.default_rng(1).random((50, 70)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "x.png")
    model = build_model("small", 2, in_channels=1).eval()
    meta = {"input_size": 64, "classes": ["a", "b"], "normalization": {"mode": "standardize"}}
    (pred,) = cxr_predict([tmp_path / "x.png"], model, meta)
    assert pred.source == tmp_path / "x.png" and pred.cams.shape == (2, 50, 70)
    assert ((pred.probabilities > 0) & (pred.probabilities < 1)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cxr_predict([image.astype(np.float32) / 255], model, meta)


def test_large_heatmap_is_written_pyramidal(tmp_path):
    from napari_patchdx.infer import _write_heatmap

    heatmap = np.random.default_rng(0).random((2500, 300)).astype(np.float32)
    heatmap[:100] = np.nan
    grid = Grid(heatmap.shape, (128.0, 128.0), (0.0, 0.0), 0.25)
    path = tmp_path / "big.heatmap.ome.tif"
    _write_heatmap(path, heatmap, grid)
    (tmp_path / "big.heatmap.json").write_text(json.dumps({"grid": grid.to_dict()}))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and len(tif.series[0].levels) == 2
        assert tif.series[0].levels[1].shape == (1250, 150)
        assert 'PhysicalSizeX="32.0"' in tif.ome_metadata
    back, saved, _ = read_heatmap(path)
    np.testing.assert_array_equal(back, heatmap)
    assert saved == grid


def test_cxr_prediction_round_trips_through_ome_tiff(tmp_path):
    from napari_patchdx.errors import InputFileError
    from napari_patchdx.infer import CxrPrediction, read_cxr_prediction, save_cxr_prediction

    rng = np.random.default_rng(3)
    cams = rng.normal(size=(2, 40, 30)).astype(np.float32)
    pred = CxrPrediction(("nodule", "mass"), np.array([0.25, 0.75], np.float32), cams, (40, 30), tmp_path / "x.dcm")
    path = save_cxr_prediction(pred, tmp_path / "out")
    assert path.name == "x.cam.ome.tif"
    back = read_cxr_prediction(path)
    assert back.classes == pred.classes and back.shape == (40, 30) and back.source == pred.source
    np.testing.assert_array_equal(back.probabilities, pred.probabilities)
    np.testing.assert_array_equal(back.cams, cams)
    (tmp_path / "out" / "x.cam.json").write_text("{}")
    with pytest.raises(InputFileError, match="x.cam.json"):
        read_cxr_prediction(path)
